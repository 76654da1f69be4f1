"""What the benchmark puts on the installation: the no-op baseline, N jobs, and the flip of every batch."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text

from bench.engine.setup import KEBOOLA_TOKEN, Installation, batch_id, batches_of_job, key_of_job, openai_key
from teckochecker.models import JobBatch, PollingJob, Secret
from teckochecker.vault import Vault

NOOP_TIMEOUT_SECONDS = 300


def noop_baseline(bench: Installation) -> dict[str, float]:
    """Celery's own rate on this machine: --noop-tasks no-op messages are queued first, then W workers
    with the engine's pool and concurrency drain them; the rate is counted from the first to the last
    task done (worker start-up excluded), as the engine's workers drain what beat queued."""
    from bench import noop_app  # reads REDIS_URL, which main() sets for this process

    count = bench.args.noop_tasks
    app = noop_app.app
    bench.redis.delete(noop_app.COUNTER_KEY)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(noop_app.TASK, producer=producer)
    published = time.perf_counter() - started
    names = [f"noop{i}" for i in range(1, bench.args.workers + 1)]
    for name in names:
        bench.start(name, bench.worker_argv(name, "bench.noop_app", noop_app.QUEUE))
    first_at, first_done = _wait_for_count(bench, noop_app.COUNTER_KEY, count, names)
    elapsed = time.perf_counter() - first_at
    rate = (count - first_done) / elapsed
    bench.log(
        f"no-op baseline: {count} queued in {published:.1f}s ({count / published:.0f}/s from the bench); "
        f"drained at {rate:.0f} tasks/s ({elapsed:.2f}s)"
    )
    for name in names:
        bench.stop(name)
    app.close()
    bench.redis.flushdb()
    return {"tasks": count, "seconds": elapsed, "publish_seconds": published, "rate": rate}


def _wait_for_count(bench: Installation, key: str, count: int, names: list[str]) -> tuple[float, int]:
    """Wait until the Redis counter `key` reaches `count`; returns when the first task was seen done, and
    how many were done then."""
    deadline = time.monotonic() + NOOP_TIMEOUT_SECONDS
    first = None
    while True:
        done = int(bench.redis.get(key) or 0)
        if done and first is None:
            first = (time.perf_counter(), done)
        if done >= count:
            return first
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done}/{count} no-op tasks ran within {NOOP_TIMEOUT_SECONDS} s")
        for name in names:
            if bench.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {bench.worker_log(name)[-2000:]}")
        time.sleep(0.005)


@dataclass(frozen=True)
class Schedule:
    """When each job's first check is due: origin + offsets[job id], then every interval."""

    origin: datetime
    offsets: dict[int, float]
    insert_seconds: float


def insert_jobs(bench: Installation) -> Schedule:
    """Bulk-insert N active jobs; first checks spread over the first interval (or, with --overdue, due up to
    an hour ago, as after an outage)."""
    args = bench.args
    now = datetime.now(UTC)
    origin = now + timedelta(seconds=args.lead)
    rng = random.Random(args.seed)
    # Jobs "created over time": offsets uniformly distributed over [0, interval), or overdue by up to an hour.
    span = (-3600.0, 0.0) if args.overdue else (0.0, float(args.interval))
    offsets = {i: rng.uniform(*span) for i in range(1, args.jobs + 1)}
    started = time.monotonic()
    assert bench.engine is not None
    with bench.engine.begin() as connection:
        connection.execute(insert(Secret), _secret_rows(Vault(bench.secret_key), args.keys, now))
        connection.execute(insert(PollingJob), _job_rows(bench, origin, offsets, now))
        connection.execute(insert(JobBatch), _batch_rows(args.jobs, args.batches_per_job, now))
        for table in ("secrets", "polling_jobs", "job_batches"):
            connection.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            )
    with bench.engine.begin() as connection:
        connection.execute(text("ANALYZE polling_jobs"))
        connection.execute(text("ANALYZE job_batches"))
    took = time.monotonic() - started
    when = (
        "overdue by up to an hour" if args.overdue else f"spread uniformly over [{origin:%H:%M:%S}, +{args.interval}s)"
    )
    bench.log(
        f"inserted {args.jobs} jobs x {args.batches_per_job} batches on {args.keys} key(s) in {took:.2f}s; "
        f"first checks {when}, then every {args.interval}s on each job's grid"
    )
    if datetime.now(UTC) > origin:
        bench.log("warning: the insert took longer than --lead; the first checks start late")
    return Schedule(origin, offsets, took)


