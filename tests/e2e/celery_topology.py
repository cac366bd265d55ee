"""docker-compose.yaml's Airflow topology as plain processes on this machine: CeleryExecutor with the
machine's Redis (broker) and PostgreSQL (metadata, Celery results, aggregates).

==========================  ===============================================================
compose service             process here
==========================  ===============================================================
``airflow-init``            ``airflow db migrate`` (llmtally's migrations run at the first load)
``airflow-apiserver``       ``airflow api-server``
``airflow-scheduler``       ``airflow scheduler``
``airflow-dag-processor``   ``airflow dag-processor``
``airflow-worker``          ``airflow celery worker --queues default``
``airflow-worker-gpu``      ``airflow celery worker --queues gpu --concurrency 1`` (no GPU here:
                            the recount runs on its CPU engines, as it does on a GPU-less worker)
==========================  ===============================================================

``airflow-triggerer`` is left out: no task here defers.  Each worker records its own host name in
its task instances (:func:`process_name` as Airflow's ``hostname_callable``), so a test can tell
where a task ran although both workers share this machine.  The Celery keys live under a prefix of
their own in a Redis database of their own, so concurrent test runs never share a queue.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.e2e.airflow_server import AirflowServer, free_port, temp_database, wait_healthy
from tests.support import REPO_ROOT

REDIS = "redis://127.0.0.1:6379"


def process_name() -> str:
    """The host name a process records (``LLMTALLY_TEST_HOSTNAME``, else this machine's)."""
    import socket

    return os.environ.get("LLMTALLY_TEST_HOSTNAME") or socket.getfqdn()


class CeleryTopology:
    """The running processes, and the REST handle on the api-server."""

    def __init__(self, server: AirflowServer, home: Path, env: dict[str, str]) -> None:
        self.server = server
        self.home = home
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], **extra_env: str) -> None:
        """Start ``airflow <args>`` as the compose service ``name``."""
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it until stop()
        env = {**self.env, "LLMTALLY_TEST_HOSTNAME": name, **extra_env}
        self.procs[name] = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), *args],
            env=env, cwd=str(self.home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def stop(self, name: str) -> None:
        """Stop a service (SIGTERM to its process group, SIGKILL after 30 s)."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.home / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def wait_for_workers(self, names: list[str], timeout: float = 180) -> None:
        """Until each named worker answers a Celery ping."""
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            self.check_alive()
            out = subprocess.run(
                [str(Path(sys.executable).with_name("celery")), "--app",
                 "airflow.providers.celery.executors.celery_executor.app", "inspect", "ping", "--timeout", "3"],
                env=self.env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            pending = {n for n in pending if f"celery@{n}" not in out.stdout}
            if pending and time.monotonic() > deadline:
                raise TimeoutError(
                    f"workers {sorted(pending)} did not answer in {timeout} s: {out.stdout[-500:]}"
                )
            if pending:
                time.sleep(2)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@contextmanager
def celery_topology(home: Path, extra_env: dict[str, str]) -> Iterator[CeleryTopology]:
    """Start the topology (without workers: start them with :meth:`CeleryTopology.start`); stop it all
    at the end."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin-test-pw"}))
    with ExitStack() as stack:
        meta_db = stack.enter_context(temp_database("llmtally_celery"))
        meta = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{meta_db}"
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e.celery_topology.process_name",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
            "AIRFLOW__CELERY__BROKER_URL": f"{REDIS}/{secrets.randbelow(15) + 1}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:5432/{meta_db}",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"llmtally-test-{secrets.token_hex(4)}-",
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "llmtally.jobs.celery.CELERY_CONFIG",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            **extra_env,
        }
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "LLMTALLY_PRELOAD_MODELS"):
            env.pop(key, None)
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run(
            [airflow, "db", "migrate"], env=env, cwd=home, check=True, capture_output=True, timeout=300
        )
        proc_env = dict(env)
        server = AirflowServer(f"http://127.0.0.1:{port}", home, None, proc_env)
        topology = CeleryTopology(server, home, proc_env)
        stack.callback(topology.stop_all)
        topology.start("airflow-apiserver", ["api-server"])
        topology.start("airflow-scheduler", ["scheduler"])
        topology.start("airflow-dag-processor", ["dag-processor"])
        wait_healthy(server.base_url, topology.check_alive, 240, "the api-server and scheduler")
        yield topology
