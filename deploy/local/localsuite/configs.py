"""What start writes before supervisord runs: supervisord.conf and server.properties.

Also formats the Kafka KRaft storage, once per data folder (``kafka.tools.StorageTool``).
"""

from __future__ import annotations

import base64
import os
import shlex
import string
import subprocess
from pathlib import Path

from .common import EngineError, first_error_line, run_captured, timed
from .layout import (
    KAFKA_ADMIN_USER,
    KAFKA_NODE_ID,
    LOG4J2,
    ROOT,
    SCRAM_MECHANISM,
    SUPERVISORD_TEMPLATE,
    Layout,
)
from .observability import jaeger_command, prometheus_command, write_observability_configs
from .services import Service, expand, load_services, local_secrets, record_environment
from .tls import ensure_broker_tls

ADMIN_SECRET = "KAFKA_ADMIN_PASSWORD"
SCRAM_MARKER = ".zc-scram-admin"


def _escape(value: str) -> str:
    return value.replace("%", "%%")


def _program(name: str, command: list[str], options: dict[str, object], logs: Path) -> str:
    lines = [f"[program:{name}]", f"command={_escape(shlex.join(command))}"]
    base: dict[str, object] = {
        "stopasgroup": "true",
        "killasgroup": "true",
        "redirect_stderr": "true",
        "stdout_logfile": logs / f"{name}.log",
        "stdout_logfile_maxbytes": "50MB",
        "stdout_logfile_backups": 3,
    }
    for key, value in {**base, **options}.items():
        lines.append(f"{key}={_escape(str(value))}")
    return "\n".join(lines) + "\n"


SUPERVISED_MARKER = "ZC_SUPERVISED_BY"


def _environment(env: dict[str, str]) -> str:
    return ",".join(f'{key}="{value}"' for key, value in env.items())


