"""The measuring loop: every second, the checks the database shows, the simulator's counter, RSS and CPU."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import text

from bench.engine.load import Schedule
from bench.engine.setup import Installation

# The simulator's routes the checks use: one batch, and a page of the list (a sweep).
REQUEST_ROUTES = {"get": "GET /v1/batches/{batch_id}", "list": "GET /v1/batches"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
_RECENT_CHECKS = text("SELECT id, last_check_at FROM polling_jobs WHERE last_check_at >= :since")

# --- /proc (Linux): memory and CPU of a process and its descendants ------------------------------------


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


def _used(fields: list[str], *, reaped: bool) -> int:
    """Clock ticks from /proc/PID/stat's fields after the command: utime + stime, and with `reaped` also
    cutime + cstime, what the process's exited and waited-for children used (a database backend that served
    one connection and closed, a worker's child). Without them a process that exits between two snapshots
    takes its CPU with it, and a difference of snapshots can even come out negative."""
    return int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """CPU seconds of the process and (by default) its descendants, live or exited."""
    total = 0
    for member in _tree(pid) if descendants else [pid]:
        try:
            with open(f"/proc/{member}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += _used(fields, reaped=descendants)
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def cpu_by_command(names: tuple[str, ...]) -> float:
    """CPU seconds of every process whose command name is one of `names` (postgres, redis-server), with what
    their exited children used (PostgreSQL's closed connections' backends)."""
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
            total += _used(fields, reaped=True)
    return total / CLK_TCK


def machine_busy() -> tuple[float, float]:
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --- the installation's processes ----------------------------------------------------------------------


def engine_pids(bench: Installation) -> dict[str, int]:
    pids = {name: bench.processes[name].pid for name in bench.worker_names}
    pids["beat"] = bench.processes["beat"].pid
    pids["simulator"] = bench.processes["simulator"].pid
    if "api" in bench.processes:
        pids["api"] = bench.processes["api"].pid
    pids["bench"] = os.getpid()
    return pids


def cpu_snapshot(bench: Installation) -> dict[str, float]:
    snapshot = {name: cpu_seconds(pid, descendants=name != "bench") for name, pid in engine_pids(bench).items()}
    snapshot["postgres"] = cpu_by_command(("postgres",))
    snapshot["redis-server"] = cpu_by_command(("redis-server",))
    busy, total = machine_busy()
    snapshot["_busy"], snapshot["_total"] = busy, total
    snapshot["_wall"] = time.monotonic()
    return snapshot


def openai_requests(bench: Installation) -> int:
    """Requests the simulator has answered for the checks so far: single GETs and list pages."""
    counts = bench.control().counters()["requests"]
    return sum(int(counts.get(route, 0)) for route in REQUEST_ROUTES.values())


# --- the loop ------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """What the loop saw: each (job, check time) pair, and the counters at the window's ends."""

    end_ts: float
    checks: set[tuple[int, float]] = field(default_factory=set)
    rss: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # (time, OpenAI requests so far) at each interval's start, and at the end.
    timeline: list[tuple[float, int]] = field(default_factory=list)
    # (time, OpenAI requests so far) and CPU snapshots at the steady window's start and end.
    counters: dict[str, tuple[float, int]] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def window(self) -> tuple[tuple[float, int], tuple[float, int]]:
        return self.counters["start"], self.counters["end"]

    @property
    def cpu_window(self) -> tuple[dict[str, float], dict[str, float]]:
        return self.cpu["start"], self.cpu["end"]


def sample(bench: Installation, schedule: Schedule) -> Samples:
    """Run K intervals, sampling every --sample-every seconds."""
    args = bench.args
    interval = args.interval
    origin_ts = schedule.origin.timestamp()
    samples = Samples(end_ts=origin_ts + args.duration_intervals * interval)
    steady_from = origin_ts + (interval if args.duration_intervals >= 2 else 0)
    bench.log(
        f"running {args.duration_intervals} intervals of {interval}s "
        f"until {datetime.fromtimestamp(samples.end_ts):%H:%M:%S}; "
        f"steady window from +{steady_from - origin_ts:.0f}s"
    )
    next_report = time.time() + max(10, interval)
    boundaries = [origin_ts + k * interval for k in range(args.duration_intervals + 1)]
    newest = 0.0
    while True:
        now = time.time()
        if boundaries and now >= boundaries[0]:
            boundaries.pop(0)
            samples.timeline.append((now, openai_requests(bench)))
        if "start" not in samples.counters and now >= steady_from:
            samples.counters["start"] = (now, openai_requests(bench))
            samples.cpu["start"] = cpu_snapshot(bench)
        if now >= samples.end_ts:
            samples.counters["end"] = (now, openai_requests(bench))
            samples.timeline.append(samples.counters["end"])
            samples.cpu["end"] = cpu_snapshot(bench)
            return samples
        newest = _take_sample(bench, samples, newest)
        if now >= next_report:
            recent = sum(1 for _, stamp in samples.checks if stamp >= now - 10)
            bench.log(f"  {len(samples.checks)} checks seen; {recent / 10:.0f} checks/s over the last 10 s")
            next_report = now + max(10, interval)
        time.sleep(max(0.0, min(args.sample_every - (time.time() - now), samples.end_ts - time.time())))


def _take_sample(bench: Installation, samples: Samples, newest: float) -> float:
    """Record the checks written since shortly before the newest seen, and RSS; returns the new newest."""
    since = datetime.fromtimestamp(max(0.0, newest - 20), UTC)
    assert bench.engine is not None
    with bench.engine.connect() as connection:
        for job_id, checked in connection.execute(_RECENT_CHECKS, {"since": since}):
            stamp = checked.timestamp()
            samples.checks.add((job_id, stamp))
            newest = max(newest, stamp)
    for name in [*bench.worker_names, "beat"]:
        samples.rss[name].append(rss_mb(bench.processes[name].pid))
    for name, process in bench.processes.items():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
    return newest
