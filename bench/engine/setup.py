"""The benchmark's installation: a throw-away database, a Redis db, the simulator, worker and beat processes."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import redis
from sqlalchemy import Engine

from teckochecker.db import make_engine
from teckochecker.schema import upgrade_to_head
from teckochecker.simulator import SimulatorControl
from teckochecker.vault import generate_key

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = str(REPO_ROOT / "cli.py")
BULK_BATCHES = 10_000
KEBOOLA_TOKEN = "4242-bench-engine-kbc-token-abcdef"
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def batch_id(index: int) -> str:
    return f"batch_bench_{index:06d}"


def openai_key(number: int) -> str:
    """The OpenAI key of the `number`-th key (0-based); each key sees only its own batches in the simulator."""
    return f"sk-bench-engine-key{number:03d}-0123456789abcdef"


def key_of_job(job: int, keys: int) -> int:
    """Jobs go round the keys: job 1 on key 0, job 2 on key 1, …"""
    return (job - 1) % keys


def batches_of_job(job: int, per_job: int) -> range:
    """The indices (for `batch_id`) of the batches job `job` (1-based) watches."""
    return range((job - 1) * per_job + 1, job * per_job + 1)


class Installation:
    """What one run sets up, and the processes it starts; `cleanup` takes all of it down again."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-engine-"))
        self.processes: dict[str, subprocess.Popen] = {}
        self.worker_names: list[str] = []
        self.database_name = f"bench_engine_{uuid.uuid4().hex[:10]}"
        base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
        self.database_url = f"{base}/{self.database_name}"
        self.redis_url = f"{REDIS_BASE}/{args.redis_db}"
        self.redis = redis.Redis.from_url(self.redis_url)
        self.port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.port}"
        self.secret_key = generate_key()
        self.engine: Engine | None = None
        self.database_created = False
        self._local = threading.local()

    # -- processes ----------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def environment(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "CELERY"))},
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": self.secret_key,
            "REDIS_URL": self.redis_url,
            "MIN_POLL_INTERVAL": "1",
            "OPENAI_BASE_URL": f"{self.sim_url}/v1",
            "ALLOW_INSECURE_ENDPOINTS": "true",
            "LOG_LEVEL": self.args.log_level,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO_ROOT),
            **(
                {"OPENAI_MAX_REQUESTS_PER_MINUTE": str(self.args.max_requests_per_minute)}
                if self.args.max_requests_per_minute
                else {}
            ),
        }

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            cwd=self.workdir,  # no stray .env is read
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the bench only; the bench stops them in order
        )
        self.processes[name] = process
        return process

    def stop(self, name: str, timeout: float = 20) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def wait_for_log(self, name: str, marker: str, timeout: float = 60) -> None:
        path = self.workdir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in path.read_text(errors="replace"):
                return
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s:\n{path.read_text(errors='replace')[-3000:]}")

    def cleanup(self) -> None:
        # Beat first (no new work), then the workers, the simulator last (workers never see it vanish).
        order = sorted(self.processes, key=lambda name: (name != "beat", name == "simulator"))
        for name in order:
            self.stop(name)
        try:
            self.redis.flushdb()
            self.redis.close()
        except redis.RedisError as exc:
            print(f"warning: could not flush Redis db {self.args.redis_db}: {exc}", file=sys.stderr)
        if self.engine is not None:
            self.engine.dispose()
        if self.database_created:
            try:
                with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
                    connection.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            except psycopg.Error as exc:
                print(f"warning: could not drop database {self.database_name}: {exc}", file=sys.stderr)
        if not self.args.keep_logs:
            for path in self.workdir.glob("*"):
                path.unlink()
            self.workdir.rmdir()
        else:
            print(f"logs kept in {self.workdir}")

    # -- stores, simulator and engine -----------------------------------------------------------------

    def setup_stores(self) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database_name}"')
        self.database_created = True
        upgrade_to_head(self.database_url)
        self.engine = make_engine(self.database_url)
        self.redis.flushdb()

    def control(self) -> SimulatorControl:
        """The simulator's control client, one per thread (each keeps its own connection)."""
        control = getattr(self._local, "control", None)
        if control is None:
            control = self._local.control = SimulatorControl(self.sim_url)
        return control

    def start_simulator(self) -> None:
        argv = [sys.executable, CLI, "simulate", f"--port={self.port}", f"--latency-ms={self.args.latency_ms}"]
        keys = [f"--openai-key={openai_key(number)}" for number in range(self.args.keys)]
        self.start("simulator", [*argv, *keys, f"--keboola-token={KEBOOLA_TOKEN}"])
        self.wait_for_log("simulator", "Press Ctrl-C", timeout=30)
        self.control().configure(job_duration=1)

    def create_batches(self) -> None:
        """The watched batches (jobs × batches per job, each owned by its job's key), and --unwatched ones.

        By default the unwatched batches are older than the watched ones (a team's history, then its current
        work); with --scatter the watched ones are spread evenly among them, the layout sweeps cannot serve.
        """
        args = self.args
        started = time.monotonic()
        # validating, then in_progress after 1 s, where it stays until flipped.
        script = [{"status": "validating", "at": 0}, {"status": "in_progress", "at": 1}]
        watched = [
            {"id": batch_id(index), "script": script, "owner_key": openai_key(key_of_job(job, args.keys))}
            for job in range(1, args.jobs + 1)
            for index in batches_of_job(job, args.batches_per_job)
        ]
        unwatched = [
            {"id": f"batch_other_{n:07d}", "duration": 0, "owner_key": openai_key(n % args.keys)}
            for n in range(args.unwatched)
        ]
        if args.scatter and watched:
            every = max(1, len(unwatched) // len(watched))
            order = []
            for position, batch in enumerate(watched):
                order += [*unwatched[position * every : (position + 1) * every], batch]
            order += unwatched[len(watched) * every :]
        else:
            order = unwatched + watched
        for start in range(0, len(order), BULK_BATCHES):
            self.control().create_batches(order[start : start + BULK_BATCHES])
        self.log(
            f"created {len(watched)} watched and {len(unwatched)} unwatched batches "
            f"({'scattered' if args.scatter else 'watched newest'}) in {time.monotonic() - started:.1f}s"
        )

    def worker_argv(self, name: str, app: str, queue: str | None) -> list[str]:
        args = self.args
        if app == "worker" and args.pool == "threads":
            return [sys.executable, CLI, "worker", f"--concurrency={args.concurrency}", f"--hostname={name}@%h"]
        argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-P", args.pool, "-c", str(args.concurrency)]
        argv += [f"--hostname={name}@%h", f"--loglevel={args.log_level}"]
        if queue:
            argv += ["-Q", queue]
        return argv

    def start_engine(self) -> None:
        self.worker_names = [f"w{i}" for i in range(1, self.args.workers + 1)]
        for name in self.worker_names:
            self.start(name, self.worker_argv(name, "worker", None))
        for name in self.worker_names:
            self.wait_for_log(name, " ready.")
        self.start("beat", [sys.executable, CLI, "beat"])
        self.wait_for_log("beat", "beat: Starting")

    def worker_log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def settings_environment(self) -> dict[str, str]:
        """What this process needs in its own environment to use the installation's broker and database."""
        return {k: v for k, v in self.environment().items() if k in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY")}
