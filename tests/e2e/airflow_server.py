"""A real Airflow (``airflow standalone``: api-server, scheduler, dag-processor, triggerer with
LocalExecutor) on 127.0.0.1, with its metadata in a fresh database on the machine's PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support import REPO_ROOT

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def wait_healthy(base_url: str, check_alive: Callable[[], None], timeout: float, what: str) -> None:
    """Until the api-server at ``base_url`` says the scheduler is healthy; ``check_alive`` raises when
    a process it depends on has exited."""
    deadline = time.monotonic() + timeout
    while True:
        check_alive()
        try:
            health = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=5).json()
            if health.get("scheduler", {}).get("status") == "healthy":
                return
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not become healthy in {timeout:.0f} s")
        time.sleep(1)


def usage_database() -> Iterator[str]:
    """A fresh aggregate database (a DSN), dropped afterwards: for a module-scoped fixture."""
    with temp_database("llmtally_usage") as name:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"


def write_task_policy(home: Path, body: str) -> None:
    """A cluster policy (Airflow's own hook, read from ``$AIRFLOW_HOME/config``): ``body`` is the body
    of ``task_policy(task)`` for the llm_usage_daily recount task."""
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "airflow_local_settings.py").write_text(
        "from datetime import timedelta  # noqa: F401\n\n\n"
        "def task_policy(task):\n"
        "    if task.dag_id == 'llm_usage_daily' and task.task_id == 'recount':\n"
        + "".join(f"        {line}\n" for line in body.strip().splitlines())
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def temp_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database; yields its name and drops it afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class AirflowServer:
    """Handle on a running Airflow: REST calls with a bearer token."""

    def __init__(
        self, base_url: str, home: Path, proc: subprocess.Popen[bytes] | None, env: dict[str, str]
    ) -> None:
        self.base_url = base_url
        self.env = env
        self.home = home
        self.proc = proc
        self.username = "admin"
        self.password = "admin-test-pw"
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            r = httpx.post(
                f"{self.base_url}/auth/token", json={"username": self.username, "password": self.password}
            )
            r.raise_for_status()
            self._token = str(r.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return httpx.request(method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api("GET", f"/dags/{dag_id}").status_code == 200:
                return
            time.sleep(1)
        raise TimeoutError(f"{dag_id} was not parsed within {timeout} s")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
            if state in ("success", "failed"):
                return str(state)
            time.sleep(2)
        raise TimeoutError(f"run {run_id} still {state} after {timeout} s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        data = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
        return {ti["task_id"]: ti["state"] for ti in data["task_instances"]}


@contextmanager
def airflow_standalone(home: Path, extra_env: dict[str, str]) -> Iterator[AirflowServer]:
    """Start ``airflow standalone`` in ``home``; stop it (and its children) afterwards."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin-test-pw"}))
    with temp_database("llmtally_airflow") as meta_db:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{meta_db}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            **extra_env,
        }
        env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", None)
        log = open(home / "standalone.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = AirflowServer(f"http://127.0.0.1:{port}", home, proc, env)
        try:

            def alive() -> None:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"airflow standalone exited: {(home / 'standalone.log').read_text()[-3000:]}"
                    )

            wait_healthy(server.base_url, alive, 180, "airflow standalone")
            yield server
        finally:
            import signal

            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
