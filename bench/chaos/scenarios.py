"""A chaos run: jobs whose batches finish in waves, the faults of a Plan injected meanwhile, then the count.

Every job watches one batch and targets its own Keboola configuration, so the Keboola jobs the simulator
received, grouped by configuration, show every duplicate. A job is lost when it never finished, or when it
stood still (stuck) for longer than the longest lease plus one interval, the time of Redis or PostgreSQL
outages during the stall not counted.
"""

from __future__ import annotations

import random
import shutil
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.chaos import faults
from bench.chaos.cluster import Cluster
from bench.chaos.observer import SAMPLE_EVERY, Observer
from bench.chaos.servers import new_workdir
from teckochecker.clients.http import DEFAULT_READ_TIMEOUT
from teckochecker.engine.scheduling import START_LEASE
from worker.scheduler import DISPATCH_EVERY_SECONDS

SKEW_SECONDS = 30


@dataclass(frozen=True)
class Plan:
    name: str
    jobs: int = 200
    interval: int = 2
    seconds: float = 120.0
    """Batches finish in waves over this long, and the faults are spread over it."""
    waves: int = 10
    workers: int = 2
    beats: int = 2
    kills: int = 0
    redis_restarts: int = 0
    append_only: bool = False
    postgres_restarts: int = 0
    ambiguous_each: int = 0
    """Ambiguous Keboola failures of each kind (502, timeout, closed connection)."""
    skewed_workers: int = 0
    """Workers (and as many beats) with clocks SKEW_SECONDS off, alternately ahead and behind."""
    flaky_openai: bool = False
    outage_seconds: float = 6.0
    settle_seconds: float = 240.0
    """After the faults end, how long every job has to finish before the unfinished ones count as lost."""
    seed: int = 20261203


@dataclass
class Report:
    scenario: str
    faults: dict[str, int]
    jobs: int
    keboola_jobs: int
    duplicates: int
    lost: int
    """Never finished, or stuck (the two counted apart below)."""
    never_finished: int
    stuck: int
    recovery_p50: float | None
    recovery_max: float | None
    longest_stall: float
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        recovery = "–" if self.recovery_p50 is None else f"p50 {self.recovery_p50:.1f} s, max {self.recovery_max:.1f} s"
        faults_text = ", ".join(f"{count} × {kind}" for kind, count in self.faults.items()) or "none"
        return (
            f"{self.scenario}: faults {faults_text}; {self.jobs} polling jobs, {self.keboola_jobs} Keboola jobs, "
            f"{self.duplicates} duplicates, {self.lost} lost ({self.never_finished} never finished, "
            f"{self.stuck} stuck); recovery {recovery}; longest stall {self.longest_stall:.1f} s; "
            f"{self.seconds:.0f} s in all"
        )


TABLE_HEADER = (
    "| scenario | faults injected | polling jobs | Keboola jobs | duplicates | lost | recovery p50 / max | "
    "longest stall |\n|---|---|---:|---:|---:|---:|---|---:|"
)


def table_row(report: Report) -> str:
    """The report as a row of TABLE_HEADER's Markdown table (docs/RELIABILITY.md)."""
    faults_text = "; ".join(f"{count} × {kind}" for kind, count in report.faults.items())
    recovery = "–" if report.recovery_p50 is None else f"{report.recovery_p50:.1f} s / {report.recovery_max:.1f} s"
    return (
        f"| {report.scenario} | {faults_text} | {report.jobs} | {report.keboola_jobs} | {report.duplicates} | "
        f"{report.lost} | {recovery} | {report.longest_stall:.0f} s |"
    )


def run(plan: Plan, *, keep_logs: bool = False, log: Any = print) -> Report:
    """Set up an installation, run the plan against it, take it down, and count."""
    workdir = new_workdir(f"chaos-{plan.name}-")
    cluster = Cluster(workdir, append_only=plan.append_only)
    began = time.monotonic()
    try:
        cluster.start()
        log(f"[{plan.name}] installation up in {workdir}")
        return _run(plan, cluster, began, log)
    finally:
        _take_down(cluster, keep_logs, log)


