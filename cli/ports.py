"""Which ports the embedded tritonserver binds: its defaults when free, free ones otherwise; a port the
user asked for that is taken is an error at start, never a silent fall-through to whoever holds it."""

from __future__ import annotations

import socket

DEFAULT_TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


class PortInUseError(RuntimeError):
    pass


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", taken: frozenset[int] | set[int] = frozenset()) -> int:
    """A port the kernel says is free on `host` now, other than those in `taken`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def triton_ports(requested: dict[str, int | None], host: str = "127.0.0.1") -> dict[str, int]:
    """`requested` maps http / grpc / metrics to the flag's value (None: not given)."""
    chosen: dict[str, int] = {}
    for name, default in DEFAULT_TRITON_PORTS.items():
        port = requested.get(name)
        if port is not None:
            if not port_is_free(host, port) or port in chosen.values():
                raise PortInUseError(f"port {port} (--triton-{name}-port) is already in use on {host}; "
                                     "choose another or leave the flag out to get a free one")
            chosen[name] = port
        elif port_is_free(host, default) and default not in chosen.values():
            chosen[name] = default
        else:
            chosen[name] = free_port(host, set(chosen.values()))
    return chosen
