"""supervisord: the XML-RPC client of one ZC_LOCAL_HOME's supervisord, and launching it."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
import xmlrpc.client
from typing import cast

from .common import EngineError, first_error_line, run_captured
from .layout import ROOT, Layout
from .prerequisites import supervisor_binary


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        return _UnixConnection(self._path)


class Supervisor:
    """The supervisord of one ZC_LOCAL_HOME, over its XML-RPC unix socket."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def rpc(self) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(str(self.layout.socket))
        )

    def pid(self) -> int | None:
        """supervisord's pid when it answers on our socket, else None."""
        if not self.layout.socket.exists():
            return None
        try:
            return int(cast(int, self.rpc().supervisor.getPID()))
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return None

    def processes(self) -> dict[str, dict[str, object]]:
        infos = cast(list[dict[str, object]], self.rpc().supervisor.getAllProcessInfo())
        return {str(info["name"]): info for info in infos}

    def start_process(self, name: str) -> None:
        try:
            self.rpc().supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != 60:  # ALREADY_STARTED
                raise EngineError(
                    f"supervisord could not start {name} ({fault.faultString}): "
                    f"read {self.layout.logs / (name + '.log')}"
                ) from None

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        ctl = supervisor_binary("supervisorctl")
        return run_captured([str(ctl), "-c", str(self.layout.supervisord_conf), *args])

    def launch(self) -> None:
        supervisord = supervisor_binary("supervisord")
        errors = self.layout.logs / "supervisord.start.log"
        with errors.open("w") as sink:
            # supervisord forks and its parent returns; no pipe of ours may outlive this
            # call (a caller capturing our stdout would wait for it forever).
            code = subprocess.call(
                [str(supervisord), "-c", str(self.layout.supervisord_conf)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                cwd=ROOT,
                start_new_session=True,
            )
        if code != 0:
            detail = first_error_line(errors.read_text())
            raise EngineError(f"supervisord did not start ({detail}); log: {errors}")
        deadline = time.monotonic() + 15
        while self.pid() is None:
            if time.monotonic() > deadline:
                raise EngineError(
                    f"supervisord did not answer on {self.layout.socket} within 15 s; "
                    f"log: {self.layout.logs / 'supervisord.log'}"
                )
            time.sleep(0.1)