def keboola_secret_id(keys: int) -> int:
    return keys + 1


def _secret_rows(vault: Vault, keys: int, now: datetime) -> list[dict[str, Any]]:
    secrets = [(number + 1, f"openai-{number}", "openai", openai_key(number)) for number in range(keys)]
    secrets.append((keboola_secret_id(keys), "keboola", "keboola", KEBOOLA_TOKEN))
    return [
        {"id": id_, "name": name, "type": kind, "encrypted_value": vault.encrypt(value), "created_at": now,
         "updated_at": now}
        for id_, name, kind, value in secrets
    ]  # fmt: skip


def _job_rows(bench: Installation, origin: datetime, offsets: dict[int, float], now: datetime) -> list[dict[str, Any]]:
    keys = bench.args.keys
    return [
        {
            "id": i,
            "name": f"bench job {i}",
            "openai_secret_id": key_of_job(i, keys) + 1,
            "keboola_secret_id": keboola_secret_id(keys),
            "keboola_stack_url": bench.sim_url,
            "keboola_component_id": "kds-team.app-custom-python",
            "keboola_configuration_id": str(i),
            "poll_interval_seconds": bench.args.interval,
            "status": "active",
            "next_check_at": origin + timedelta(seconds=offsets[i]),
            "created_at": now,
            "updated_at": now,
        }
        for i in range(1, bench.args.jobs + 1)
    ]


def _batch_rows(jobs: int, per_job: int, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "id": index,
            "job_id": job,
            "batch_id": batch_id(index),
            "status": "pending",
            "request_total": 0,
            "request_completed": 0,
            "request_failed": 0,
            "created_at": now,
            "updated_at": now,
        }
        for job in range(1, jobs + 1)
        for index in batches_of_job(job, per_job)
    ]


@dataclass(frozen=True)
class Flip:
    """When each batch was flipped to `completed`, and how many jobs then had their Keboola job."""

    started: float
    flipped: dict[int, float]
    triggered: int
    all_triggered_after_seconds: float


def flip_and_wait(bench: Installation) -> Flip:
    """Flip every batch to `completed`, then wait until every job has its Keboola job (or time runs out)."""
    args = bench.args
    flipped: dict[int, float] = {}
    started = time.time()

    def flip(job: int) -> None:
        for index in batches_of_job(job, args.batches_per_job):
            bench.control().set_batch_status(batch_id(index), "completed")
        flipped[job] = time.time()

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(flip, range(1, args.jobs + 1)))
    bench.log(f"flipped the batches of {args.jobs} jobs in {time.time() - started:.1f}s; waiting for Keboola jobs")
    timeout = 2 * args.interval + args.trigger_timeout
    deadline = time.monotonic() + timeout
    count = select(func.count()).select_from(PollingJob).where(PollingJob.keboola_job_id.is_not(None))
    assert bench.engine is not None
    while True:
        with bench.engine.connect() as connection:
            done = connection.execute(count).scalar_one()
        if done >= args.jobs:
            break
        if time.monotonic() > deadline:
            bench.log(f"warning: only {done}/{args.jobs} jobs have a Keboola job after {timeout:.0f}s")
            break
        time.sleep(1)
    after = time.time() - started
    bench.log(f"{done}/{args.jobs} jobs have their Keboola job, {after:.1f}s after the flip began")
    return Flip(started, flipped, done, after)
