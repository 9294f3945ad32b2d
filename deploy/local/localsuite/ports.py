"""Ports: whether one is free and, when not, which process holds it."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from .common import EngineError


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM and Go: SO_REUSEADDR, so a just-closed socket in TIME_WAIT is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\x00", b" ").decode(errors="replace").strip()
    return text if len(text) <= 90 else text[:87] + "..."


def port_owner(port: int) -> int | None:
    """The pid listening on ``port`` (Linux /proc), or None when it cannot be seen."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def require_free(port: int, env_name: str) -> None:
    if port_free(port):
        return
    pid = port_owner(port)
    who = f"pid {pid} ({cmdline(pid)})" if pid else "another process"
    raise EngineError(f"port {port} is in use by {who}: stop it or set {env_name}")
