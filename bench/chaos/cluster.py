"""One installation under test: its own Redis and PostgreSQL, the simulator, the API, workers and beats.

Every process is started from the repository's CLI as a user would start it, in its own session, so a
SIGKILL reaches exactly the process (group) it is aimed at. Processes can be started with a skewed clock
(libfaketime), and killed and restarted by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.chaos.servers import PostgresServer, RedisServer
from bench.engine.setup import CLI, REPO_ROOT, free_port
from teckochecker.schema import upgrade_to_head
from teckochecker.simulator import SimulatorControl
from teckochecker.vault import generate_key

OPENAI_KEY = "sk-chaos-0123456789abcdef0123"
KEBOOLA_TOKEN = "4242-chaos-kbc-token-abcdef012345"
API_TOKEN = "chaos-api-token-0123456789abcdef"
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
COMPONENT = "kds-team.app-custom-python"


def skewed_clock(offset_seconds: int) -> dict[str, str]:
    """The environment that runs a process with its wall clock `offset_seconds` off (monotonic time untouched)."""
    if not LIBFAKETIME.exists():
        raise RuntimeError(f"{LIBFAKETIME} is missing: install Debian's faketime package")
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{offset_seconds:+d}s", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@dataclass
class Role:
    """How to start one named process again after it was killed."""

    argv: list[str]
    extra_env: dict[str, str]


def session_members(session_id: int) -> list[int]:
    """The pids of every process in the session (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command's closing parenthesis: state, ppid, pgrp, session, …
        if int(fields[3]) == session_id:
            members.append(int(stat.parent.name))
    return members


class Cluster:
    """The installation. `start()` brings everything up; `close()` takes everything down, whatever happened."""

    def __init__(
        self, workdir: Path, *, append_only: bool = False, retry_delay: int = 1, embedded: bool = False
    ) -> None:
        self.workdir = workdir
        self.embedded = embedded
        # PostgreSQL runs as the postgres user, which must reach its folder inside this one.
        workdir.chmod(0o755)
        self.redis_server = RedisServer(workdir / "redis", append_only=append_only)
        self.postgres = PostgresServer(workdir / "postgres")
        self.sim_port = free_port()
        self.api_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.secret_key = generate_key()
        self.retry_delay = retry_delay
        self.database_url = ""
        self.processes: dict[str, subprocess.Popen] = {}
        self.roles: dict[str, Role] = {}
        self._control: SimulatorControl | None = None
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {API_TOKEN}"

    # -- set-up -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """PostgreSQL, Redis, the simulator and the API; or, embedded, the simulator and `teckochecker start`
        (SQLite and the embedded broker in the work folder, the API, a worker and beat under one supervisor)."""
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        if not self.embedded:
            self.redis_server.start()
            self.postgres.start()
            self.database_url = self.postgres.create_database("teckochecker")
            upgrade_to_head(self.database_url)
        self.launch("simulator", [CLI, "simulate", f"--port={self.sim_port}", f"--openai-key={OPENAI_KEY}",
                                  f"--keboola-token={KEBOOLA_TOKEN}"])  # fmt: skip
        self.wait_until(lambda: self._answers(self.sim_url + "/_sim/config"), 30, "the simulator")
        if self.embedded:
            self.launch("start", [CLI, "start", "--host=127.0.0.1", f"--port={self.api_port}"])
        else:
            self.launch("api", [CLI, "api", "--host=127.0.0.1", f"--port={self.api_port}", "--workers=2"])
        self.wait_for_api()

    def wait_for_api(self) -> None:
        self.wait_until(lambda: self._answers(self.api_url + "/api/health"), 90, "the API")

    def environment(self) -> dict[str, str]:
        stores = {} if self.embedded else {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_server.url}
        return {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("PYTEST", "CELERY", "FAKETIME")) and k not in ("DATABASE_URL", "REDIS_URL")
            },
            **stores,
            "SECRET_KEY": self.secret_key,
            "API_TOKEN": API_TOKEN,
            "MIN_POLL_INTERVAL": "1",
            "RETRY_DELAY": str(self.retry_delay),
            "OPENAI_BASE_URL": f"{self.sim_url}/v1",
            "ALLOW_INSECURE_ENDPOINTS": "true",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO_ROOT),
        }

    @property
    def control(self) -> SimulatorControl:
        if self._control is None:
            self._control = SimulatorControl(self.sim_url)
        return self._control

    # -- processes ----------------------------------------------------------------------------------------

    def launch(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        self.roles[name] = Role(argv, extra_env or {})
        return self._spawn(name)

    def _spawn(self, name: str) -> subprocess.Popen:
        role = self.roles[name]
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *role.argv],
            cwd=self.workdir,
            env={**self.environment(), **role.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = process
        return process

    def start_worker(self, name: str, *, concurrency: int = 16, clock_offset: int = 0) -> None:
        argv = [CLI, "worker", f"--concurrency={concurrency}", f"--hostname={name}@%h"]
        self.launch(name, argv, skewed_clock(clock_offset) if clock_offset else None)

    def start_beat(self, name: str, *, clock_offset: int = 0) -> None:
        self.launch(name, [CLI, "beat"], skewed_clock(clock_offset) if clock_offset else None)

    def engine_processes(self) -> list[str]:
        """The workers and beats: the processes a kill storm picks from."""
        return [name for name in self.processes if name not in ("simulator", "api", "start")]

    def kill(self, name: str) -> None:
        """SIGKILL the process and everything it started, as an OOM kill of its container would.

        Each process leads its own session; `teckochecker start` puts its children in process groups of
        their own, so the whole session is killed, not one group.
        """
        process = self.processes[name]
        for pid in [process.pid, *session_members(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)

    def restart(self, name: str) -> None:
        self._spawn(name)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.api.close()
        if self._control is not None:
            self._control.close()
        self.redis_server.stop()
        self.postgres.stop()

    def log_tail(self, name: str, characters: int = 4000) -> str:
        return (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-characters:]

    # -- the scene: secrets and jobs through the REST API ------------------------------------------------

    def api_call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.api.request(method, self.api_url + path, **kwargs)

    def add_secrets(self) -> None:
        self.control.add_api_key(OPENAI_KEY)
        self.control.add_token(KEBOOLA_TOKEN)
        for name, kind, value in (("openai", "openai", OPENAI_KEY), ("keboola", "keboola", KEBOOLA_TOKEN)):
            response = self.api_call("POST", "/api/admin/secrets", json={"name": name, "type": kind, "value": value})
            response.raise_for_status()

    def create_job(self, batch_ids: list[str], configuration: str, interval: int) -> int:
        body = {
            "name": f"chaos {configuration}",
            "batch_ids": batch_ids,
            "openai_secret": "openai",
            "keboola_secret": "keboola",
            "keboola_stack_url": self.sim_url,
            "keboola_component_id": COMPONENT,
            "keboola_configuration_id": configuration,
            "poll_interval_seconds": interval,
        }
        response = self.api_call("POST", "/api/jobs", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"creating job {configuration}: {response.status_code} {response.text}")
        return int(response.json()["id"])

    # -- waiting ------------------------------------------------------------------------------------------

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return requests.get(url, timeout=2).status_code < 500
        except requests.RequestException:
            return False

    def wait_until(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- {name} ---\n{self.log_tail(name, 1500)}" for name in self.processes)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
