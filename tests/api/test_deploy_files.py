"""deploy/ holds what operators expect, checked as far as this machine can (it runs no
container engine): the dashboard charts metrics lcx really exports, the compose file
parses and names the images and ports the README gives, the image and the unit run
``lcx serve`` as documented."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import yaml
from support.livechat_app import livechat_app

from lcx.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def exported_names(text: str) -> set[str]:
    """Every series name a Prometheus text page can yield, samples or not: the samples'
    names, and each ``# TYPE`` line's family with the suffixes a histogram adds."""
    names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)  # counters are typed under their _total name
        if kind == "histogram":
            names |= {name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


async def test_every_dashboard_query_names_metrics_that_lcx_exports(tmp_path: Path) -> None:
    """Each lcx_* name in the dashboard is in a real /metrics page, and documented."""
    async with livechat_app(tmp_path) as app:
        exported = exported_names((await app.client.get("/metrics")).text)
    operations = (ROOT / "docs" / "operations.md").read_text()
    queries = dashboard_queries()
    assert len(queries) >= 15
    used = {name for query in queries for name in re.findall(r"\blcx_[a-z_]+\b", query)}
    assert used - exported == set()
    for name in used:
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f"`{family}`" in operations, f"{family} is not in docs/operations.md"


def test_the_dashboard_covers_what_operators_watch() -> None:
    """Traffic, latency, deliveries and dead letters, sockets, actors and restarts, leader
    and bus each have a row."""
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == ["Traffic", "Latency", "Deliveries and dead letters", "Sockets",
                    "Actors and restarts", "Leader and bus"]
    text = " ".join(dashboard_queries())
    for needle in ('outcome="dead"', "lcx_ws_sessions", "lcx_actor_restarts_total",
                   "lcx_leader", "lcx_bus_rtt_seconds", "histogram_quantile"):
        assert needle in text


def test_compose_runs_two_instances_with_redis_and_postgresql_as_the_readme_says() -> None:
    """The compose file parses; its images and published ports are those of README."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"lcx-a", "lcx-b", "redis", "postgres"}
    readme = (ROOT / "README.md").read_text() + (DEPLOY / "README.md").read_text()
    for name, service in services.items():
        assert f"`{service['image']}`" in readme, name
    published = {name: [port.split(":")[:-1] for port in service.get("ports", [])]
                 for name, service in services.items()}
    assert published["lcx-a"] == [["127.0.0.1", "8081"]]
    assert published["lcx-b"] == [["127.0.0.1", "8082"]]
    for name, port in (("lcx-a", "8081"), ("lcx-b", "8082")):
        assert f"`{name}` on `127.0.0.1:{port}`" in readme
        environment = services[name]["environment"]
        assert environment["LCX_INSTANCE_ID"] == name
        assert environment["LCX_REDIS_URL"].startswith("redis://redis:")
        assert environment["LCX_STORE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in environment["LCX_STORE_URL"]
        assert set(services[name]["depends_on"]) == {"redis", "postgres"}
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_the_image_is_slim_runs_as_lcx_and_checks_healthz() -> None:
    """FROM a slim Python, a non-root USER, lcx serve as entry point, HEALTHCHECK /healthz."""
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert re.fullmatch(r"FROM python:3\.1[1-9]-slim", instructions[0])
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users == ["lcx"]
    assert 'ENTRYPOINT ["lcx", "serve"]' in instructions
    assert 'CMD ["--config", "/etc/lcx/lcx.toml"]' in instructions
    text = (DEPLOY / "Dockerfile").read_text()
    assert "HEALTHCHECK" in text
    assert "http://127.0.0.1:8080/healthz" in text
    assert "EXPOSE 8080" in instructions
    copied = {line.split()[1] for line in instructions if line.startswith("COPY ")}
    packages = re.search(r'include = \[(.*)\]', (ROOT / "pyproject.toml").read_text())
    assert packages is not None
    for package in re.findall(r'"(\w+)\*"', packages.group(1)):
        assert package in copied, f"the image does not copy the {package} package"


def test_the_image_configuration_loads_from_its_environment() -> None:
    """deploy/lcx.toml is a valid configuration once LCX_JWT_SECRET is set."""
    settings = load_settings(DEPLOY / "lcx.toml", environ={
        "LCX_JWT_SECRET": "s" * 32, "LCX_STORE_URL": "postgresql://lcx@postgres/lcx",
        "LCX_REDIS_URL": "redis://redis:6379/0"})
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8080)
    assert settings.cluster.redis_url == "redis://redis:6379/0"
    alone = load_settings(DEPLOY / "lcx.toml", environ={"LCX_JWT_SECRET": "s" * 32})
    assert alone.store.url.startswith("sqlite:////var/lib/lcx/")


def test_the_systemd_unit_serves_and_does_not_restart_what_cannot_be_cured() -> None:
    """ExecStart runs lcx serve with a config; exit codes 2-5 are not restarted."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "lcx.service").read_text())
    service = unit["Service"]
    assert re.fullmatch(r"\S+/lcx serve --config \S+\.toml", service["ExecStart"])
    assert service["User"] == "lcx"
    assert service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"].split() == ["2", "3", "4", "5"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
