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

from sqlalchemy import func, select

from bench.engine.load import Flip, Schedule
from bench.engine.sampling import Samples
from bench.engine.setup import Installation
from teckochecker.models import JobEvent, PollingJob


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
    (t0, r0), (t1, r1) = samples.window
    steady_lags = [lag for stamp, lag in lags if t0 <= stamp < t1]
    window_seconds = t1 - t0
    job_checks = sum(1 for _, stamp in samples.checks if t0 <= stamp < t1)
    batch_checks = job_checks * args.batches_per_job
    requests_per_second = (r1 - r0) / window_seconds if window_seconds > 0 else float("nan")
    cpu = _cpu_percent(samples)
    engine_cpu = sum(value for name, value in cpu.items() if name in (*bench.worker_names, "beat")) / 100
    watched = args.jobs * args.batches_per_job
    return {
        # Check messages that waited in Redis past their expiry (= the job's interval) and were dropped unrun.
        "check_messages_expired": sum(
            bench.worker_log(name).count("Discarding revoked task: teckochecker.check_job")
            for name in bench.worker_names
        ),
        "requests_per_second_by_interval": [
            round((r1_ - r0_) / (t1_ - t0_), 1)
            for (t0_, r0_), (t1_, r1_) in itertools.pairwise(samples.timeline)
            if t1_ - t0_ > 1
        ],
        "required_batch_checks_per_second": watched / args.interval,
        "batch_checks_per_second": batch_checks / window_seconds,
        "job_checks_per_second": job_checks / window_seconds,
        "openai_requests_per_second": requests_per_second,
        "openai_requests_per_interval": requests_per_second * args.interval,
        "openai_requests_per_watched_batch_and_interval": requests_per_second * args.interval / watched,
        "steady_window_seconds": window_seconds,
        "noop_tasks_per_second": noop_rate,
        "ratio_batch_checks_to_noop": batch_checks / window_seconds / noop_rate,
        "engine_cpu_seconds_per_1000_batch_checks": 1000 * engine_cpu * window_seconds / batch_checks
        if batch_checks
        else float("nan"),
        "lag_seconds": {**_spread([lag for _, lag in lags]), "checks_before_their_slot": early},
        # Past the first interval, when every job appeared at once and no sweep had yet learned its lead.
        "steady_lag_seconds": _spread(steady_lags),
        "missed": missed,
        "restart": _restart(args, schedule, samples) if args.overdue else None,
        "trigger_latency_seconds": _trigger_latency(bench, flip),
        "rss_mb": {name: {"max": max(values), "last": values[-1]} for name, values in samples.rss.items() if values},
        "cpu_percent_of_one_core": cpu,
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else float("nan"),
    }


def _lags_and_misses(
    args: argparse.Namespace, schedule: Schedule, samples: Samples, *, until: float
) -> tuple[list[tuple[float, float]], int, dict[str, int]]:
    """Each check's (time, lag behind the slot it serves), the checks made ahead of it, and the missed checks.

    A check serves the nearest slot on its job's grid: a sweep checks jobs up to a quarter of an interval
    early (lag 0, counted as early), a late check counts its lag from the slot before it.
    """
    interval = args.interval
    origin_ts = schedule.origin.timestamp()
    by_job: dict[int, list[float]] = defaultdict(list)
    for job_id, stamp in samples.checks:
        if stamp < until:
            by_job[job_id].append(stamp)
    lags: list[tuple[float, float]] = []
    early = gaps_missed = slots_missed = 0
    jobs_missed = set()
    for job_id in range(1, args.jobs + 1):
        first = origin_ts + schedule.offsets[job_id]
        stamps = sorted(by_job.get(job_id, []))
        for stamp in stamps:
            lag = stamp - (first + round((stamp - first) / interval) * interval)
            if lag < 0 and stamp >= first - interval / 2:
                early += 1
            lags.append((stamp, max(0.0, lag)))
        # Gaps, counting a virtual check one interval before the first slot, and the end of the run.
        points = [max(first, origin_ts) - interval, *stamps, samples.end_ts]
        for previous, current in itertools.pairwise(points):
            gap = current - previous
            if gap > 1.5 * interval:
                gaps_missed += 1
                slots_missed += round(gap / interval) - 1
                jobs_missed.add(job_id)
    missed = {"gaps_over_1_5_intervals": gaps_missed, "slots": slots_missed, "jobs": len(jobs_missed)}
    return lags, early, missed


def _restart(args: argparse.Namespace, schedule: Schedule, samples: Samples) -> dict[str, float]:
    """After a start with every job overdue: jobs checked twice within half an interval, and the catch-up time."""
    by_job: dict[int, list[float]] = defaultdict(list)
    for job_id, stamp in samples.checks:
        by_job[job_id].append(stamp)
    doubles = sum(
        1
        for stamps in by_job.values()
        if any(later - earlier < args.interval / 2 for earlier, later in itertools.pairwise(sorted(stamps)))
    )
    firsts = [min(stamps) for stamps in by_job.values()]
    origin = schedule.origin.timestamp()
    return {
        "jobs_checked": len(by_job),
        "jobs_checked_twice_within_half_an_interval": doubles,
        "seconds_until_every_job_was_checked": max(firsts) - origin if len(firsts) == args.jobs else float("nan"),
    }


