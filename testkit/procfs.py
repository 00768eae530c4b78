"""What Linux /proc says about processes and sockets, for tests, soak and bench: CPU time, memory, command
lines, open files and TCP sockets, and the facts the `trident` command reads itself (cli/procfs.py).

Every function answers for a process that is gone (or never was) without raising: None, False, 0 or empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from cli.procfs import PROC, alive, children, host_cores, pids, stat

__all__ = ["alive", "children", "cmdline", "command_name", "connection_inode", "cpu_seconds", "descendants",
           "host_cores", "listening_addresses", "open_files", "rss_bytes", "socket_inodes", "tcp_sockets"]


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
