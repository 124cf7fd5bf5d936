"""Paths read from data files stay inside their root.

Dataset indexes name their records by relative paths (MIMIC-IV-ECG's ``record_list.csv`` ``path``, PTB-XL's
``filename_hr``, the signal files of a WFDB header). Such a path is data, not a user's choice: ``../elsewhere``
or ``/etc/...`` must not make a build read files outside the folder the user pointed it at.

The check is on the path text (`os.path.normpath`, no file system access): ``..`` and absolute paths that
leave the root are rejected. Symbolic links that the user placed inside the root are followed as usual (a
root whose ``files/`` folder links to another disk keeps working).
"""

from __future__ import annotations

import os

__all__ = ["PathOutsideRootError", "join_inside", "is_inside"]


class PathOutsideRootError(ValueError):
    """A path read from data leads outside its root."""

    def __init__(self, root: str, relative: str):
        self.root = root
        self.relative = relative
        super().__init__(f"{relative!r} leads outside the root {root!r}")


def join_inside(root: str | os.PathLike, relative: str | os.PathLike) -> str:
    """``root / relative``, normalised; `PathOutsideRootError` when it is not inside `root` (``..`` climbing out,
    an absolute path elsewhere). An absolute path inside `root` is accepted."""
    base = os.path.normpath(os.path.abspath(os.fspath(root)))
    text = os.fspath(relative)
    joined = os.path.normpath(os.path.join(base, text))
    if joined != base and not joined.startswith(base.rstrip(os.sep) + os.sep):
        raise PathOutsideRootError(base, text)
    return joined


def is_inside(root: str | os.PathLike, relative: str | os.PathLike) -> bool:
    """True when `join_inside` accepts `relative`."""
    try:
        join_inside(root, relative)
    except PathOutsideRootError:
        return False
    return True
