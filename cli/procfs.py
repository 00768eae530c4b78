"""What Linux /proc says about processes: the few facts the `trident` command reads (the cores it may use, a
supervised process's children and whether they live), and `die_with_parent` for the processes it starts. Tests,
soak and bench read more: testkit/procfs.py.

Every function answers for a process that is gone (or never was) without raising: None, False, 0 or empty.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

PROC = Path("/proc")
PR_SET_PDEATHSIG = 1  # prctl: the signal this process gets when the thread that started it exits


def die_with_parent() -> None:
    """In a child, before its work: SIGTERM it when the thread that started it exits, so none is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...]; None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses


def alive(pid: int) -> bool:
    """Running and not a zombie (a dead child stays a zombie until its parent reaps it)."""
    fields = stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def host_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0))


def pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def children(parent: int) -> list[int]:
    """The processes whose parent is `parent`."""
    return [pid for pid in pids() if (fields := stat(pid)) is not None and fields[1] == str(parent)]
