"""Reaction time: from a batch finishing in the simulator to its Keboola job starting, with and without webhooks.

Run by hand from the repository root (not a test):

    python -m bench.reaction --jobs 10000 --finishing 1000 --interval 120 --latency-ms 100

For each mode (`webhooks`, then `polling`), on a fresh installation from bench/engine's setup (a throw-away
PostgreSQL database, a Redis db, the simulator, one beat and W workers):

1. creates N batches in the simulator; F of them (--finishing) finish together at one instant T, after every
   job has been checked at least once; the others stay `in_progress`;
2. inserts N jobs (one batch each, --interval), first checks spread over the first interval;
3. with webhooks: starts `teckochecker api` (2 gunicorn workers), stores a signing secret, and points the
   simulator's webhooks at the API (without: nothing, the jobs poll);
4. waits until the F jobs have their Keboola job, and reports, per job, the Keboola job's creation time in
   the simulator minus T (p50, p99 and max), and the same for the check that saw the batch ended (the
   job's `triggering` event) and, with webhooks, for the API's 2xx answer to each webhook; and, per job, the
   time from each of those stages to the next;
5. reports the CPU seconds each process (and PostgreSQL, Redis) used from T until the last Keboola job
   started: a burst on a small machine is bound by CPU, and this says whose.

T is exact up to the control API's round trip (a millisecond or two): each finishing batch is created with a
timeline whose terminal step is at T.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select

from bench.engine.load import insert_jobs
from bench.engine.sampling import cpu_snapshot
from bench.engine.setup import CLI, Installation, batch_id, free_port
from teckochecker.db import make_session_factory, session_scope
from teckochecker.models import JobEvent
from teckochecker.services.secrets import add_secret
from teckochecker.vault import Vault

MODES = ("webhooks", "polling")
# What is measured from the batch's end, in the order it happens.
STAGES = {
    "delivered": "the webhook's 2xx answer",
    "checked": "the check that saw it",
    "started": "the Keboola job's start",
}
# The same, per job, from one stage to the next: which step a burst waits in.
GAPS = {
    "delivered_to_checked": ("the webhook's 2xx answer", "the check that saw it"),
    "checked_to_started": ("the check that saw it", "the Keboola job's start"),
}
# Time to create the finishing batches, start the engine and insert the jobs before the first slot.
SETUP_BUDGET_SECONDS = 45.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reaction", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--finishing", type=int, default=1000, help="batches that finish at the same instant")
    parser.add_argument("--interval", type=int, default=120, help="poll interval of every job, seconds")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulator answer delay")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keys", type=int, default=1, help="OpenAI keys the jobs are spread over")
    parser.add_argument("--max-requests-per-minute", type=int, help="OPENAI_MAX_REQUESTS_PER_MINUTE")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: webhooks, polling")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--lead", type=float, default=5.0, help="seconds from the insert to the first slot")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for the Keboola jobs after T")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    # What the engine bench's set-up also reads: one batch per job, first checks spread over an interval.
    args.pool, args.batches_per_job, args.overdue = "threads", 1, False
    return args


def _create_batches(bench: Installation, finish_at: float) -> None:
    args = bench.args
    running = [{"status": "validating", "at": 0}, {"status": "in_progress", "at": 1}]

    def create(index: int) -> None:
        script = running
        if index <= args.finishing:
            script = [*running, {"status": "completed", "at": max(1.5, finish_at - time.time())}]
        bench.control().create_batch(batch_id=batch_id(index), script=script)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(1, args.jobs + 1)))


def _use_webhooks(bench: Installation) -> None:
    port = free_port()
    bench.start("api", [sys.executable, CLI, "api", "--port", str(port), "--workers", "2"])
    bench.wait_for_log("api", "Booting worker", timeout=60)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    assert bench.engine is not None
    with session_scope(make_session_factory(bench.engine)) as session:
        add_secret(session, Vault(bench.secret_key), name="openai-webhook", type="openai_webhook", value=secret)
    bench.control().configure_webhooks(f"http://127.0.0.1:{port}/api/webhooks/openai", secret)


def _reactions(bench: Installation, finish_at: float) -> dict[int, float]:
    """Per finishing job: seconds from T to its Keboola job, once all have one (or the timeout passed)."""
    args = bench.args
    wanted = {str(index) for index in range(1, args.finishing + 1)}
    deadline = finish_at + args.timeout
    while True:
        started = {job["body"]["config"]: job["created_unix"] for job in bench.control().keboola_jobs()}
        done = wanted & started.keys()
        if len(done) == len(wanted) or time.time() > deadline:
            break
        time.sleep(2)
    if len(done) < len(wanted):
        bench.log(f"warning: only {len(done)}/{len(wanted)} Keboola jobs after {args.timeout:.0f}s")
    # A job's configuration id is its number (bench.engine.load).
    return {int(config): started[config] - finish_at for config in done}


def _checked(bench: Installation, finish_at: float) -> dict[int, float]:
    """Per finishing job: seconds from T to the check that found its batch ended (its `triggering` event)."""
    assert bench.engine is not None
    query = select(JobEvent.job_id, JobEvent.created_at).where(
        JobEvent.kind == "triggering", JobEvent.job_id <= bench.args.finishing
    )
    with bench.engine.connect() as connection:
        return {job_id: moment.timestamp() - finish_at for job_id, moment in connection.execute(query)}


def _delivered(bench: Installation, finish_at: float) -> dict[int, float]:
    """Per finishing job: seconds from T to its webhook's first 2xx answer from the API (webhooks mode)."""
    job_of = {batch_id(index): index for index in range(1, bench.args.finishing + 1)}
    answered = {}
    for delivery in bench.control().webhooks()["deliveries"]:
        times = [attempt["at"] for attempt in delivery["attempts"] if 200 <= attempt.get("status", 0) < 300]
        if times and delivery["batch_id"] in job_of:
            answered[job_of[delivery["batch_id"]]] = times[0] - finish_at
    return answered