def _run(plan: Plan, cluster: Cluster, began: float, log: Any) -> Report:
    rng = random.Random(plan.seed)
    cluster.control.configure(job_duration=1)
    cluster.add_secrets()
    job_ids = _create_jobs(plan, cluster)
    waves_end = time.monotonic() + plan.seconds
    log(f"[{plan.name}] {len(job_ids)} jobs created through the API")
    fault_log = faults.FaultLog()
    if plan.ambiguous_each:
        faults.ambiguous_keboola(cluster, fault_log, each=plan.ambiguous_each)
    if plan.kills:
        faults.widen_trigger_window(cluster)
    if plan.flaky_openai:
        cluster.control.configure(fault_seed=plan.seed)
        faults.flaky_openai(cluster, fault_log)
    for number in range(1, plan.workers + 1):
        cluster.start_worker(f"w{number}")
    for number in range(1, plan.beats + 1):
        cluster.start_beat(f"beat{number}")
    for number in range(plan.skewed_workers):
        offset = SKEW_SECONDS if number % 2 == 0 else -SKEW_SECONDS
        cluster.start_worker(f"w-skewed{number}", clock_offset=offset)
        cluster.start_beat(f"beat-skewed{number}", clock_offset=offset)
        fault_log.injected[f"worker and beat {offset:+d} s off"] += 1
    observer = Observer(cluster.database_url)
    observer.start()
    stop = threading.Event()
    storm = threading.Thread(
        target=faults.kill_storm,
        args=(cluster, observer, fault_log),
        kwargs={"kills": plan.kills, "seconds": plan.seconds, "rng": rng, "stop": stop},
        daemon=True,
    )
    storm.start()
    _outages(plan, cluster, observer, fault_log, time.monotonic())
    storm.join()
    log(f"[{plan.name}] faults done: {dict(fault_log.injected)}; waiting for every job to finish")
    return _settle_and_count(plan, cluster, observer, fault_log, job_ids, began, waves_end)


def _settle_and_count(
    plan: Plan,
    cluster: Cluster,
    observer: Observer,
    fault_log: faults.FaultLog,
    job_ids: list[int],
    began: float,
    waves_end: float,
) -> Report:
    """Wait until every job has finished or `settle_seconds` have passed since the faults and the batch waves
    both ended (a fault that is set once at the start, such as a flaky OpenAI, ends before the last wave);
    count."""
    deadline = max(time.monotonic(), waves_end) + plan.settle_seconds
    cluster.wait_until(
        lambda: len(observer.finished()) >= len(job_ids) or time.monotonic() > deadline,
        deadline - time.monotonic() + 60,
        "the run's deadline",
    )
    observer.stop()
    return _count(plan, cluster, observer, fault_log, job_ids, began)


def _create_jobs(plan: Plan, cluster: Cluster) -> list[int]:
    """One batch per job, finishing in `waves` waves over the run (counted from now)."""
    batches = []
    for index in range(plan.jobs):
        wave = index % plan.waves
        batches.append(
            {
                "id": f"batch_chaos_{index:05d}",
                "final_status": "completed",
                "duration": plan.seconds * (wave + 1) / (plan.waves + 1),
            }
        )
    cluster.control.create_batches(batches)
    return [
        cluster.create_job([batch["id"]], configuration=f"chaos-{index:05d}", interval=plan.interval)
        for index, batch in enumerate(batches)
    ]


