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
# Prometheus loads this rule file when it exists (docs/observability.md, "Alerts").
ALERT_RULES = ROOT / "deploy" / "monitoring" / "alerts.yaml"

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_PATCHES = sorted((HERE / "ferretdb").glob("*.patch"))
JAVA_MIN = 17
# Jaeger v2 (an OpenTelemetry Collector distribution) and Prometheus, built from source with Go.
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_VERSION = "v1.75.0"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
PROMETHEUS_VERSION = "v0.316.0"  # Prometheus 3.16.0 (Go module versions are v0.3xx)
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
    jaeger_ui_port: int = 16686
    jaeger_grpc_port: int = 16685
    jaeger_metrics_port: int = 8888
    otlp_grpc_port: int = 4317
    otlp_http_port: int = 4318
    prometheus_port: int = 9090

    @classmethod
    def from_env(cls) -> Layout:
        home = Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache").expanduser().resolve()
        layout = cls(
            home=home,
            kafka_port=_port("ZC_KAFKA_PORT", 9092),
            controller_port=_port("ZC_KAFKA_CONTROLLER_PORT", 9093),
            mongodb_port=_port("ZC_MONGODB_PORT", 27017),
            kafka_sasl_port=_port("ZC_KAFKA_SASL_PORT", 9094),
            jaeger_ui_port=_port("ZC_JAEGER_UI_PORT", 16686),
            jaeger_grpc_port=_port("ZC_JAEGER_GRPC_PORT", 16685),
            jaeger_metrics_port=_port("ZC_JAEGER_METRICS_PORT", 8888),
            otlp_grpc_port=_port("ZC_OTLP_PORT", 4317),
            otlp_http_port=_port("ZC_OTLP_HTTP_PORT", 4318),
            prometheus_port=_port("ZC_PROMETHEUS_PORT", 9090),
        )
        ports = layout.engine_ports | layout.observability_ports
        for port in dict.fromkeys(ports.values()):
            if len(clash := [name for name, value in ports.items() if value == port]) > 1:
                *names, last = clash
                raise EngineError(
                    f"{', '.join(names)} and {last} are all port {port}: they must differ"
                )
        return layout

    @property
    def program_ports(self) -> dict[str, dict[str, int]]:
        """The ports each engine program listens on, by the variable that sets each."""
        return {
            "kafka": {
                "ZC_KAFKA_PORT": self.kafka_port,
                "ZC_KAFKA_CONTROLLER_PORT": self.controller_port,
                "ZC_KAFKA_SASL_PORT": self.kafka_sasl_port,
            },
            "ferretdb": {"ZC_MONGODB_PORT": self.mongodb_port},
            "jaeger": {
                "ZC_JAEGER_UI_PORT": self.jaeger_ui_port,
                "ZC_JAEGER_GRPC_PORT": self.jaeger_grpc_port,
                "ZC_JAEGER_METRICS_PORT": self.jaeger_metrics_port,
                "ZC_OTLP_PORT": self.otlp_grpc_port,
                "ZC_OTLP_HTTP_PORT": self.otlp_http_port,
            },
            "prometheus": {"ZC_PROMETHEUS_PORT": self.prometheus_port},
        }

    @property
    def engine_ports(self) -> dict[str, int]:
        """Kafka's and FerretDB's ports, by the variable that sets each."""
        return self.program_ports["kafka"] | self.program_ports["ferretdb"]

    @property
    def observability_ports(self) -> dict[str, int]:
        """Jaeger's and Prometheus's ports, by the variable that sets each."""
        return self.program_ports["jaeger"] | self.program_ports["prometheus"]

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
    def jaeger_bin(self) -> Path:
        return self.home / "bin" / "jaeger"

    @property
    def prometheus_bin(self) -> Path:
        return self.home / "bin" / "prometheus"

    @property
    def promtool_bin(self) -> Path:
        """Prometheus's rule checker (``make lint`` runs it on deploy/monitoring)."""
        return self.home / "bin" / "promtool"

    @property
    def jaeger_config(self) -> Path:
        return self.home / "run" / "jaeger" / "config.yaml"

    @property
    def prometheus_config(self) -> Path:
        return self.home / "run" / "prometheus" / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.home / "data" / "prometheus"

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

    @property
    def otlp_endpoint(self) -> str:
        """OTEL_EXPORTER_OTLP_ENDPOINT of the services: Jaeger's OTLP/gRPC receiver."""
        return f"http://127.0.0.1:{self.otlp_grpc_port}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"

    @property
    def jaeger_url(self) -> str:
        """Jaeger's query API (``/api/services``, ``/api/traces/<id>``) and UI."""
        return f"http://127.0.0.1:{self.jaeger_ui_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"
