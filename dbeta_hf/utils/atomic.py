"""Write files and folders so that a reader sees the old version or the complete new one, never a half-written one.

* `atomic_write_bytes` / `atomic_write_text` / `atomic_write_json`: write a temporary file in the destination's
  folder, flush it to disk, then `os.replace` it onto the destination (one atomic rename on POSIX and Windows).
* `atomic_dir` / `publish_dir`: fill a temporary folder next to the destination, then rename it into place.
  Replacing an existing folder takes two renames (the old folder is moved aside first), so a crash between them
  can leave the destination missing, but never half-written.

Temporary names are ``<name>.tmp-<pid>-<8 hex digits>`` in the same folder (`temp_path`). `parse_temp_name`
recognises them (and the older ``<name>.tmp-<pid>`` form), so a rerun can tell its own leftovers from a user's
files, and `remove_stale_temps` deletes those whose process no longer runs on this host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .process import pid_alive

__all__ = [
    "temp_path",
    "parse_temp_name",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_dir",
    "publish_dir",
    "remove_path",
    "remove_stale_temps",
]

_TEMP_NAME = re.compile(r"^(?P<final>.+)\.tmp-(?P<pid>\d+)(?:-[0-9a-f]{8})?$")


def temp_path(final: str | os.PathLike) -> Path:
    """A fresh temporary path next to `final`: ``<final>.tmp-<pid>-<8 hex digits>`` (same folder, same file system,
    so renaming it onto `final` is atomic)."""
    final = Path(final)
    return final.with_name(f"{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def parse_temp_name(name: str) -> tuple[str, int] | None:
    """``(final name, pid)`` for a name made by `temp_path` (or the older ``<final>.tmp-<pid>``), else None."""
    match = _TEMP_NAME.match(name)
    if match is None:
        return None
    return match.group("final"), int(match.group("pid"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file in the same folder, fsync, `os.replace`)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (see `atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(
    path: str | os.PathLike,
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write `obj` as JSON (plus a final newline) to `path` atomically (see `atomic_write_bytes`)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n")


def remove_path(path: str | os.PathLike) -> None:
    """Delete a file, a link or a folder tree; a path that does not exist is not an error."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with suppress(FileNotFoundError):
            path.unlink()


def publish_dir(tmp: str | os.PathLike, final: str | os.PathLike, *, replace: bool = False) -> Path:
    """Rename the complete folder `tmp` to `final` (both in the same folder).

    If `final` exists: ``replace=False`` raises `FileExistsError` (and leaves both as they are); ``replace=True``
    moves the old `final` aside under a temporary name, renames `tmp` into place, then deletes the old one (if the
    second rename fails, the old folder is put back).
    """
    tmp, final = Path(tmp), Path(final)
    if not final.exists():
        os.rename(tmp, final)
        return final
    if not replace:
        raise FileExistsError(f"{os.fspath(final)!r} exists; publish_dir(..., replace=True) replaces it")
    old = temp_path(final)
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    remove_path(old)
    return final


@contextmanager
def atomic_dir(final: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to `final`; on normal exit publish it as `final` (`publish_dir`), on an
    exception delete it, so `final` is never seen half-written.

    >>> with atomic_dir("out/checkpoint-100") as tmp:      # doctest: +SKIP
    ...     model.save_pretrained(tmp)
    """
    final = Path(final)
    tmp = temp_path(final)
    tmp.mkdir()
    try:
        yield tmp
        publish_dir(tmp, final, replace=replace)
    except BaseException:
        remove_path(tmp)
        raise


def remove_stale_temps(folder: str | os.PathLike, finals: Iterable[str] | None = None) -> list[str]:
    """Delete the temporary entries of `folder` (names of `parse_temp_name`) whose process is gone.

    Only temporaries whose PID does not run on this host are removed (this process's own are kept); with `finals`,
    only temporaries of those final names. Returns the names removed, sorted. Call it while holding the folder's
    lock (`OutputLock`): a PID of another host cannot be checked, so a temporary of a live writer elsewhere would
    look stale.
    """
    folder = Path(folder)
    wanted = None if finals is None else set(finals)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        parsed = parse_temp_name(entry.name)
        if parsed is None or (wanted is not None and parsed[0] not in wanted):
            continue
        pid = parsed[1]
        if pid == os.getpid() or pid_alive(pid):
            continue
        remove_path(entry)
        removed.append(entry.name)
    return sorted(removed)
