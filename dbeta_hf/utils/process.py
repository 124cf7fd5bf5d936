"""Which process and host this is, and whether another process on this host is still running.

Lock files and temporary names record a PID and a host so that a later run can tell a live writer from one that
was killed: a PID can only be checked on the host that issued it.
"""

from __future__ import annotations

import os
import socket

__all__ = ["this_host", "pid_alive"]


def this_host() -> str:
    """The name of this machine, as written into lock files."""
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists on this host (signal 0 probes without signalling).

    A process owned by another user counts as alive (the probe is refused, not failed). PIDs are reused, so True
    only means "a process with this number exists".
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