def _outages(plan: Plan, cluster: Cluster, observer: Observer, fault_log: faults.FaultLog, began: float) -> None:
    """Redis and PostgreSQL outages, spread evenly over the run (from `began`) between its waves."""
    outages = ["redis"] * plan.redis_restarts + ["postgres"] * plan.postgres_restarts
    random.Random(plan.seed + 1).shuffle(outages)
    for position, kind in enumerate(outages, start=1):
        moment = began + plan.seconds * position / (len(outages) + 1)
        time.sleep(max(0.0, moment - time.monotonic()))
        if kind == "redis":
            faults.restart_redis(cluster, observer, fault_log, down_for=plan.outage_seconds)
        else:
            faults.restart_postgres(cluster, observer, fault_log, down_for=plan.outage_seconds)


def _count(
    plan: Plan, cluster: Cluster, observer: Observer, fault_log: faults.FaultLog, job_ids: list[int], began: float
) -> Report:
    started = Counter(str(job["body"].get("config")) for job in cluster.control.keboola_jobs())
    fired = Counter()
    for fault in cluster.control.counters()["faults"]:
        fired[f"{fault['method']} {fault['path']} {_fault_kind(fault)}"] += fault["fired"]
    finished = observer.finished()
    # The longest lease plus one interval, plus what the measure itself adds: beat's tick (a job whose lease
    # ended is handed out at the next one) and the sampling on both ends of a stall.
    threshold = START_LEASE.total_seconds() + plan.interval + DISPATCH_EVERY_SECONDS + 2 * SAMPLE_EVERY
    stuck_jobs = {
        stall.job_id
        for stall in observer.stalls
        if stall.seconds - _overlap(stall.started, stall.ended, fault_log.outage_seconds) > threshold
    }
    fault_recoveries = [mark.recovered_at - mark.at for mark in observer.marks if mark.recovered_at is not None]
    ambiguous_recoveries = _ambiguous_recoveries(plan, cluster, observer)
    recoveries = sorted(fault_recoveries + ambiguous_recoveries)
    unrecovered = sum(1 for mark in observer.marks if mark.recovered_at is None)
    probes = fault_log.api_probes
    return Report(
        scenario=plan.name,
        faults=dict(fault_log.injected),
        jobs=len(job_ids),
        keboola_jobs=sum(started.values()),
        duplicates=sum(count - 1 for count in started.values() if count > 1),
        lost=len((set(job_ids) - finished) | stuck_jobs),
        never_finished=len(set(job_ids) - finished),
        stuck=len(stuck_jobs),
        recovery_p50=statistics.median(recoveries) if recoveries else None,
        recovery_max=recoveries[-1] if recoveries else None,
        longest_stall=max((stall.seconds for stall in observer.stalls), default=0.0),
        seconds=time.monotonic() - began,
        details={
            "kill_moments": dict(fault_log.kill_moments),
            "faults_without_recovery": unrecovered,
            "api_while_database_down": {
                "probes": len(probes),
                "503_with_json_error": sum(1 for status, shaped in probes if status == 503 and shaped),
            },
            "stuck_threshold_seconds": threshold,
            "fault_recovery_max": max(fault_recoveries, default=None),
            "ambiguous_recovery_max": max(ambiguous_recoveries, default=None),
            # An ambiguous recovery starts when Keboola creates the job, before the engine knows anything is
            # wrong: the attempt that lost its answer runs up to the client's read timeout first, and no
            # server's downtime is taken out of it.
            "ambiguous_recovery_bound_seconds": threshold
            + DEFAULT_READ_TIMEOUT
            + sum(end - start for start, end in fault_log.outage_seconds),
            # Starvation: the longest an unfinished job waited, unclaimed, for its next check or trigger step;
            # apart from the longest a claimed job's check or trigger stayed in flight (slow answers).
            "longest_wait_for_a_turn": max((st.seconds for st in observer.stalls if not st.claimed), default=0.0),
            "longest_in_flight": max((st.seconds for st in observer.stalls if st.claimed), default=0.0),
            "simulator_faults_fired": dict(fired),
            "duplicated_configurations": sorted(config for config, count in started.items() if count > 1),
            "observer_samples": observer.samples,
            "observer_samples_missed": observer.missed_samples,
        },
    )


