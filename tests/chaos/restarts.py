"""A service that is restarted every time it dies, quickly: the parent forks a fresh child.

``python -m tests.chaos.restarts --factory module:create_app --port P`` creates the app once
(routes and settings: nothing connects before the lifespan, STYLE.md rule 3), holds the
listening socket, and forks a child that runs the app's lifespan and serves it. When the child
dies (a crash point's ``SIGKILL``), the parent forks the next one at once, so a restart costs
the service's own start-up (Mongo client, indexes, producer, the relay's first sweep), not the
interpreter's imports; requests that arrive meanwhile wait in the socket's backlog. Each death
and each readiness is one JSON line on stdout; SIGTERM stops the child and the parent.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import uvicorn
import uvloop  # noqa: F401  # imported once in the parent, not by every child


def _say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def _config(app: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", loop="uvloop"
    )
    config.load()  # in the parent: protocol and loop imports once, not in every child
    return config


def _serve(config: uvicorn.Config, sock: socket.socket) -> None:
    """The child: the app's lifespan and requests on the inherited socket, until it dies."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    uvicorn.Server(config).run(sockets=[sock])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--factory", required=True, help="module:function returning the app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    module, _, name = args.factory.partition(":")
    factory: Callable[[], Any] = getattr(importlib.import_module(module), name)
    config = _config(factory())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    sock.set_inheritable(True)

    stopping = False
    child = 0

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child:
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    died_at: float | None = None
    while not stopping:
        child = os.fork()
        if child == 0:
            try:
                _serve(config, sock)
            finally:
                os._exit(0)
        ready = False
        while True:  # until the child dies; poll its readiness until it is ready once
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                break
            if not ready and not stopping and _ready(args.port):
                ready = True
                since = None if died_at is None else time.monotonic() - died_at
                _say(event="ready", pid=child, recover_s=since)
                died_at = None
            time.sleep(0.01 if not ready else 0.02)
        if stopping:
            break
        died_at = died_at or time.monotonic()
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        _say(event="died", pid=child, killed=killed)
        if not killed:
            time.sleep(0.5)  # a start-up that fails: no tight loop (its log says why)
    _say(event="stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
