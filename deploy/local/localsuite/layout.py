"""Layout and settings: the repository files, pinned versions, the cache layout and ports."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .common import EngineError

HERE = Path(__file__).resolve().parents[1]  # deploy/local
ROOT = HERE.parents[1]
POM = HERE / "kafka" / "pom.xml"
LOG4J2 = HERE / "kafka" / "log4j2.properties"
SUPERVISORD_TEMPLATE = HERE / "supervisord.conf.template"
SERVICES_FILE = HERE / "services.toml"

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_PATCHES = sorted((HERE / "ferretdb").glob("*.patch"))
JAVA_MIN = 17
KAFKA_NODE_ID = 1
# The local Kafka admin on the SASL_SSL listener (a super user; its password is in
# run/local-secrets.json as KAFKA_ADMIN_PASSWORD). See docs/engines.md.
KAFKA_ADMIN_USER = "zc-admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
DEPENDENCY_PLUGIN = "3.8.1"


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise EngineError(f"{name}={raw!r} is not a TCP port number: set it to 1-65535")
    return int(raw)


@dataclass(frozen=True)
class Layout:
    """Where everything lives under ZC_LOCAL_HOME, and which ports the engines use."""

    home: Path
    kafka_port: int
    controller_port: int
    mongodb_port: int
    kafka_sasl_port: int = 9094

    @classmethod
    def from_env(cls) -> Layout:
        home = Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache").expanduser().resolve()
        layout = cls(
            home=home,
            kafka_port=_port("ZC_KAFKA_PORT", 9092),
            controller_port=_port("ZC_KAFKA_CONTROLLER_PORT", 9093),
            mongodb_port=_port("ZC_MONGODB_PORT", 27017),
            kafka_sasl_port=_port("ZC_KAFKA_SASL_PORT", 9094),
        )
        ports = layout.engine_ports
        if len(set(ports.values())) != len(ports):
            *names, last = ports
            raise EngineError(f"{', '.join(names)} and {last} must differ")
        return layout

    @property
    def engine_ports(self) -> dict[str, int]:
        """Each engine port, by the variable that sets it."""
        return {
            "ZC_KAFKA_PORT": self.kafka_port,
            "ZC_KAFKA_CONTROLLER_PORT": self.controller_port,
            "ZC_KAFKA_SASL_PORT": self.kafka_sasl_port,
            "ZC_MONGODB_PORT": self.mongodb_port,
        }

    @property
    def kafka_libs(self) -> Path:
        return self.home / "kafka" / "libs"

    @property
    def kafka_stamp(self) -> Path:
        return self.home / "kafka" / "libs" / ".zc-stamp"

    @property
    def ferretdb_bin(self) -> Path:
        return self.home / "bin" / "ferretdb"

    @property
    def ferretdb_src(self) -> Path:
        return self.home / "src" / f"ferretdb-{FERRETDB_VERSION}"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def kafka_data(self) -> Path:
        return self.home / "data" / "kafka"

    @property
    def ferretdb_data(self) -> Path:
        return self.home / "data" / "ferretdb"

    @property
    def ferretdb_state(self) -> Path:
        return self.home / "state" / "ferretdb"

    @property
    def supervisord_conf(self) -> Path:
        return self.home / "run" / "supervisord.conf"

    @property
    def server_properties(self) -> Path:
        return self.home / "run" / "kafka" / "server.properties"

    @property
    def socket(self) -> Path:
        sock = self.run / "supervisor.sock"
        # AF_UNIX paths are limited to 107 bytes; a deep ZC_LOCAL_HOME falls back to /tmp.
        if len(str(sock)) > 100:
            digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
            sock = Path("/tmp") / f"zc-supervisor-{os.getuid()}-{digest}.sock"
        return sock

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def kafka_sasl_bootstrap(self) -> str:
        """The SASL_SSL listener (SCRAM-SHA-512 over TLS, ACLs enforced)."""
        return f"127.0.0.1:{self.kafka_sasl_port}"

    @property
    def kafka_tls(self) -> Path:
        """The dev CA and the broker's PEM keystore (see tls.py)."""
        return self.home / "kafka-tls"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongodb_port}/"
