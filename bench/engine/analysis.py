"""The figures of a run, from what the sampling loop saw, and the report printed at the end."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.engine.load import Flip, Schedule
from bench.engine.sampling import Samples
from bench.engine.setup import Installation
from teckochecker.models import PollingJob


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def analyse(bench: Installation, schedule: Schedule, samples: Samples, flip: Flip, noop_rate: float) -> dict:
    """The run's figures, keyed as the report and --json show them."""
    args = bench.args
    lags, early, missed = _lags_and_misses(args, schedule, samples, until=flip.started)
    (t0, c0), (t1, c1) = samples.window
    window_seconds = t1 - t0
    checks_per_second = (c1 - c0) / window_seconds if window_seconds > 0 else float("nan")
    db_checks = sum(1 for _, stamp in samples.checks if t0 <= stamp < t1)
    return {
        # Check messages that waited in Redis past their expiry (= the job's interval) and were dropped unrun.
        "check_messages_expired": sum(
            bench.worker_log(name).count("Discarding revoked task: teckochecker.check_job")
            for name in bench.worker_names
        ),
        "checks_per_second_by_interval": [
            round((c1_ - c0_) / (t1_ - t0_), 1)
            for (t0_, c0_), (t1_, c1_) in itertools.pairwise(samples.timeline)
            if t1_ - t0_ > 1
        ],
        "required_checks_per_second": args.jobs / args.interval,
        "checks_per_second": checks_per_second,
        "checks_per_second_db": db_checks / window_seconds,
        "steady_window_seconds": window_seconds,
        "noop_tasks_per_second": noop_rate,
        "ratio_checks_to_noop": checks_per_second / noop_rate,
        "lag_seconds": {
            "count": len(lags),
            "p50": percentile(lags, 0.50),
            "p95": percentile(lags, 0.95),
            "p99": percentile(lags, 0.99),
            "max": max(lags) if lags else float("nan"),
            "checks_before_their_slot": early,
        },
        "missed": missed,
        "trigger_latency_seconds": _trigger_latency(bench, flip),
        "rss_mb": {name: {"max": max(values), "last": values[-1]} for name, values in samples.rss.items() if values},
        "cpu_percent_of_one_core": _cpu_percent(samples),
    }


def _lags_and_misses(
    args: argparse.Namespace, schedule: Schedule, samples: Samples, *, until: float
) -> tuple[list[float], int, dict[str, int]]:
    """Each check's lag behind its slot, the checks made before their slot, and the missed checks."""
    interval = args.interval
    origin_ts = schedule.origin.timestamp()
    by_job: dict[int, list[float]] = defaultdict(list)
    for job_id, stamp in samples.checks:
        if stamp < until:
            by_job[job_id].append(stamp)
    lags: list[float] = []
    early = gaps_missed = slots_missed = 0
    jobs_missed = set()
    for job_id in range(1, args.jobs + 1):
        first = origin_ts + schedule.offsets[job_id]
        stamps = sorted(by_job.get(job_id, []))
        for stamp in stamps:
            k = math.floor((stamp - first) / interval)
            if k < 0:
                early += 1
                k = 0
            lags.append(stamp - (first + k * interval))
        # Gaps, counting a virtual check one interval before the first slot, and the end of the run.
        points = [first - interval, *stamps, samples.end_ts]
        for previous, current in itertools.pairwise(points):
            gap = current - previous
            if gap > 1.5 * interval:
                gaps_missed += 1
                slots_missed += round(gap / interval) - 1
                jobs_missed.add(job_id)
    missed = {"gaps_over_1_5_intervals": gaps_missed, "slots": slots_missed, "jobs": len(jobs_missed)}
    return lags, early, missed


def _trigger_latency(bench: Installation, flip: Flip) -> dict[str, Any]:
    """From each batch's flip to its Keboola job's creation (1 s resolution) and to the trigger attempt."""
    keboola = bench.control().keboola_jobs()
    created = [
        parse_time(job["created_time"]) - flip.flipped[int(job["body"]["config"])]
        for job in keboola
        if int(job["body"]["config"]) in flip.flipped
    ]
    assert bench.engine is not None
    with bench.engine.connect() as connection:
        attempted = connection.execute(
            select(PollingJob.id, PollingJob.trigger_attempted_at).where(PollingJob.trigger_attempted_at.is_not(None))
        ).all()
    attempts = [stamp.timestamp() - flip.flipped[job_id] for job_id, stamp in attempted if job_id in flip.flipped]
    return {
        "keboola_jobs": len(keboola),
        "p50": percentile(created, 0.5),
        "p99": percentile(created, 0.99),
        "max": max(created) if created else float("nan"),
        "to_trigger_attempt_p50": percentile(attempts, 0.5),
        "to_trigger_attempt_p99": percentile(attempts, 0.99),
    }


def _cpu_percent(samples: Samples) -> dict[str, float]:
    """CPU of each process over the steady window, in % of one core, and of the whole machine."""
    cpu0, cpu1 = samples.cpu_window
    wall = cpu1["_wall"] - cpu0["_wall"]
    cpu = {name: round(100 * (cpu1[name] - cpu0[name]) / wall, 1) for name in cpu0 if not name.startswith("_")}
    machine = 100 * (cpu1["_busy"] - cpu0["_busy"]) / (cpu1["_total"] - cpu0["_total"])
    # What the machine spent outside the benchmark's processes (other users' load: the main noise source).
    cpu["other processes"] = round(machine * (os.cpu_count() or 1) - sum(cpu.values()), 1)
    cpu["machine (% of all cores)"] = round(machine, 1)
    return cpu


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    r, a = results, args
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
        "RSS MB (max/last): " + ", ".join(f"{name} {v['max']:.0f}/{v['last']:.0f}" for name, v in r["rss_mb"].items()),
        "CPU % of one core over the steady window: "
        + ", ".join(f"{name} {value}" for name, value in r["cpu_percent_of_one_core"].items()),
        f"{r['keboola_jobs_triggered']}/{a.jobs} jobs had their Keboola job "
        f"{r['all_triggered_after_seconds']:.0f}s "
        f"after the flip began; insert took {r['insert_seconds']:.2f}s",
    ]
    print("\n".join(lines), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2, default=str))
