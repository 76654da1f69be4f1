"""End-to-end engine benchmark: N jobs, real worker and beat processes, the simulator, Redis, PostgreSQL.

Run by hand from the repository root (not a test):

    python bench/engine.py --jobs 10000 --interval 60 --latency-ms 100
    python bench/engine.py --jobs 10000 --interval 10 --concurrency 64 --pool threads
    python bench/engine.py --jobs 10000 --interval 10 --concurrency 4 --pool prefork

What it does, in order (every process it starts is its own session and is killed on exit, Ctrl-C or error):

1. creates a throw-away PostgreSQL database (bench_engine_<hex>) and migrates it; flushes a dedicated
   Redis db (--redis-db, default 12);
2. starts the simulator in its own process (`cli.py simulate --latency-ms L`), creates N long-running
   batches there (they stay `in_progress` until flipped);
3. measures Celery's own no-op task rate with the same broker, pool and concurrency (bench/noop_app.py,
   W workers, --noop-tasks messages; time from the first publish until a Redis counter reaches the count);
4. starts W worker processes and one beat, then bulk-inserts N jobs (one batch each) whose first checks
   are spread uniformly over the first interval, like jobs created over time;
5. runs K intervals, sampling every second: `polling_jobs.last_check_at` (distinct (job, check) pairs),
   the simulator's request counters, RSS and CPU of the processes;
6. flips every batch to `completed` and waits until every job has its Keboola job;
7. prints checks/s over the steady window (intervals 2..K), scheduling lag, missed checks, trigger
   latency, memory, CPU, the no-op rate and the ratio checks/s / no-op tasks/s.

Scheduling lag = last_check_at − planned slot. Job i's slots are offset_i + k × interval (the dispatcher
keeps jobs on that grid), so the slot of a check is the last grid point before it. last_check_at is
written after OpenAI answered, so the lag includes one simulator round trip (--latency-ms).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import func, insert, select, text  # noqa: E402

from teckochecker.db import make_engine  # noqa: E402
from teckochecker.models import JobBatch, PollingJob, Secret  # noqa: E402
from teckochecker.schema import upgrade_to_head  # noqa: E402
from teckochecker.simulator import SimulatorControl  # noqa: E402
from teckochecker.vault import Vault, generate_key  # noqa: E402

OPENAI_KEY = "sk-bench-engine-0123456789abcdef"
KEBOOLA_TOKEN = "4242-bench-engine-kbc-token-abcdef"
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
CHECK_ROUTE = "GET /v1/batches/{batch_id}"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Interrupted(Exception):
    pass


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


# ---------------------------------------------------------------------------------------------------
# /proc helpers (Linux): memory and CPU of a process and its descendants.


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
    except OSError:
        pass
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def rss_mb(pid: int) -> float:
    total = 0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """utime + stime of the process and (by default) its live descendants."""
    total = 0
    for member in _tree(pid) if descendants else [pid]:
        try:
            with open(f"/proc/{member}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def cpu_by_command(names: tuple[str, ...]) -> float:
    """CPU seconds of every process whose command name is one of `names` (postgres, redis-server)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                raw = handle.read()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        if any(comm.startswith(name) for name in names):
            fields = raw.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_busy() -> tuple[float, float]:
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-engine-"))
        self.processes: dict[str, subprocess.Popen] = {}
        self.database_name = f"bench_engine_{uuid.uuid4().hex[:10]}"
        base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
        self.database_url = f"{base}/{self.database_name}"
        self.redis_url = f"{REDIS_BASE}/{args.redis_db}"
        self.redis = redis.Redis.from_url(self.redis_url)
        self.port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.port}"
        self.secret_key = generate_key()
        self.engine = None
        self.database_created = False
        self.results: dict[str, Any] = {"args": vars(args)}
        self._local = threading.local()

    # -- lifecycle ----------------------------------------------------------------------------------

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

    # -- setup ----------------------------------------------------------------------------------------

    def setup_stores(self) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database_name}"')
        self.database_created = True
        upgrade_to_head(self.database_url)
        self.engine = make_engine(self.database_url)
        self.redis.flushdb()

    def control(self) -> SimulatorControl:
        control = getattr(self._local, "control", None)
        if control is None:
            control = self._local.control = SimulatorControl(self.sim_url)
        return control

    def start_simulator(self) -> None:
        self.start(
            "simulator",
            [
                sys.executable,
                str(REPO_ROOT / "cli.py"),
                "simulate",
                f"--port={self.port}",
                f"--latency-ms={self.args.latency_ms}",
                f"--openai-key={OPENAI_KEY}",
                f"--keboola-token={KEBOOLA_TOKEN}",
            ],
        )
        self.wait_for_log("simulator", "Press Ctrl-C", timeout=30)
        self.control().configure(job_duration=1)

    def create_batches(self) -> None:
        started = time.monotonic()
        # validating, then in_progress after 1 s, where it stays until flipped.
        script = [{"status": "validating", "at": 0}, {"status": "in_progress", "at": 1}]

        def create(index: int) -> None:
            self.control().create_batch(batch_id=self.batch_id(index), script=script)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(1, self.args.jobs + 1)))
        self.log(f"created {self.args.jobs} batches in the simulator in {time.monotonic() - started:.1f}s")

    @staticmethod
    def batch_id(index: int) -> str:
        return f"batch_bench_{index:06d}"

    # -- no-op baseline -------------------------------------------------------------------------------

    def worker_argv(self, name: str, app: str, queue: str | None) -> list[str]:
        args = self.args
        if app == "worker" and args.pool == "threads":
            return [
                sys.executable,
                str(REPO_ROOT / "cli.py"),
                "worker",
                f"--concurrency={args.concurrency}",
                f"--hostname={name}@%h",
            ]
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-P",
            args.pool,
            "-c",
            str(args.concurrency),
            f"--hostname={name}@%h",
            f"--loglevel={args.log_level}",
        ]
        if queue:
            argv += ["-Q", queue]
        return argv

    def noop_baseline(self) -> None:
        """Celery's own rate on this machine: --noop-tasks no-op messages are queued first, then W workers
        with the engine's pool and concurrency drain them; the rate is counted from the first to the last
        task done (worker start-up excluded), as the engine's workers drain what beat queued."""
        from bench import noop_app

        count = self.args.noop_tasks
        app = noop_app.app
        self.redis.delete(noop_app.COUNTER_KEY)
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                app.send_task(noop_app.TASK, producer=producer)
        published = time.perf_counter() - started
        names = [f"noop{i}" for i in range(1, self.args.workers + 1)]
        for name in names:
            self.start(name, self.worker_argv(name, "bench.noop_app", noop_app.QUEUE))
        deadline = time.monotonic() + 300
        first = None
        while True:
            done = int(self.redis.get(noop_app.COUNTER_KEY) or 0)
            if done and first is None:
                first = (time.perf_counter(), done)
            if done >= count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done}/{count} no-op tasks ran within 300 s")
            for name in names:
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited: {(self.workdir / (name + '.log')).read_text()[-2000:]}")
            time.sleep(0.005)
        elapsed = time.perf_counter() - first[0]
        rate = (count - first[1]) / elapsed
        self.results["noop"] = {"tasks": count, "seconds": elapsed, "publish_seconds": published, "rate": rate}
        self.log(
            f"no-op baseline: {count} queued in {published:.1f}s ({count / published:.0f}/s from the bench); "
            f"drained at {rate:.0f} tasks/s ({elapsed:.2f}s)"
        )
        for name in names:
            self.stop(name)
        app.close()
        self.redis.flushdb()

    # -- engine ---------------------------------------------------------------------------------------

    def start_engine(self) -> None:
        self.worker_names = [f"w{i}" for i in range(1, self.args.workers + 1)]
        for name in self.worker_names:
            self.start(name, self.worker_argv(name, "worker", None))
        for name in self.worker_names:
            self.wait_for_log(name, " ready.")
        self.start("beat", [sys.executable, str(REPO_ROOT / "cli.py"), "beat"])
        self.wait_for_log("beat", "beat: Starting")

    def insert_jobs(self) -> None:
        """Bulk-insert N active jobs with one batch each; first checks spread over the first interval."""
        args = self.args
        vault = Vault(self.secret_key)
        interval = args.interval
        now = datetime.now(UTC)
        self.origin = now + timedelta(seconds=args.lead)
        rng = random.Random(args.seed)
        # Jobs "created over time": offsets uniformly distributed over [0, interval).
        self.offsets = {i: rng.uniform(0, interval) for i in range(1, args.jobs + 1)}
        started = time.monotonic()
        with self.engine.begin() as connection:
            connection.execute(
                insert(Secret),
                [
                    {
                        "id": 1,
                        "name": "openai",
                        "type": "openai",
                        "encrypted_value": vault.encrypt(OPENAI_KEY),
                        "created_at": now,
                        "updated_at": now,
                    },
                    {
                        "id": 2,
                        "name": "keboola",
                        "type": "keboola",
                        "encrypted_value": vault.encrypt(KEBOOLA_TOKEN),
                        "created_at": now,
                        "updated_at": now,
                    },
                ],
            )
            connection.execute(
                insert(PollingJob),
                [
                    {
                        "id": i,
                        "name": f"bench job {i}",
                        "openai_secret_id": 1,
                        "keboola_secret_id": 2,
                        "keboola_stack_url": self.sim_url,
                        "keboola_component_id": "kds-team.app-custom-python",
                        "keboola_configuration_id": str(i),
                        "poll_interval_seconds": interval,
                        "status": "active",
                        "next_check_at": self.origin + timedelta(seconds=self.offsets[i]),
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(1, args.jobs + 1)
                ],
            )
            connection.execute(
                insert(JobBatch),
                [
                    {
                        "id": i,
                        "job_id": i,
                        "batch_id": self.batch_id(i),
                        "status": "pending",
                        "request_total": 0,
                        "request_completed": 0,
                        "request_failed": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(1, args.jobs + 1)
                ],
            )
            for table in ("secrets", "polling_jobs", "job_batches"):
                connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
        with self.engine.begin() as connection:
            connection.execute(text("ANALYZE polling_jobs"))
            connection.execute(text("ANALYZE job_batches"))
        took = time.monotonic() - started
        self.results["insert_seconds"] = took
        self.log(
            f"inserted {args.jobs} jobs + {args.jobs} batches in {took:.2f}s; first checks spread uniformly over "
            f"[{self.origin:%H:%M:%S}, +{interval}s) (jobs created over time), "
            f"then every {interval}s on each job's grid"
        )
        if datetime.now(UTC) > self.origin:
            self.log("warning: the insert took longer than --lead; the first checks start late")

    # -- measuring ------------------------------------------------------------------------------------

    def engine_pids(self) -> dict[str, int]:
        pids = {name: self.processes[name].pid for name in self.worker_names}
        pids["beat"] = self.processes["beat"].pid
        pids["simulator"] = self.processes["simulator"].pid
        pids["bench"] = os.getpid()
        return pids

    def cpu_snapshot(self) -> dict[str, float]:
        snapshot = {name: cpu_seconds(pid, descendants=name != "bench") for name, pid in self.engine_pids().items()}
        snapshot["postgres"] = cpu_by_command(("postgres",))
        snapshot["redis-server"] = cpu_by_command(("redis-server",))
        busy, total = machine_busy()
        snapshot["_busy"], snapshot["_total"] = busy, total
        snapshot["_wall"] = time.monotonic()
        return snapshot

    def checks_counter(self) -> int:
        return int(self.control().counters()["requests"].get(CHECK_ROUTE, 0))

    def run(self) -> None:
        args = self.args
        interval = args.interval
        origin_ts = self.origin.timestamp()
        end_ts = origin_ts + args.duration_intervals * interval
        steady_from = origin_ts + (interval if args.duration_intervals >= 2 else 0)
        self.checks: set[tuple[int, float]] = set()
        self.rss: dict[str, list[float]] = defaultdict(list)
        counters: dict[str, tuple[float, int]] = {}
        cpu: dict[str, dict[str, float]] = {}
        newest = 0.0
        query = text("SELECT id, last_check_at FROM polling_jobs WHERE last_check_at >= :since")
        self.log(
            f"running {args.duration_intervals} intervals of {interval}s "
            f"until {datetime.fromtimestamp(end_ts):%H:%M:%S}; "
            f"steady window from +{steady_from - origin_ts:.0f}s"
        )
        next_report = time.time() + max(10, interval)
        boundaries = [origin_ts + k * interval for k in range(args.duration_intervals + 1)]
        self.timeline: list[tuple[float, int]] = []
        while True:
            now = time.time()
            if boundaries and now >= boundaries[0]:
                boundaries.pop(0)
                self.timeline.append((now, self.checks_counter()))
            if "start" not in counters and now >= steady_from:
                counters["start"] = (now, self.checks_counter())
                cpu["start"] = self.cpu_snapshot()
            if now >= end_ts:
                counters["end"] = (now, self.checks_counter())
                self.timeline.append(counters["end"])
                cpu["end"] = self.cpu_snapshot()
                break
            since = datetime.fromtimestamp(max(0.0, newest - 20), UTC)
            with self.engine.connect() as connection:
                for job_id, checked in connection.execute(query, {"since": since}):
                    stamp = checked.timestamp()
                    self.checks.add((job_id, stamp))
                    newest = max(newest, stamp)
            for name in [*self.worker_names, "beat"]:
                self.rss[name].append(rss_mb(self.processes[name].pid))
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}")
            if now >= next_report:
                recent = sum(1 for _, stamp in self.checks if stamp >= now - 10)
                self.log(f"  {len(self.checks)} checks seen; {recent / 10:.0f} checks/s over the last 10 s")
                next_report = now + max(10, interval)
            time.sleep(max(0.0, min(args.sample_every - (time.time() - now), end_ts - time.time())))
        self.window = (counters["start"], counters["end"])
        self.cpu_window = (cpu["start"], cpu["end"])
        self.end_ts = end_ts

    def flip_and_wait(self) -> None:
        args = self.args
        self.flipped: dict[int, float] = {}
        started = time.time()

        def flip(index: int) -> None:
            self.control().set_batch_status(self.batch_id(index), "completed")
            self.flipped[index] = time.time()

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(flip, range(1, args.jobs + 1)))
        self.flip_started = started
        self.log(f"flipped {args.jobs} batches to completed in {time.time() - started:.1f}s; waiting for Keboola jobs")
        timeout = 2 * args.interval + args.trigger_timeout
        deadline = time.monotonic() + timeout
        count = select(func.count()).select_from(PollingJob).where(PollingJob.keboola_job_id.is_not(None))
        while True:
            with self.engine.connect() as connection:
                done = connection.execute(count).scalar_one()
            if done >= args.jobs:
                break
            if time.monotonic() > deadline:
                self.log(f"warning: only {done}/{args.jobs} jobs have a Keboola job after {timeout:.0f}s")
                break
            time.sleep(1)
        self.results["all_triggered_after_seconds"] = time.time() - started
        self.results["keboola_jobs_triggered"] = done
        self.log(f"{done}/{args.jobs} jobs have their Keboola job, {time.time() - started:.1f}s after the flip began")
        self.triggered = done

    # -- report ---------------------------------------------------------------------------------------

    def analyse(self) -> None:
        args = self.args
        interval = args.interval
        origin_ts = self.origin.timestamp()
        limit = self.flip_started
        by_job: dict[int, list[float]] = defaultdict(list)
        for job_id, stamp in self.checks:
            if stamp < limit:
                by_job[job_id].append(stamp)
        lags: list[float] = []
        early = 0
        gaps_missed = 0
        slots_missed = 0
        jobs_missed = set()
        for job_id in range(1, args.jobs + 1):
            first = origin_ts + self.offsets[job_id]
            stamps = sorted(by_job.get(job_id, []))
            for stamp in stamps:
                k = math.floor((stamp - first) / interval)
                if k < 0:
                    early += 1
                    k = 0
                lags.append(stamp - (first + k * interval))
            # Gaps, counting a virtual check one interval before the first slot, and the end of the run.
            points = [first - interval, *stamps]
            tail = self.end_ts - (points[-1])
            for previous, current in itertools.pairwise(points):
                gap = current - previous
                if gap > 1.5 * interval:
                    gaps_missed += 1
                    slots_missed += round(gap / interval) - 1
                    jobs_missed.add(job_id)
            if tail > 1.5 * interval:
                gaps_missed += 1
                slots_missed += round(tail / interval) - 1
                jobs_missed.add(job_id)

        (t0, c0), (t1, c1) = self.window
        window_seconds = t1 - t0
        checks_per_second = (c1 - c0) / window_seconds if window_seconds > 0 else float("nan")
        db_checks = sum(1 for _, stamp in self.checks if t0 <= stamp < t1)
        noop = self.results["noop"]["rate"]

        keboola = self.control().keboola_jobs()
        trigger_lat = []
        for job in keboola:
            config = int(job["body"]["config"])
            if config in self.flipped:
                trigger_lat.append(parse_time(job["created_time"]) - self.flipped[config])
        with self.engine.connect() as connection:
            attempted = connection.execute(
                select(PollingJob.id, PollingJob.trigger_attempted_at).where(
                    PollingJob.trigger_attempted_at.is_not(None)
                )
            ).all()
        attempt_lat = [
            stamp.timestamp() - self.flipped[job_id] for job_id, stamp in attempted if job_id in self.flipped
        ]

        # Check messages that waited in Redis past their expiry (= the job's interval) and were dropped unrun.
        expired = sum(
            (self.workdir / f"{name}.log")
            .read_text(errors="replace")
            .count("Discarding revoked task: teckochecker.check_job")
            for name in self.worker_names
        )
        self.results["check_messages_expired"] = expired
        cpu0, cpu1 = self.cpu_window
        wall = cpu1["_wall"] - cpu0["_wall"]
        cpu = {name: round(100 * (cpu1[name] - cpu0[name]) / wall, 1) for name in cpu0 if not name.startswith("_")}
        machine = 100 * (cpu1["_busy"] - cpu0["_busy"]) / (cpu1["_total"] - cpu0["_total"])
        # What the machine spent outside the benchmark's processes (other users' load: the main noise source).
        cpu["other processes"] = round(machine * (os.cpu_count() or 1) - sum(cpu.values()), 1)
        cpu["machine (% of all cores)"] = round(machine, 1)

        timeline = [
            round((c1_ - c0_) / (t1_ - t0_), 1)
            for (t0_, c0_), (t1_, c1_) in itertools.pairwise(self.timeline)
            if t1_ - t0_ > 1
        ]
        self.results.update(
            {
                "checks_per_second_by_interval": timeline,
                "required_checks_per_second": args.jobs / interval,
                "checks_per_second": checks_per_second,
                "checks_per_second_db": db_checks / window_seconds,
                "steady_window_seconds": window_seconds,
                "noop_tasks_per_second": noop,
                "ratio_checks_to_noop": checks_per_second / noop,
                "lag_seconds": {
                    "count": len(lags),
                    "p50": percentile(lags, 0.50),
                    "p95": percentile(lags, 0.95),
                    "p99": percentile(lags, 0.99),
                    "max": max(lags) if lags else float("nan"),
                    "checks_before_their_slot": early,
                },
                "missed": {"gaps_over_1_5_intervals": gaps_missed, "slots": slots_missed, "jobs": len(jobs_missed)},
                "trigger_latency_seconds": {
                    "keboola_jobs": len(keboola),
                    "p50": percentile(trigger_lat, 0.5),
                    "p99": percentile(trigger_lat, 0.99),
                    "max": max(trigger_lat) if trigger_lat else float("nan"),
                    "to_trigger_attempt_p50": percentile(attempt_lat, 0.5),
                    "to_trigger_attempt_p99": percentile(attempt_lat, 0.99),
                },
                "rss_mb": {
                    name: {"max": max(values), "last": values[-1]} for name, values in self.rss.items() if values
                },
                "cpu_percent_of_one_core": cpu,
            }
        )

    def report(self) -> None:
        r = self.results
        a = self.args
        lag, missed, trig = r["lag_seconds"], r["missed"], r["trigger_latency_seconds"]
        lines = [
            "",
            f"=== engine benchmark: {a.jobs} jobs, interval {a.interval}s, latency {a.latency_ms} ms, "
            f"{a.workers} worker(s) x {a.pool} -c {a.concurrency}, {a.duration_intervals} intervals ===",
            f"machine: {os.cpu_count()} cores; first checks spread uniformly over the first interval (seed {a.seed})",
            f"checks/s (simulator GET /v1/batches, steady window {r['steady_window_seconds']:.0f}s): "
            f"{r['checks_per_second']:.1f}  (required {r['required_checks_per_second']:.1f}; "
            f"from last_check_at {r['checks_per_second_db']:.1f})",
            "checks/s interval by interval: " + ", ".join(str(v) for v in r["checks_per_second_by_interval"]),
            f"no-op Celery tasks/s (same broker, pool, concurrency): {r['noop_tasks_per_second']:.0f}  -> "
            f"ratio checks/no-op = {r['ratio_checks_to_noop']:.2f}",
            f"scheduling lag (last_check_at - slot, {lag['count']} checks): "
            f"p50 {lag['p50']:.2f}s  p95 {lag['p95']:.2f}s  "
            f"p99 {lag['p99']:.2f}s  max {lag['max']:.2f}s",
            f"missed checks (gap > 1.5 intervals): {missed['gaps_over_1_5_intervals']} gaps, "
            f"{missed['slots']} slots, {missed['jobs']} jobs; check messages expired unrun (whole run): "
            f"{r['check_messages_expired']}",
            f"trigger latency (flip -> Keboola job created, 1 s resolution; {trig['keboola_jobs']} jobs): "
            f"p50 {trig['p50']:.1f}s  p99 {trig['p99']:.1f}s  max {trig['max']:.1f}s  "
            f"(flip -> trigger attempt: p50 {trig['to_trigger_attempt_p50']:.1f}s "
            f"p99 {trig['to_trigger_attempt_p99']:.1f}s)",
            "RSS MB (max/last): "
            + ", ".join(f"{name} {v['max']:.0f}/{v['last']:.0f}" for name, v in r["rss_mb"].items()),
            "CPU % of one core over the steady window: "
            + ", ".join(f"{name} {value}" for name, value in r["cpu_percent_of_one_core"].items()),
            f"{r['keboola_jobs_triggered']}/{a.jobs} jobs had their Keboola job "
            f"{r['all_triggered_after_seconds']:.0f}s "
            f"after the flip began; insert took {r['insert_seconds']:.2f}s",
        ]
        print("\n".join(lines), flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(r, indent=2, default=str))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=60, help="poll interval of every job, seconds")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulator answer delay")
    parser.add_argument("--concurrency", type=int, default=64, help="per worker (threads or processes)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--pool", choices=("threads", "prefork"), default="threads")
    parser.add_argument("--duration-intervals", type=int, default=3)
    parser.add_argument("--noop-tasks", type=int, default=5000)
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds between last_check_at samples")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds from the insert to the first slot")
    parser.add_argument("--trigger-timeout", type=float, default=120.0, help="extra wait for Keboola jobs")
    parser.add_argument(
        "--skip-trigger", action="store_true", help="end after the K intervals (capacity runs): no flip, no triggers"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of worker and beat (production default INFO)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (path printed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    bench = Bench(args)
    os.environ.update(
        {k: v for k, v in bench.environment().items() if k in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY")}
    )
    try:
        bench.log(
            f"database {bench.database_name}, Redis {bench.redis_url}, "
            f"simulator port {bench.port}, logs {bench.workdir}"
        )
        bench.setup_stores()
        bench.start_simulator()
        bench.create_batches()
        bench.noop_baseline()
        bench.start_engine()
        bench.insert_jobs()
        bench.run()
        if args.skip_trigger:
            bench.flip_started = time.time()
            bench.flipped = {}
            bench.results.update(all_triggered_after_seconds=float("nan"), keboola_jobs_triggered=0)
        else:
            bench.flip_and_wait()
        bench.analyse()
        bench.report()
        return 0
    except Interrupted as exc:
        print(f"interrupted ({exc}); cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