def _ambiguous_recoveries(plan: Plan, cluster: Cluster, observer: Observer) -> list[float]:
    """From Keboola creating each job whose answer was lost to the engine recording that job.

    The ambiguous faults fire, in order, on the first Keboola job-creates, so those jobs are their victims.
    """
    victims = sorted(cluster.control.keboola_jobs(), key=lambda job: job["created_unix"])[: 3 * plan.ambiguous_each]
    recoveries = []
    for job in victims:
        recorded = observer.recorded_at_unix(str(job["body"].get("config")))
        if recorded is not None:
            recoveries.append(recorded - job["created_unix"])
    return recoveries


def _fault_kind(fault: dict[str, Any]) -> str:
    what = "drop" if fault["drop"] else (str(fault["status"]) if fault["status"] else "delay")
    return f"{what} after handling" if fault["after"] else what


def _overlap(start: float, end: float, windows: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, window_end) - max(start, window_start)) for window_start, window_end in windows)


def _take_down(cluster: Cluster, keep_logs: bool, log: Any) -> None:
    cluster.close()
    if keep_logs:
        log(f"logs kept in {cluster.workdir / 'logs'}")
    else:
        shutil.rmtree(cluster.workdir, ignore_errors=True)


def run_embedded(kills: int, *, seed: int = 20261203, keep_logs: bool = False, log: Any = print) -> Report:
    """`teckochecker start` (SQLite, the embedded broker) SIGKILLed as a whole mid-trigger `kills` times.

    Each kill waits for Keboola to receive a job-create request, then lands inside the TRIGGER_WINDOW
    that Keboola takes to answer: after the job exists in Keboola, before the answer reaches our database.
    """
    workdir = new_workdir("chaos-embedded-")
    cluster = Cluster(workdir, embedded=True)
    began = time.monotonic()
    rng = random.Random(seed)
    try:
        cluster.start()
        cluster.control.configure(job_duration=1)
        faults.widen_trigger_window(cluster)
        cluster.add_secrets()
        # Twice as many jobs as kills, finishing one every 5 s: each restart (about 7 s) leaves triggers to aim at.
        plan = Plan("embedded", jobs=2 * kills, interval=1, seconds=kills * 10.0, waves=2 * kills)
        job_ids = _create_jobs(plan, cluster)
        waves_end = time.monotonic() + plan.seconds
        observer = Observer(f"sqlite:///{workdir / 'teckochecker.db'}")
        observer.start()
        fault_log = faults.FaultLog()
        for _ in range(kills):
            if not _next_keboola_create(cluster, timeout=120):
                log("[embedded] no trigger left to interrupt; the storm ends early")
                break
            time.sleep(rng.uniform(0.05, 0.8 * faults.TRIGGER_WINDOW))
            cluster.kill("start")
            fault_log.count("SIGKILL of `teckochecker start` mid-trigger")
            # Keboola created the job on receiving the request and holds its answer for TRIGGER_WINDOW.
            fault_log.kill_moments["between Keboola's answer and the database write"] += 1
            cluster.restart("start")
            cluster.wait_for_api()
            observer.mark("SIGKILL")
        log(f"[embedded] {kills} kills done; waiting for every job to finish")
        return _settle_and_count(plan, cluster, observer, fault_log, job_ids, began, waves_end)
    finally:
        _take_down(cluster, keep_logs, log)


def _next_keboola_create(cluster: Cluster, *, timeout: float) -> bool:
    """Wait for Keboola to receive one more job-create request; False if none came within `timeout`."""
    seen = _keboola_creates(cluster)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _keboola_creates(cluster) > seen:
            return True
        time.sleep(0.05)
    return False


def _keboola_creates(cluster: Cluster) -> int:
    return cluster.control.counters()["requests"].get("POST /jobs", 0)
