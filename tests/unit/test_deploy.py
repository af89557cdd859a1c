"""The docker compose stack stays in step with voxrelay.

compose.yaml, Prometheus's scrape list, the Grafana dashboard and the Dockerfile are
edited by hand; these checks make drift between them (a service without a scrape
target, a dashboard query for a metric no service defines, a command naming a module
that does not exist) fail here rather than in someone's empty graph.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "voxrelay.json"

NO_METRICS = {"openai_sim"}
"voxrelay service kinds that serve no /metrics (the simulator stands in for OpenAI)."
HTTP_METRICS = {"signaling"}
"Kinds that serve /metrics on their HTTP port rather than on VOXRELAY_METRICS_PORT."
METRIC_NAME = re.compile(r"\bvoxrelay_[a-z0-9_]+")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
METRIC_DEFINITION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary)\(\s*[\"'](voxrelay_[a-z0-9_]+)[\"']")
"A prometheus_client metric constructed with its name as the first argument."
COMPOSE_TIMEOUT_S = 60


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def compose_services() -> dict[str, dict[str, Any]]:
    return load_yaml(COMPOSE)["services"]


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def module_of(argv: list[str]) -> str | None:
    """The module of a ``python -m <module> ...`` command; None for any other command."""
    if len(argv) >= 3 and Path(argv[0]).name.startswith("python") and argv[1] == "-m":
        return argv[2]
    return None


def voxrelay_services() -> dict[str, tuple[str, dict[str, str]]]:
    """Compose services built from the voxrelay image: name → (kind, environment).

    The kind is the service package its command runs (``python -m services.<kind>``).
    """
    result = {}
    for name, service in compose_services().items():
        if "build" not in service:
            continue
        module = module_of(as_argv(service.get("command") or []))
        assert module is not None and module.startswith("services."), (
            f"compose service {name!r} must run `python -m services.<name>` (got "
            f"{service.get('command')!r})")
        result[name] = (module.removeprefix("services."), environment(service))
    return result


def expected_scrape_targets() -> set[tuple[str, str]]:
    targets = set()
    for name, (kind, env) in voxrelay_services().items():
        if kind in NO_METRICS:
            continue
        key = "VOXRELAY_HTTP_PORT" if kind in HTTP_METRICS else "VOXRELAY_METRICS_PORT"
        port = env.get(key, "")
        assert port.isdigit() and int(port) > 0, (
            f"compose service {name!r} ({kind}) needs a literal {key} to be scraped (got {port!r})")
        targets.add((kind, f"127.0.0.1:{port}"))
    return targets


def prometheus_scrape_targets() -> set[tuple[str, str]]:
    jobs = load_yaml(PROMETHEUS)["scrape_configs"]
    names = [job["job_name"] for job in jobs]
    assert len(names) == len(set(names)), f"duplicate Prometheus jobs: {names}"
    return {(job["job_name"], target)
            for job in jobs
            for static in job.get("static_configs", [])
            for target in static["targets"]}


def test_prometheus_scrapes_exactly_the_services_compose_starts() -> None:
    expected = expected_scrape_targets()
    actual = prometheus_scrape_targets()
    assert actual == expected, (
        f"compose.yaml and deploy/prometheus/prometheus.yml disagree: "
        f"not scraped {sorted(expected - actual)}, scraped but not started "
        f"{sorted(actual - expected)}")


def test_prometheus_scrapes_every_five_seconds() -> None:
    assert load_yaml(PROMETHEUS)["global"]["scrape_interval"] == "5s"


def test_host_ports_of_the_stack_do_not_collide() -> None:
    """On the host's network every listening port must be distinct."""
    ports: dict[str, str] = {}
    for name, (_, env) in voxrelay_services().items():
        for key in ("VOXRELAY_METRICS_PORT", "VOXRELAY_HTTP_PORT", "VOXRELAY_SIM_PORT"):
            if key in env:
                owner = ports.setdefault(env[key], f"{name}.{key}")
                assert owner == f"{name}.{key}", f"port {env[key]}: {owner} and {name}.{key}"
    assert not {"9090", "3000"} & ports.keys(), "Prometheus (9090) and Grafana (3000) ports taken"