def write_configs(layout: Layout, java: str, services: list[Service]) -> None:
    """supervisord.conf with every engine and ``services``; server.properties; Jaeger's and
    Prometheus's configurations (Prometheus scrapes every service of services.toml, started
    or not)."""
    write_observability_configs(layout, load_services())
    for folder in (layout.run / "kafka", layout.logs, layout.kafka_data, layout.ferretdb_data):
        folder.mkdir(parents=True, exist_ok=True)
    layout.ferretdb_state.mkdir(parents=True, exist_ok=True)
    kafka = layout.kafka_port
    ctrl = layout.controller_port
    sasl = layout.kafka_sasl_port
    _ca, keystore = ensure_broker_tls(layout.kafka_tls)
    properties = {
        "process.roles": "broker,controller",
        "node.id": KAFKA_NODE_ID,
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{ctrl}",
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{kafka},SASL_SSL://127.0.0.1:{sasl},"
            f"CONTROLLER://127.0.0.1:{ctrl}"
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kafka},SASL_SSL://127.0.0.1:{sasl}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": (
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL"
        ),
        "inter.broker.listener.name": "PLAINTEXT",
        # SASL_SSL: SCRAM-SHA-512 over TLS with the dev CA's certificate (tls.py).
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": keystore,
        # ACLs are enforced. The loopback PLAINTEXT and CONTROLLER listeners authenticate
        # nobody, so their principal, User:ANONYMOUS, is a super user: they are the dev
        # listeners every service and test uses, bound to 127.0.0.1 only. Principals of the
        # SASL_SSL listener get only what their ACLs allow (`zerocontact kafka users create`).
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:ANONYMOUS;User:{KAFKA_ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
        "log.dirs": layout.kafka_data,
        "num.partitions": 3,
        "offsets.topic.replication.factor": 1,
        # One dev node: 6 internal partitions instead of 50 make the first group join quick.
        "offsets.topic.num.partitions": 6,
        "transaction.state.log.num.partitions": 6,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
        # At rest (docs/performance.md, Idle; architecture.md, decision 20). The controller
        # appends a no-op record to the metadata log (and flushes it) every 500 ms by default,
        # only to show brokers it is alive: one node needs it far less often.
        "metadata.max.idle.interval.ms": 5000,
        # Every partition's high watermark written to a file every 5 s by default, a cost that
        # grows with the partitions test runs leave. The single replica's high watermark is
        # its log end again as soon as it leads after a restart, so nothing is hidden or lost.
        "replica.high.watermark.checkpoint.interval.ms": 60000,
        # Idle request handlers and network processors each wake every 300 ms; 8 and 3 per
        # listener are for many cores and disks, this broker shares two cores.
        "num.io.threads": 4,
        "num.network.threads": 2,
    }
    layout.server_properties.write_text(
        "# Generated by deploy/local/engines.py; overwritten on every start.\n"
        + "".join(f"{key}={value}\n" for key, value in properties.items())
    )
    kafka_cmd = [
        java,
        "-Xms256m",
        "-Xmx1g",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2}",
        "-cp",
        f"{layout.kafka_libs}/*",
        "kafka.Kafka",
        str(layout.server_properties),
    ]
    ferretdb_cmd = [
        str(layout.ferretdb_bin),
        "--handler=sqlite",
        f"--sqlite-url=file:{layout.ferretdb_data}/",
        f"--listen-addr=127.0.0.1:{layout.mongodb_port}",
        # A bank's deployment reports nothing to vendors; "-" turns the debug HTTP listener off.
        "--telemetry=disable",
        "--debug-addr=-",
        f"--state-dir={layout.ferretdb_state}",
        "--log-format=json",
    ]
    # Every program (and its children) carries this variable, so `stop` can find them even
    # after supervisord itself was killed with SIGKILL.
    marker = {SUPERVISED_MARKER: str(layout.home)}
    programs = [
        _program(
            "kafka",
            kafka_cmd,
            # A clean broker shutdown takes a few seconds; SIGKILL only after 30 s.
            {
                "environment": _environment(marker),
                "directory": layout.run / "kafka",
                # Every engine is started by engines.py (start_process), only those asked for.
                "autostart": "false",
                # The JVM exits 143 (128 + SIGTERM) after its shutdown hook stopped the broker.
                "exitcodes": "0,143",
                "priority": 10,
                "startsecs": 5,
                "startretries": 2,
                "stopwaitsecs": 30,
                "autorestart": "true",
            },
            layout.logs,
        ),
        _program(
            "ferretdb",
            ferretdb_cmd,
            {
                # Go's collector at its default (GOGC=100) took ~10 % of FerretDB's CPU under
                # the loan benchmark; 400 trades memory (tens of MB here) for ~13 % less CPU
                # per loan (bench/loan_310.py's CPU meter, docs/loan.md).
                "environment": _environment({**marker, "GOGC": "400"}),
                "directory": layout.ferretdb_state,
                "autostart": "false",
                "priority": 20,
                "startsecs": 2,
                "startretries": 2,
                "stopwaitsecs": 10,
                "autorestart": "true",
            },
            layout.logs,
        ),
        _program(
            "jaeger",
            jaeger_command(layout),
            {
                "environment": _environment(marker),
                "directory": layout.jaeger_config.parent,
                "autostart": "false",
                "priority": 30,
                "startsecs": 2,
                "startretries": 2,
                "stopwaitsecs": 10,
                "autorestart": "true",
            },
            layout.logs,
        ),
        _program(
            "prometheus",
            prometheus_command(layout),
            {
                "environment": _environment(marker),
                "directory": layout.prometheus_data,
                "autostart": "false",
                "priority": 40,
                "startsecs": 2,
                "startretries": 2,
                # Prometheus writes its head block's WAL checkpoint on SIGTERM.
                "stopwaitsecs": 30,
                "autorestart": "true",
            },
            layout.logs,
        ),
    ]
    engines_env = {
        "KAFKA_BOOTSTRAP_SERVERS": layout.kafka_bootstrap,
        "MONGODB_URI": layout.mongodb_uri,
        # Where the services' OpenTelemetry SDK exports spans: the local Jaeger (OTLP/gRPC).
        "OTEL_EXPORTER_OTLP_ENDPOINT": layout.otlp_endpoint,
        "PYTHONUNBUFFERED": "1",
        **marker,
    }
    record_environment(
        layout, {k: v for k, v in engines_env.items() if k not in marker}, services
    )  # for the zerocontact command
    secrets = local_secrets(layout, {name for service in services for name in service.secrets})
    for service in services:
        own_secrets = {name: secrets[name] for name in service.secrets}
        env = {key: expand(value, layout) for key, value in service.env.items()}
        programs.append(
            _program(
                service.name,
                [expand(part, layout) for part in service.command],
                # Started by engines.py once the engines answer, not by supervisord at boot.
                {
                    "directory": ROOT,
                    "priority": 100,
                    "autostart": "false",
                    "startsecs": 2,
                    "startretries": 3,
                    "stopwaitsecs": 15,
                    "autorestart": "true",
                    "environment": _environment({**engines_env, **env, **own_secrets}),
                },
                layout.logs,
            )
        )
    template = string.Template(SUPERVISORD_TEMPLATE.read_text())
    layout.supervisord_conf.write_text(
        template.substitute(
            socket=_escape(str(layout.socket)),
            logs=_escape(str(layout.logs)),
            run=_escape(str(layout.run)),
            root=_escape(str(ROOT)),
            programs="\n".join(programs),
        )
    )