def _trigger_latency(bench: Installation, flip: Flip) -> dict[str, Any]:
    """From each job's flip to its Keboola job's creation (1 s resolution); from the check that saw its batches
    finish (the `triggering` event) to the Keboola call (µs, the database's clock); and duplicates."""
    keboola = bench.control().keboola_jobs()
    created = [
        parse_time(job["created_time"]) - flip.flipped[int(job["body"]["config"])]
        for job in keboola
        if int(job["body"]["config"]) in flip.flipped
    ]
    per_config: dict[str, int] = defaultdict(int)
    for job in keboola:
        per_config[job["body"]["config"]] += 1
    assert bench.engine is not None
    with bench.engine.connect() as connection:
        attempted = connection.execute(
            select(PollingJob.id, PollingJob.trigger_attempted_at).where(PollingJob.trigger_attempted_at.is_not(None))
        ).all()
        seen_finished = dict(
            connection.execute(
                select(JobEvent.job_id, func.max(JobEvent.created_at))
                .where(JobEvent.kind == "triggering")
                .group_by(JobEvent.job_id)
            ).all()
        )
    attempts = [stamp.timestamp() - flip.flipped[job_id] for job_id, stamp in attempted if job_id in flip.flipped]
    check_to_start = [
        (stamp - seen_finished[job_id]).total_seconds() for job_id, stamp in attempted if job_id in seen_finished
    ]
    return {
        "keboola_jobs": len(keboola),
        "duplicates": sum(count - 1 for count in per_config.values() if count > 1),
        "p50": percentile(created, 0.5),
        "p99": percentile(created, 0.99),
        "max": max(created) if created else float("nan"),
        "to_trigger_attempt_p50": percentile(attempts, 0.5),
        "to_trigger_attempt_p99": percentile(attempts, 0.99),
        "check_to_start_p50": percentile(check_to_start, 0.5),
        "check_to_start_p99": percentile(check_to_start, 0.99),
        "check_to_start_max": max(check_to_start) if check_to_start else float("nan"),
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
    lag, steady, missed, trig = r["lag_seconds"], r["steady_lag_seconds"], r["missed"], r["trigger_latency_seconds"]
    watched = a.jobs * a.batches_per_job
    lines = [
        "",
        f"=== engine benchmark: {a.jobs} jobs x {a.batches_per_job} batches on {a.keys} key(s), "
        f"{a.unwatched} unwatched{' scattered' if a.scatter else ''}, interval {a.interval}s, latency "
        f"{a.latency_ms} ms, {a.workers} worker(s) x {a.pool} -c {a.concurrency}, {a.duration_intervals} intervals ===",
        f"machine: {os.cpu_count()} cores; first checks "
        f"{'overdue by up to an hour' if a.overdue else 'spread uniformly over the first interval'} (seed {a.seed})",
        f"batch checks/s (steady window {r['steady_window_seconds']:.0f}s): {r['batch_checks_per_second']:.1f}  "
        f"(required {r['required_batch_checks_per_second']:.1f}; job checks/s {r['job_checks_per_second']:.1f})",
        f"OpenAI requests/s {r['openai_requests_per_second']:.1f}; "
        f"per interval {r['openai_requests_per_interval']:.0f} "
        f"for {watched} watched batches ({r['openai_requests_per_watched_batch_and_interval']:.3f} per batch)",
        "OpenAI requests/s interval by interval: " + ", ".join(str(v) for v in r["requests_per_second_by_interval"]),
        f"no-op Celery tasks/s (same broker, pool, concurrency): {r['noop_tasks_per_second']:.0f}  -> "
        f"ratio batch checks/no-op = {r['ratio_batch_checks_to_noop']:.2f}",
        f"engine CPU (workers + beat) per 1,000 batch checks: {r['engine_cpu_seconds_per_1000_batch_checks']:.2f} s",
        f"scheduling lag (last_check_at - the slot it serves, {lag['count']} checks): "
        f"p50 {lag['p50']:.2f}s  p95 {lag['p95']:.2f}s  p99 {lag['p99']:.2f}s  max {lag['max']:.2f}s; "
        f"{lag['checks_before_their_slot']} checks ahead of their slot (sweeps)",
        f"  in the steady window ({steady['count']} checks): p50 {steady['p50']:.2f}s  p95 {steady['p95']:.2f}s  "
        f"p99 {steady['p99']:.2f}s  max {steady['max']:.2f}s",
        f"missed checks (gap > 1.5 intervals): {missed['gaps_over_1_5_intervals']} gaps, "
        f"{missed['slots']} slots, {missed['jobs']} jobs; check messages expired unrun (whole run): "
        f"{r['check_messages_expired']}",
    ]
    if r["restart"]:
        restart = r["restart"]
        lines.append(
            f"restart with every job overdue: {restart['jobs_checked_twice_within_half_an_interval']} jobs checked "
            f"twice within half an interval; every job checked {restart['seconds_until_every_job_was_checked']:.1f}s "
            f"after the start"
        )
    lines += [
        f"trigger latency (flip -> Keboola job created, 1 s resolution; {trig['keboola_jobs']} jobs, "
        f"{trig['duplicates']} duplicates): p50 {trig['p50']:.1f}s  p99 {trig['p99']:.1f}s  max {trig['max']:.1f}s; "
        f"check that saw them finish -> Keboola call: p50 {trig['check_to_start_p50']:.1f}s  "
        f"p99 {trig['check_to_start_p99']:.1f}s  max {trig['check_to_start_max']:.1f}s",
        "RSS MB (max/last): " + ", ".join(f"{name} {v['max']:.0f}/{v['last']:.0f}" for name, v in r["rss_mb"].items()),
        "CPU % of one core over the steady window: "
        + ", ".join(f"{name} {value}" for name, value in r["cpu_percent_of_one_core"].items()),
        f"{r['keboola_jobs_triggered']}/{a.jobs} jobs had their Keboola job "
        f"{r['all_triggered_after_seconds']:.0f}s after the flip began; insert took {r['insert_seconds']:.2f}s",
    ]
    print("\n".join(lines), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2, default=str))