def test_compose_services_share_the_host_network_and_the_bus() -> None:
    for name, service in compose_services().items():
        assert service.get("network_mode") == "host", f"{name} must use network_mode: host"
    for name, (kind, env) in voxrelay_services().items():
        if kind == "openai_sim":
            continue
        assert env.get("VOXRELAY_BUS_PUBLISH") == "tcp://127.0.0.1:7701", name
        assert env.get("VOXRELAY_BUS_SUBSCRIBE") == "tcp://127.0.0.1:7702", name
        assert env.get("VOXRELAY_INSTANCE"), f"{name} needs a VOXRELAY_INSTANCE"


def test_only_the_link_gets_the_api_key_and_only_from_the_environment() -> None:
    holders = {name: env["OPENAI_API_KEY"]
               for name, (_, env) in voxrelay_services().items() if "OPENAI_API_KEY" in env}
    assert holders == {"openai_link": "${OPENAI_API_KEY:-}"}
    assert not re.search(r"sk-[A-Za-z0-9_-]{8,}", COMPOSE.read_text(encoding="utf-8"))


def test_compose_bind_mounts_exist() -> None:
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def dashboard_expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        for value in node.values():
            yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from dashboard_expressions(value)


def defined_metrics() -> dict[str, str]:
    """Metric name → prometheus_client type, for every metric constructed under services/."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "services").rglob("*.py"))
    return {name: kind for kind, name in METRIC_DEFINITION.findall(source)}


def test_every_dashboard_metric_is_defined_by_a_service() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used: set[str] = set()
    histograms: set[str] = set()
    for expr in dashboard_expressions(dashboard["panels"]):
        for series in METRIC_NAME.findall(expr):
            name = series
            for suffix in HISTOGRAM_SERIES:
                name = name.removesuffix(suffix)
            used.add(name)
            if series.endswith("_bucket"):
                histograms.add(name)
    assert used, "the dashboard queries no voxrelay metric"
    defined = defined_metrics()
    missing = sorted(used - defined.keys())
    assert not missing, f"dashboard queries metrics no service defines: {missing}"
    not_histograms = sorted(n for n in histograms if defined[n] != "Histogram")
    assert not not_histograms, f"dashboard reads buckets of non-histograms: {not_histograms}"


def test_dashboard_reads_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] == "voxrelay latency"
    [datasource] = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"]
    assert datasource["uid"] == "prometheus"
    assert datasource["url"] == "http://127.0.0.1:9090"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {"prometheus"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_grafana_loads_dashboards_from_where_compose_mounts_them() -> None:
    [provider] = load_yaml(GRAFANA / "provisioning" / "dashboards" / "voxrelay.yml")["providers"]
    mounts = dict(volume.split(":")[:2] for volume in compose_services()["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_compose_file_is_valid_for_docker_compose() -> None:
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose not installed (scripts/bootstrap --test installs it): "
                    "compose.yaml not validated")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=COMPOSE_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"docker-compose config: {result.stderr or result.stdout}"


def dockerfile_commands() -> list[list[str]]:
    """The exec-form CMD and ENTRYPOINT of the Dockerfile."""
    commands = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() in ("CMD", "ENTRYPOINT"):
            argv = json.loads(rest)
            assert isinstance(argv, list), f"{instruction} must use the exec (JSON) form"
            commands.append(argv)
    return commands


def test_every_command_runs_something_that_exists() -> None:
    commands = dockerfile_commands() + [
        as_argv(service["command"]) for service in compose_services().values()
        if "build" in service]
    assert len(commands) > 1
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["scripts"]
    for argv in commands:
        module = module_of(argv)
        if module is not None:
            package = ROOT.joinpath(*module.split("."))
            assert (package / "__main__.py").is_file(), f"{argv}: no {package}/__main__.py"
        else:
            assert argv[0] == "voxrelay" and "voxrelay" in scripts, f"{argv}: unknown program"
            from services.cli import build_parser

            build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown command
