"""Output folders that a tool owns: one writer at a time, and nothing deleted that the tool did not write.

Two pieces, usable alone or together (`open_owned_output`):

* `OutputLock`: a lock file ``<folder>/_dbeta_lock.json`` holding the writer's PID, host, start time and
  purpose. It is created with one atomic `os.link` (so it is never seen half-written). A second writer is refused
  with `OutputLockedError`, which names the holder, or waits for it (`timeout`). A lock whose PID no longer runs
  on this host is stale: it is reported (a warning, and `OutputLock.took_over`) and taken over. A lock from another
  host cannot be checked and is never taken over. Within one process the lock is re-entrant.
* `OwnedOutput`: the marker file ``<folder>/.dbeta_owner.json`` lists the entries (direct children of the folder)
  that the tool wrote. An entry is claimed in the marker *before* it is created, so even a killed writer's leftovers
  are owned. Everything else in the folder is foreign: `OwnedOutput.check` refuses the folder listing every foreign
  entry, and the removal methods only ever delete owned entries (and the stale temporaries of `dbeta_hf.utils.atomic`
  named after them).

Typical use (a training run writing checkpoints)::

    with open_owned_output(output_dir, tool="dbeta_hf pretraining", purpose="pretrain.py") as out:
        with atomic_dir(out.path("checkpoint-100"), replace=True) as tmp:   # claims, then publishes atomically
            model.save_pretrained(tmp)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from .atomic import atomic_write_json, parse_temp_name, remove_path, remove_stale_temps, temp_path
from .process import pid_alive, this_host

logger = logging.getLogger(__name__)

__all__ = [
    "MARKER_NAME",
    "LOCK_NAME",
    "RESERVED_NAMES",
    "ForeignEntriesError",
    "OutputLockedError",
    "OutputLock",
    "read_lock",
    "describe_holder",
    "OwnedOutput",
    "open_owned_output",
]

MARKER_NAME = ".dbeta_owner.json"
LOCK_NAME = "_dbeta_lock.json"  # "_*": skipped by the Trainer's Hub pushes (every_save too) and push_model_folder
_TAKEOVER_NAME = LOCK_NAME + ".takeover"
RESERVED_NAMES = frozenset({MARKER_NAME, LOCK_NAME, _TAKEOVER_NAME})

# Locks held: "pid:lock file path" -> nesting depth (re-entrant within a process; the PID keeps a forked child,
# which inherits this table, from taking its parent's lock for its own).
_HELD: dict[str, int] = {}


def _held_key(lock_path: Path) -> str:
    return f"{os.getpid()}:{os.fspath(lock_path.absolute())}"


class ForeignEntriesError(FileExistsError):
    """An output folder holds entries its tool did not write. `foreign` lists every one of them."""

    def __init__(self, folder: Path, foreign: list[str], hint: str = ""):
        self.folder = Path(folder)
        self.foreign = list(foreign)
        shown = ", ".join(self.foreign)
        super().__init__(
            f"{os.fspath(self.folder)} holds {len(self.foreign)} entr{'y' if len(self.foreign) == 1 else 'ies'} that "
            f"were not written here by this tool: {shown}. Nothing was changed. {hint}".strip()
        )

    def __str__(self) -> str:
        return self.args[0]


class OutputLockedError(RuntimeError):
    """Another running process holds the lock of an output folder. `holder` is the content of its lock file."""

    def __init__(self, lock_path: Path, holder: dict | None, detail: str = ""):
        self.lock_path = Path(lock_path)
        self.holder = dict(holder or {})
        super().__init__(
            f"{os.fspath(self.lock_path.parent)} is being written by another process ({describe_holder(holder)}); "
            f"only one writer at a time may use an output folder. {detail}".strip()
        )


def describe_holder(holder: dict | None) -> str:
    """``PID 123 on host node7, started 2025-01-01T10:00:00+00:00 (dbeta_hf.data build ptbxl)``."""
    if not holder:
        return "unreadable lock file"
    text = f"PID {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
    return text + (f" ({holder['purpose']})" if holder.get("purpose") else "")


def _read_json(path: Path) -> dict | None:
    """The JSON object in `path`; None when it does not exist; {} when it is not a readable object."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_lock(folder: str | os.PathLike) -> dict | None:
    """The lock of `folder` (``{"pid", "host", "started", "purpose", "command"}``), or None when it is unlocked."""
    return _read_json(Path(folder) / LOCK_NAME)


