"""What deploy/local/engines.py writes for Jaeger and Prometheus, and the ports it uses."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from localsuite import observability  # noqa: E402
from localsuite.cli import endpoints  # noqa: E402
from localsuite.common import EngineError  # noqa: E402
from localsuite.configs import write_configs  # noqa: E402
from localsuite.layout import Layout  # noqa: E402
from localsuite.services import Service, load_services  # noqa: E402


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    monkeypatch.setenv("ZC_LOCAL_HOME", str(tmp_path))
    for name in ("ZC_JAEGER_UI_PORT", "ZC_OTLP_PORT", "ZC_OTLP_HTTP_PORT", "ZC_PROMETHEUS_PORT"):
        monkeypatch.delenv(name, raising=False)
    return Layout.from_env()


def _service(name: str, metrics: str | None) -> Service:
    return Service(name, ["true"], metrics=metrics)


def _written(layout: Layout, services: list[Service]) -> tuple[dict[str, Any], dict[str, Any]]:
    observability.write_observability_configs(layout, services)
    jaeger = yaml.safe_load(layout.jaeger_config.read_text())
    prometheus = yaml.safe_load(layout.prometheus_config.read_text())
    return jaeger, prometheus


def test_jaeger_binds_only_loopback_with_memory_storage(layout: Layout) -> None:
    jaeger, _ = _written(layout, [])
    otlp = jaeger["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"] == "127.0.0.1:4317"
    assert otlp["http"]["endpoint"] == "127.0.0.1:4318"
    query = jaeger["extensions"]["jaeger_query"]
    assert query["http"]["endpoint"] == "127.0.0.1:16686"
    assert query["grpc"]["endpoint"] == "127.0.0.1:16685"
    backend = query["storage"]["traces"]
    assert "memory" in jaeger["extensions"]["jaeger_storage"]["backends"][backend]
    assert jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"] == backend
    pipeline = jaeger["service"]["pipelines"]["traces"]
    assert pipeline == {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}
    (reader,) = jaeger["service"]["telemetry"]["metrics"]["readers"]
    assert reader["pull"]["exporter"]["prometheus"] == {"host": "127.0.0.1", "port": 8888}


def test_prometheus_scrapes_every_process(layout: Layout) -> None:
    services = [
        _service("loan", "http://127.0.0.1:8002/metrics"),
        _service("gateway", "http://127.0.0.1:8051/metrics"),
        _service("no-metrics", None),
    ]
    _, prometheus = _written(layout, services)
    assert prometheus["global"]["scrape_interval"] == "15s"
    assert prometheus["global"]["evaluation_interval"] == "15s"
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]
    }
    assert jobs == {
        "prometheus": ["127.0.0.1:9090"],
        "jaeger": ["127.0.0.1:8888"],
        "loan": ["127.0.0.1:8002"],
        "gateway": ["127.0.0.1:8051"],
        "kafka-lag-exporter": ["127.0.0.1:9308"],
    }


def test_services_toml_declares_the_documented_metrics_ports() -> None:
    """docs/observability.md: every HTTP service on its port, the gateway on 8051, signals on 6066."""
    metrics = {service.name: service.metrics for service in load_services()}
    assert metrics["gateway"] == "http://127.0.0.1:8051/metrics"
    assert metrics["signals-risk"] == "http://127.0.0.1:6066/metrics"
    for service in load_services():
        if service.port and service.name not in {"gateway", "signals-risk"}:
            assert service.metrics == f"http://127.0.0.1:{service.port}/metrics"


def test_a_declared_lag_exporter_is_not_scraped_twice(layout: Layout) -> None:
    services = [_service("lag-exporter", "http://127.0.0.1:9308/metrics")]
    _, prometheus = _written(layout, services)
    names = [job["job_name"] for job in prometheus["scrape_configs"]]
    assert names == ["prometheus", "jaeger", "lag-exporter"]


def test_rule_file_only_when_it_exists(layout: Layout, tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    assert "rule_files" not in observability.prometheus_config(layout, [], rules)
    assert "rule_files" not in observability.prometheus_config(layout, [], None)
    rules.write_text("groups: []\n")
    assert observability.prometheus_config(layout, [], rules)["rule_files"] == [str(rules)]


def test_prometheus_command_line(layout: Layout) -> None:
    command = observability.prometheus_command(layout)
    assert command[0] == str(layout.home / "bin" / "prometheus")
    assert "--web.listen-address=127.0.0.1:9090" in command
    assert "--web.enable-lifecycle" in command
    assert "--storage.tsdb.retention.time=2d" in command
    assert f"--storage.tsdb.path={layout.home / 'data' / 'prometheus'}" in command
    assert f"--config.file={layout.home / 'run' / 'prometheus' / 'prometheus.yml'}" in command


def test_ports_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZC_LOCAL_HOME", str(tmp_path))
    monkeypatch.setenv("ZC_JAEGER_UI_PORT", "26686")
    monkeypatch.setenv("ZC_OTLP_PORT", "24317")
    monkeypatch.setenv("ZC_OTLP_HTTP_PORT", "24318")
    monkeypatch.setenv("ZC_PROMETHEUS_PORT", "29090")
    layout = Layout.from_env()
    jaeger, prometheus = _written(layout, [])
    assert jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "127.0.0.1:24317"
    assert jaeger["extensions"]["jaeger_query"]["http"]["endpoint"] == "127.0.0.1:26686"
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:29090"]
    assert layout.otlp_endpoint == "http://127.0.0.1:24317"
    rows = {name: where for name, where, _notes in endpoints(layout, [])}
    assert rows["jaeger query API"] == "http://127.0.0.1:26686"
    assert rows["prometheus"] == "http://127.0.0.1:29090"


def test_two_engines_on_one_port_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZC_LOCAL_HOME", str(tmp_path))
    monkeypatch.setenv("ZC_PROMETHEUS_PORT", "4317")
    monkeypatch.delenv("ZC_OTLP_PORT", raising=False)
    with pytest.raises(EngineError, match="ZC_OTLP_PORT and ZC_PROMETHEUS_PORT are all port 4317"):
        Layout.from_env()


@pytest.mark.parametrize(
    "value",
    [
        {"a": {"b": [1, "x: y", True], "c": {}}, "d": []},
        {"jobs": [{"name": "n", "targets": ["127.0.0.1:1"]}, {"name": "m"}], "e": 'a"b\\c'},
    ],
)
def test_yaml_writer_round_trips(value: dict[str, Any]) -> None:
    assert yaml.safe_load(observability.to_yaml(value)) == value


def test_supervisord_runs_them_and_services_export_to_jaeger(layout: Layout) -> None:
    services = load_services()
    write_configs(layout, "java", services)
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(layout.supervisord_conf.read_text())
    jaeger, prometheus = conf["program:jaeger"], conf["program:prometheus"]
    assert jaeger["command"] == f"{layout.jaeger_bin} --config={layout.jaeger_config}"
    assert prometheus["command"].startswith(f"{layout.prometheus_bin} --config.file=")
    # engines.py starts the engines it is asked for; supervisord starts none by itself.
    for name in ("kafka", "ferretdb", "jaeger", "prometheus"):
        assert conf[f"program:{name}"]["autostart"] == "false"
    for service in services:
        env = conf[f"program:{service.name}"]["environment"]
        assert 'OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317"' in env
    assert layout.jaeger_config.exists() and layout.prometheus_config.exists()
