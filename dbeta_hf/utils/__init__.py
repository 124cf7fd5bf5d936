"""File-system helpers shared by the writers of dbeta_hf (dataset builds, training outputs).

* `dbeta_hf.utils.atomic`: atomic file writes and atomic folder publication; temporary names a rerun recognises.
* `dbeta_hf.utils.output_ownership`: one writer per output folder (`OutputLock`: PID + host, stale locks taken
  over) and an owner marker so that only what a tool wrote is ever deleted (`OwnedOutput`, `open_owned_output`).
* `dbeta_hf.utils.paths`: paths read from data files must stay inside their root (`join_inside`).
* `dbeta_hf.utils.process`: `pid_alive`, `this_host`.
"""

from .atomic import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    parse_temp_name,
    publish_dir,
    remove_path,
    remove_stale_temps,
    temp_path,
)
from .output_ownership import (
    LOCK_NAME,
    MARKER_NAME,
    ForeignEntriesError,
    OutputLock,
    OutputLockedError,
    OwnedOutput,
    open_owned_output,
    read_lock,
)
from .paths import PathOutsideRootError, is_inside, join_inside
from .process import pid_alive, this_host

__all__ = [
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "parse_temp_name",
    "publish_dir",
    "remove_path",
    "remove_stale_temps",
    "temp_path",
    "LOCK_NAME",
    "MARKER_NAME",
    "ForeignEntriesError",
    "OutputLock",
    "OutputLockedError",
    "OwnedOutput",
    "open_owned_output",
    "read_lock",
    "PathOutsideRootError",
    "is_inside",
    "join_inside",
    "pid_alive",
    "this_host",
]