def _link_exclusive(path: Path, content: dict) -> bool:
    """Create `path` holding `content` in one step (hard link of a complete temporary file); False if it exists."""
    tmp = temp_path(path)
    atomic_write_json(tmp, content)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


class OutputLock:
    """One writer per folder: a lock file with the holder's PID and host (see the module docstring).

    Args:
        folder: the folder to lock (created if missing); the lock file is ``folder/_dbeta_lock.json``.
        purpose: what the holder does, shown to a refused writer (e.g. ``"dbeta_hf.data build ptbxl"``).
        timeout: seconds to wait for a live holder: ``0`` refuses at once, ``None`` waits as long as it takes
            (logging the holder every `log_every` seconds).
        poll_interval: seconds between two checks while waiting.

    Raises (from `acquire` / ``with``):
        OutputLockedError: a live process (or one on another host, which cannot be checked) holds the lock after
            `timeout` seconds, or the lock file cannot be read.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        purpose: str = "",
        timeout: float | None = 0.0,
        poll_interval: float = 1.0,
        log_every: float = 60.0,
    ):
        self.folder = Path(folder)
        self.lock_path = self.folder / LOCK_NAME
        self.purpose = purpose
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.log_every = log_every
        self.took_over: dict | None = None
        self._held = False

    def _content(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": this_host(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "purpose": self.purpose,
            "command": " ".join(sys.argv),
        }

    def _is_mine(self, holder: dict | None) -> bool:
        return bool(holder) and holder.get("pid") == os.getpid() and holder.get("host") == this_host()

    def _is_stale(self, holder: dict) -> bool:
        pid = holder.get("pid")
        return holder.get("host") == this_host() and isinstance(pid, int) and not pid_alive(pid)

    def acquire(self) -> "OutputLock":
        """Take the lock (see the class docstring); returns self."""
        key = _held_key(self.lock_path)
        if _HELD.get(key):
            _HELD[key] += 1
            self._held = True
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        start = last_log = time.monotonic()
        while True:
            if _link_exclusive(self.lock_path, self._content()):
                _HELD[key] = 1
                self._held = True
                return self
            holder = _read_json(self.lock_path)
            if holder is None:  # released between the two steps: try again
                continue
            if holder and self._is_stale(holder):
                self._take_over(holder)
                continue
            waited = time.monotonic() - start
            if not holder or (self.timeout is not None and waited >= self.timeout):
                raise OutputLockedError(self.lock_path, holder, self._refusal_hint(holder))
            if time.monotonic() - last_log >= self.log_every:
                logger.warning("waiting for %s to finish writing %s", describe_holder(holder), self.folder)
                last_log = time.monotonic()
            time.sleep(self.poll_interval)

    def _refusal_hint(self, holder: dict) -> str:
        where = os.fspath(self.lock_path)
        if not holder:
            return f"Remove {where} if no other process is writing there."
        if holder.get("host") != this_host():
            return f"That host cannot be checked from here: if that process is gone, delete {where}."
        return (
            "Wait for it to finish or stop it (a lock left by a killed process is taken over automatically; if no "
            f"such process is running and its PID was reused, delete {where})."
        )

    def _take_over(self, stale: dict) -> None:
        """Replace a stale lock; a guard file makes sure only one process does it at a time."""
        guard = self.folder / _TAKEOVER_NAME
        if not _link_exclusive(guard, self._content()):
            other = _read_json(guard)
            if other and self._is_stale(other):
                with suppress(FileNotFoundError):
                    guard.unlink()
            else:
                time.sleep(min(self.poll_interval, 0.1))
            return
        try:
            if _read_json(self.lock_path) == stale:
                self.lock_path.unlink()
                self.took_over = stale
                logger.warning(
                    "%s: took over a stale lock (%s): that process no longer runs", self.folder, describe_holder(stale)
                )
        finally:
            with suppress(FileNotFoundError):
                guard.unlink()

    def release(self) -> None:
        """Give the lock up (the outermost release of this process deletes the lock file)."""
        if not self._held:
            return
        self._held = False
        key = _held_key(self.lock_path)
        _HELD[key] = _HELD.get(key, 1) - 1
        if _HELD[key] > 0:
            return
        del _HELD[key]
        holder = _read_json(self.lock_path)
        if self._is_mine(holder):
            with suppress(FileNotFoundError):
                self.lock_path.unlink()
        elif holder is not None:
            logger.warning("%s: the lock is no longer ours (%s); left in place", self.folder, describe_holder(holder))

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def _check_name(name: str) -> str:
    name = os.fspath(name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name:
        raise ValueError(f"an owned entry is one name directly inside the output folder, got {name!r}")
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is reserved for the lock and the owner marker")
    return name


class OwnedOutput:
    """The entries of `folder` that `tool` wrote, recorded in ``folder/.dbeta_owner.json`` (see the module docstring).

    The marker holds ``{"tool": tool, "created_folder": bool, "entries": [names]}``. A marker written by another
    tool owns nothing for this one. Change the folder only while holding its `OutputLock` (`open_owned_output`
    does both).
    """

    def __init__(self, folder: str | os.PathLike, tool: str):
        self.folder = Path(folder)
        self.tool = tool
        self.marker_path = self.folder / MARKER_NAME

    # ------------------------------------------------------------------ reading
    def read_marker(self) -> dict | None:
        """The marker's content, or None when the folder has no marker."""
        return _read_json(self.marker_path)

    @property
    def owned(self) -> list[str]:
        """The entries this tool recorded as its own (whether or not they exist now)."""
        marker = self.read_marker()
        if not marker or marker.get("tool") != self.tool:
            return []
        return [str(name) for name in marker.get("entries", [])]

    def is_owned(self, name: str, extra: Iterable[str] = ()) -> bool:
        """True for a recorded entry, the lock / marker files and a temporary (`parse_temp_name`) of either."""
        owned = set(self.owned) | set(extra) | RESERVED_NAMES
        parsed = parse_temp_name(name)
        return name in owned or (parsed is not None and parsed[0] in owned)

    def foreign_entries(self, extra_owned: Iterable[str] = ()) -> list[str]:
        """Every entry of the folder that is not owned (sorted; [] when the folder does not exist).
        `extra_owned` counts more names as owned (e.g. the output of an older version without a marker)."""
        if not self.folder.is_dir():
            return []
        extra = list(extra_owned)
        return sorted(entry.name for entry in self.folder.iterdir() if not self.is_owned(entry.name, extra))

    def check(self, extra_owned: Iterable[str] = (), hint: str = "") -> None:
        """Raise `ForeignEntriesError` listing every foreign entry (a folder that is not a folder is an error too)."""
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{os.fspath(self.folder)} is a file, not a folder")
        foreign = self.foreign_entries(extra_owned)
        if foreign:
            marker = self.read_marker()
            if marker and marker.get("tool") not in (None, self.tool):
                hint = f"The folder belongs to {marker.get('tool')!r}. {hint}"
            raise ForeignEntriesError(self.folder, foreign, hint or "Choose another output folder or move them.")

    # ------------------------------------------------------------------ writing
    def _write_marker(self, entries: Iterable[str], created_folder: bool | None = None) -> None:
        marker = self.read_marker() or {}
        if created_folder is None:
            created_folder = bool(marker.get("created_folder", False)) if marker.get("tool") == self.tool else False
        names = list(dict.fromkeys(entries))
        atomic_write_json(self.marker_path, {"tool": self.tool, "created_folder": created_folder, "entries": names})

    def create(self, adopt: Iterable[str] = (), created_folder: bool | None = None) -> None:
        """Create the folder if needed and write the marker if it has none (owning `adopt`, e.g. what an older
        version wrote there without a marker). `created_folder` is recorded in the marker (default: whether this
        call created the folder). Call `check` first."""
        created = not self.folder.exists() if created_folder is None else created_folder
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.read_marker()
        if not marker or marker.get("tool") != self.tool:
            self._write_marker([_check_name(n) for n in adopt], created_folder=created)

    def claim(self, *names: str) -> None:
        """Record `names` as owned. Claim an entry before creating it, so a crash leaves it owned."""
        new = [_check_name(n) for n in names]
        current = self.owned
        if any(n not in current for n in new):
            self._write_marker(current + new)

    def path(self, name: str) -> Path:
        """Claim `name` and return ``folder / name``."""
        self.claim(name)
        return self.folder / name

    def disown(self, *names: str) -> None:
        """Forget `names` (the entries stay on disk, now foreign)."""
        gone = set(names)
        self._write_marker([n for n in self.owned if n not in gone])

    # ------------------------------------------------------------------ removing
    def remove(self, *names: str) -> None:
        """Delete the owned entries `names` (missing ones are fine) and forget them. A name that is not owned is
        a `ValueError`: nothing foreign is ever deleted."""
        owned = set(self.owned)
        foreign = [n for n in names if n not in owned]
        if foreign:
            raise ValueError(f"{os.fspath(self.folder)}: refusing to delete {foreign}: not written here by {self.tool}")
        for name in names:
            remove_path(self.folder / name)
        self.disown(*names)

    def remove_owned(self, keep: Iterable[str] = ()) -> list[str]:
        """Delete every owned entry except `keep`, and the stale temporaries of owned names; returns what existed
        and was deleted (sorted). Foreign entries, the lock and the marker stay."""
        keep = set(keep)
        targets = [n for n in self.owned if n not in keep]
        existed = [n for n in targets if os.path.lexists(self.folder / n)]
        self.remove(*targets)
        return sorted(existed + self.remove_stale_temps())

    def remove_stale_temps(self) -> list[str]:
        """Delete the temporaries (`parse_temp_name`) whose process is gone: those named after owned or reserved
        names, and owned entries that are themselves temporary names (e.g. a staging folder claimed by a writer
        that was killed), which are then forgotten. Returns the names deleted (sorted)."""
        owned = self.owned
        removed = remove_stale_temps(self.folder, set(owned) | RESERVED_NAMES)
        dead = [n for n in owned if (parsed := parse_temp_name(n)) and parsed[1] != os.getpid() and not pid_alive(parsed[1])]
        existed = [n for n in dead if os.path.lexists(self.folder / n)]
        for name in dead:
            remove_path(self.folder / name)
        if dead:
            self.disown(*dead)
        return sorted(set(removed) | set(existed))


@contextmanager
def open_owned_output(
    folder: str | os.PathLike,
    tool: str,
    *,
    purpose: str = "",
    timeout: float | None = 0.0,
    adopt: Iterable[str] = (),
    hint: str = "",
) -> Iterator[OwnedOutput]:
    """Check, create, lock and yield an `OwnedOutput`; the lock is released on exit.

    Order: refuse a folder with foreign entries before writing anything into it (`ForeignEntriesError`, listing
    them all); create the folder; take the `OutputLock` (`OutputLockedError` naming the other writer); check again
    under the lock; write the marker (owning `adopt` when the folder had no marker); delete stale temporaries of
    owned names.
    """
    out = OwnedOutput(folder, tool)
    adopt = list(adopt)
    out.check(adopt, hint)
    created = not out.folder.exists()
    out.folder.mkdir(parents=True, exist_ok=True)
    with OutputLock(out.folder, purpose=purpose, timeout=timeout):
        out.check(adopt, hint)
        out.create(adopt, created_folder=created)
        out.remove_stale_temps()
        yield out
