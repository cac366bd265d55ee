"""The compose file declares the deployment the README describes; images use requirements.txt."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO_ROOT

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-gpu",
    "airflow-init",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return {str(k): str(v) for k, v in env.items()}


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == AIRFLOW_SERVICES | {"postgres", "redis", "grafana"}


def test_celery_executor_with_redis_and_shared_secrets(compose: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        env = _env(compose["services"][name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"):
            assert env[key].startswith("${"), f"{name}: {key} must come from the environment"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW_CONN_LLM_USAGE_DB"].endswith("@postgres:5432/llm_usage"), name
        assert "AIRFLOW_CONN_SMTP_DEFAULT" in env and "AIRFLOW_VAR_LLM_USAGE_LOG_DIRS" in env


def test_separate_databases_for_metadata_and_aggregates(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["airflow-scheduler"])
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    init = (REPO_ROOT / "docker" / "init-db.sh").read_text(encoding="utf-8")
    assert "CREATE DATABASE llm_usage" in init
    mounts = compose["services"]["postgres"]["volumes"]
    assert any("init-db.sh:/docker-entrypoint-initdb.d/" in m for m in mounts)


def test_gpu_worker_serves_gpu_queue_with_reserved_gpu(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["airflow-worker-gpu"]
    assert "--queues gpu" in gpu["command"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["build"]["dockerfile"] == "docker/gpu-worker.Dockerfile"
    dockerfile = (REPO_ROOT / "docker" / "gpu-worker.Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM pytorch/pytorch:[\w.]+-cuda[\w.]+-cudnn\d+-(runtime|devel)$", dockerfile, re.M)
    cpu = compose["services"]["airflow-worker"]
    assert "--queues default" in cpu["command"]
    # the tokenizers load once per gpu worker process (tests/e2e/test_celery_real.py runs this setup)
    for service in (gpu, cpu):
        assert (
            service["environment"]["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
            == "llmtally.jobs.celery.CELERY_CONFIG"
        )
    assert gpu["environment"]["LLMTALLY_PRELOAD_MODELS"] == "*"
    assert "LLMTALLY_PRELOAD_MODELS" not in cpu["environment"]


def test_service_logs_are_mounted_read_only_into_workers(compose: dict[str, Any]) -> None:
    for name in ("airflow-worker", "airflow-worker-gpu"):
        vols = compose["services"][name]["volumes"]
        logs = [v for v in vols if ":/data/logs" in v]
        assert logs and all(v.endswith(":ro") for v in logs), name
        assert any(v.endswith(":/data/reports") for v in vols)
        assert any(":/models:ro" in v for v in vols)


def test_health_checks_restart_and_init(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if name == "airflow-init":
            assert "airflow db migrate" in svc["command"][-1]
            assert "llmtally" in svc["command"][-1]
            continue
        assert "healthcheck" in svc, name
        assert svc.get("restart") == "always", name


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        names.add(re.split(r"[\[=<>~ ]", line, maxsplit=1)[0].lower())
    return names


def test_images_install_requirements_txt() -> None:
    req = _requirement_names((REPO_ROOT / "requirements.txt").read_text(encoding="utf-8"))
    assert {"apache-airflow", "apache-airflow-providers-postgres", "transformers", "torch", "pandas"} <= req
    cpu = (REPO_ROOT / "docker" / "airflow.Dockerfile").read_text(encoding="utf-8")
    assert "COPY --chown=airflow:root requirements.txt constraints.txt" in cpu
    assert "pip install --no-cache-dir -r requirements.txt" in cpu
    gpu = (REPO_ROOT / "docker" / "gpu-worker.Dockerfile").read_text(encoding="utf-8")
    # the GPU image keeps its CUDA torch and installs every other pin unchanged
    assert "grep -v '^torch==' requirements.txt" in gpu and "grep -v '^torch==' constraints.txt" in gpu
    assert "pip install --no-cache-dir -r /tmp/requirements-gpu.txt" in gpu
    airflow_pin = re.search(r"^apache-airflow==([\d.]+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    assert airflow_pin and f"apache/airflow:{airflow_pin.group(1)}-" in cpu


def test_images_carry_no_test_or_check_tools() -> None:
    """requirements.txt (what the images install) names none of requirements-dev.txt's own tools, and
    neither do the package's extras that it installs."""
    runtime = _requirement_names((REPO_ROOT / "requirements.txt").read_text(encoding="utf-8"))
    dev = _requirement_names((REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8"))
    assert {"pytest", "ruff", "mypy", "playwright", "hypothesis"} <= dev
    assert not runtime & dev
    extras = (
        (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[project.optional-dependencies]")[1]
    )
    extras = extras.split("\n[", 1)[0]
    assert not any(f'"{tool}' in extras for tool in dev), extras


def test_every_requirement_is_pinned_by_constraints() -> None:
    req = _requirement_names((REPO_ROOT / "requirements.txt").read_text(encoding="utf-8"))
    pinned = _requirement_names(Path(REPO_ROOT / "constraints.txt").read_text(encoding="utf-8"))
    normalise = lambda n: n.replace("_", "-")  # noqa: E731
    assert {normalise(n) for n in req} <= {normalise(n) for n in pinned}


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Bind mounts of the repository's files: container path -> (host path, mode)."""
    out = {}
    for volume in service.get("volumes", []):
        host, container, *mode = volume.split(":")
        if host.startswith("./"):
            out[container] = (host, mode[0] if mode else "rw")
    return out


def test_grafana_is_pinned_provisioned_read_only_and_waits_for_the_database(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", grafana["image"]), "pin a Grafana release"
    assert "3000:3000" in grafana["ports"]
    assert grafana["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert grafana["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == ("./grafana/provisioning", "ro")
    assert mounts["/etc/grafana/dashboards"] == ("./grafana/dashboards", "ro")
    for host, _ in mounts.values():
        assert (REPO_ROOT / host).exists(), host
    env = _env(grafana)
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:?set in .env}"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith("/etc/grafana/dashboards/")
    assert (REPO_ROOT / "grafana/dashboards" / home.removeprefix("/etc/grafana/dashboards/")).is_file()


def test_grafana_provisioning_points_at_the_mounted_files_and_the_read_only_login(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    (source,) = yaml.safe_load((REPO_ROOT / "grafana/provisioning/datasources/llmtally.yaml").read_text())[
        "datasources"
    ]
    assert source["type"] == "grafana-postgresql-datasource" and source["url"] == "postgres:5432"
    assert source["jsonData"]["database"] == "llm_usage" and source["jsonData"]["timescaledb"] is False
    assert isinstance(source["jsonData"]["postgresVersion"], int)
    # the password is the container's environment variable, which compose takes from .env
    assert source["secureJsonData"] == {"password": "$__env{GRAFANA_DB_PASSWORD}"}
    assert _env(grafana)["GRAFANA_DB_PASSWORD"] == "${GRAFANA_DB_PASSWORD:?set in .env}"
    # the login is the one docker/init-db.sh makes with docker/grafana-reader.sql, mounted where it runs it
    init = (REPO_ROOT / "docker" / "init-db.sh").read_text(encoding="utf-8")
    assert f"-v reader={source['user']}" in init and "--dbname llm_usage" in init
    script = re.search(r"-f (\S+grafana-reader\.sql)", init)
    assert script is not None
    postgres = compose["services"]["postgres"]
    assert _mounts(postgres)[script.group(1)] == ("./docker/grafana-reader.sql", "ro")
    assert _env(postgres)["GRAFANA_DB_PASSWORD"] == "${GRAFANA_DB_PASSWORD:?set in .env}"
    (provider,) = yaml.safe_load((REPO_ROOT / "grafana/provisioning/dashboards/llmtally.yaml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file" and provider["options"]["path"] in _mounts(grafana)
    assert provider["allowUiUpdates"] is False
    dashboards = REPO_ROOT / "grafana/dashboards"
    for board in dashboards.glob("*.json"):
        for ref in re.findall(r'"uid": "([^"]+)"', board.read_text(encoding="utf-8")):
            assert ref in {source["uid"], "-- Grafana --"} or ref == json.loads(board.read_text())["uid"], ref


def test_no_secret_is_written_into_the_compose_file(compose: dict[str, Any]) -> None:
    secret = re.compile(r"(^|_)(PASSWORD|SECRET|KEY|TOKEN)(_|$)")
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if secret.search(key):
                assert value.startswith("${"), f"{name}: {key} must come from .env"
            for userinfo in re.findall(r"://([^@/\s]*)@", value):  # user:password@ in a URL
                _, _, password = re.sub(r"\$\{[^}]*\}", "", userinfo).partition(":")
                assert password == "", f"{name}: {key} has a password written in"
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    for variable in ("GRAFANA_ADMIN_PASSWORD", "GRAFANA_DB_PASSWORD"):
        assert re.search(rf"^{variable}=", example, re.M), variable