def kafka_cluster_id() -> str:
    """A random Kafka cluster id, as ``StorageTool random-uuid`` makes (saves one JVM start)."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka rejects ids that look like a command-line flag
            return text


def admin_password(layout: Layout) -> str:
    """The local Kafka admin's SCRAM password (made once, in run/local-secrets.json)."""
    return local_secrets(layout, {ADMIN_SECRET})[ADMIN_SECRET]


def _scram(layout: Layout) -> str:
    return f"{SCRAM_MECHANISM}=[name={KAFKA_ADMIN_USER},password={admin_password(layout)}]"


def _run_kafka_tool(
    layout: Layout, java: str, main_class: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run one of Kafka's command-line tools from the fetched jars, output captured."""
    classpath = f"{layout.kafka_libs}/*"
    log4j = f"-Dlog4j2.configurationFile={LOG4J2}"
    return run_captured([java, log4j, "-cp", classpath, main_class, *args])


def format_kafka(layout: Layout, java: str) -> None:
    meta = layout.kafka_data / "meta.properties"
    marker = layout.kafka_data / ".zc-controller-port"
    if meta.exists():
        formatted_for = marker.read_text().strip() if marker.exists() else None
        if formatted_for and formatted_for != str(layout.controller_port):
            raise EngineError(
                f"Kafka storage in {layout.kafka_data} was formatted for controller port "
                f"{formatted_for}: set ZC_KAFKA_CONTROLLER_PORT={formatted_for} "
                f"or delete {layout.kafka_data} (its topics are lost)"
            )
        return
    out_log = layout.logs / "kafka-format.log"
    with timed(f"kafka: formatting the KRaft storage in {layout.kafka_data}"):
        out = _run_kafka_tool(
            layout,
            java,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            kafka_cluster_id(),
            "-c",
            str(layout.server_properties),
            "--standalone",
            "--add-scram",
            _scram(layout),
        )
        out_log.write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise EngineError(
                f"kafka storage format failed ({first_error_line(out.stdout + out.stderr)}); "
                f"log: {out_log}"
            )
    marker.write_text(f"{layout.controller_port}\n")
    (layout.kafka_data / SCRAM_MARKER).write_text(f"{KAFKA_ADMIN_USER}\n")


def ensure_admin_credential(layout: Layout, java: str) -> None:
    """Give the local admin its SCRAM credential on storage formatted before SASL_SSL existed.

    Fresh storage gets it at format time (``--add-scram``); this runs once per data folder,
    over the PLAINTEXT listener, when the broker answers.
    """
    marker = layout.kafka_data / SCRAM_MARKER
    if marker.exists():
        return
    with timed(f"kafka: adding the SCRAM credential of {KAFKA_ADMIN_USER}"):
        out = _run_kafka_tool(
            layout,
            java,
            "org.apache.kafka.tools.ConfigCommand",
            "--bootstrap-server",
            layout.kafka_bootstrap,
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            KAFKA_ADMIN_USER,
            "--add-config",
            f"{SCRAM_MECHANISM}=[password={admin_password(layout)}]",
        )
    if out.returncode != 0:
        raise EngineError(
            f"adding the Kafka admin's SCRAM credential failed "
            f"({first_error_line(out.stdout + out.stderr)})"
        )
    marker.write_text(f"{KAFKA_ADMIN_USER}\n")