def _gaps(later: dict[int, float], earlier: dict[int, float]) -> list[float]:
    return sorted(later[job] - earlier[job] for job in later.keys() & earlier.keys())


def run_mode(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    bench = Installation(args)
    try:
        bench.log(f"--- {mode}: database {bench.database_name}, Redis {bench.redis_url}, logs {bench.workdir}")
        bench.setup_stores()
        bench.start_simulator()
        finish_at = time.time() + SETUP_BUDGET_SECONDS + args.lead + args.interval
        _create_batches(bench, finish_at)
        at = time.strftime("%H:%M:%S", time.gmtime(finish_at))
        bench.log(f"created {args.jobs} batches; {args.finishing} of them finish at {at} UTC")
        bench.start_engine()
        insert_jobs(bench)
        if mode == "webhooks":
            # After the jobs: their bulk insert gives the OpenAI and Keboola secrets ids 1 and 2.
            _use_webhooks(bench)
        if time.time() + args.interval > finish_at:
            bench.log("warning: the setup took longer than planned; some jobs had no check before T")
        time.sleep(max(0.0, finish_at - time.time()))
        cpu_at_finish = cpu_snapshot(bench)
        bench.log(f"{args.finishing} batches finished; waiting for their Keboola jobs")
        started = _reactions(bench, finish_at)
        cpu = _cpu_used(cpu_at_finish, cpu_snapshot(bench))
        checked, delivered = _checked(bench, finish_at), _delivered(bench, finish_at)
        result = {
            "mode": mode,
            "cpu_seconds": cpu,
            "started": _summary(sorted(started.values())),
            "checked": _summary(sorted(checked.values())),
            "delivered": _summary(sorted(delivered.values())),
            "delivered_to_checked": _summary(_gaps(checked, delivered)),
            "checked_to_started": _summary(_gaps(started, checked)),
            # Per job, seconds from T to each stage: for finding what the slowest jobs waited for.
            "jobs": {job: [delivered.get(job), checked.get(job), started.get(job)] for job in sorted(started)},
        }
        for what in STAGES:
            figures = result[what]
            bench.log(
                f"{mode}: {figures['count']} jobs {what}; from the batch's end p50 {figures['p50']:.2f} s, "
                f"p99 {figures['p99']:.2f} s, max {figures['max']:.2f} s"
            )
        bench.log(f"{mode}: CPU seconds from T to the last start (polled every 2 s): {result['cpu_seconds']}")
        return result
    finally:
        bench.cleanup()


def _cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    used = {name: round(after[name] - before[name], 1) for name in before if not name.startswith("_")}
    used["wall"] = round(after["_wall"] - before["_wall"], 1)
    return used


def _summary(seconds: list[float]) -> dict[str, Any]:
    if len(seconds) < 2:
        return {"count": len(seconds), "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"count": len(seconds), "p50": cuts[49], "p99": cuts[98], "max": seconds[-1]}


def _print_table(headings: list[str], results: list[dict[str, Any]], rows: dict[str, list[str]]) -> None:
    """A Markdown table: per mode, one row for each of `rows` (a result's key and its labels) that has figures."""
    columns = ["mode", *headings, "jobs", "p50", "p99", "max"]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for result in results:
        for what, labels in rows.items():
            figures = result[what]
            if figures["count"]:
                cells = [result["mode"], *labels, str(figures["count"])]
                cells += [f"{figures[cut]:.2f} s" for cut in ("p50", "p99", "max")]
                print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(130))
    results = [run_mode(args, mode.strip()) for mode in args.modes.split(",") if mode.strip()]
    print(f"\n=== reaction time: {args.jobs} jobs, interval {args.interval}s, {args.finishing} batches finish at once, "
          f"latency {args.latency_ms:g} ms, {args.workers} worker(s) × {args.concurrency} threads ===")  # fmt: skip
    _print_table(["from the batch's end to"], results, {what: [label] for what, label in STAGES.items()})
    print()
    _print_table(["from", "to"], results, {what: list(ends) for what, ends in GAPS.items()})
    for result in results:
        print(f"CPU seconds, {result['mode']}, from T to the last start: {result['cpu_seconds']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
