"""What Linux /proc says about processes and sockets: the few facts the supervisor, tests, soak and bench read.

Every function answers for a process that is gone (or never was) without raising: None, False, 0 or empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")


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


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    below: dict[int, list[int]] = {}
    for pid in pids():
        if (fields := stat(pid)) is not None:
            below.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += below.get(pid, [])
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far (utime + stime); 0.0 if gone."""
    fields = stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS); 0 if gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cmdline(pid: int) -> list[str]:
    """argv; empty if gone (or a kernel thread)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


def command_name(pid: int) -> str:
    """/proc/PID/comm (at most 15 characters); empty if gone."""
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def open_files(pid: int) -> set[str]:
    """Resolved paths of the files the process has open (its fd symlinks that point at something)."""
    try:
        return {str(fd.resolve()) for fd in (PROC / str(pid) / "fd").iterdir() if fd.is_symlink() and fd.exists()}
    except OSError:
        return set()


TCP_LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """Local addresses (/proc/net/tcp's hex) of the LISTEN sockets on `port`, IPv4 and IPv6."""
    found = set()
    for columns in tcp_sockets():
        address, hex_port = columns[1].split(":")
        if columns[3] == TCP_LISTEN and int(hex_port, 16) == port:
            found.add(address)
    return found


def tcp_sockets() -> Iterator[list[str]]:
    """Every row of /proc/net/tcp and /proc/net/tcp6 (IPv4 and IPv6), split into its columns."""
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            yield line.split()


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets the process has open (its fds linking to socket:[INODE])."""
    try:
        links = [os.readlink(fd) for fd in (PROC / str(pid) / "fd").iterdir()]
    except OSError:
        return set()
    return {int(link[8:-1]) for link in links if link.startswith("socket:[")}


TCP_ESTABLISHED = "01"


def connection_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the established TCP socket from `local_port` to `remote_port` (IPv4 or IPv6), None if
    there is none or it is not accepted yet (a connection waiting in a listen queue has inode 0)."""
    for columns in tcp_sockets():
        local, remote = (int(address.split(":")[1], 16) for address in columns[1:3])
        if columns[3] == TCP_ESTABLISHED and (local, remote) == (local_port, remote_port) and columns[9] != "0":
            return int(columns[9])
    return None
