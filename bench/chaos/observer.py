"""Watches the jobs from outside, twice a second, through the database: what moved, what stalled, and how
long the installation took to recover after each fault.

It reads the database with its own short connections and skips a sample while the database is down, so it
never holds the engine back. Time is the harness's monotonic clock; the processes' clocks may be skewed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from teckochecker.db import make_engine

SAMPLE_EVERY = 0.5
# Shorter pauses between two moves of a job are its normal rhythm, not worth keeping.
STALL_KEPT = 5.0
FINISHED = ("completed", "completed_with_failures", "failed")
_SAMPLE = text("""
SELECT id, status, last_check_at, next_check_at, keboola_job_id, keboola_job_status, trigger_attempted_at,
       lease_token, keboola_configuration_id
FROM polling_jobs
""")
# The lease token's place in a job's fingerprint (the sampled row without its id).
_LEASE_TOKEN = 6


@dataclass
class Mark:
    """A fault's end: recovered once every job named in `waiting` has moved on (or finished)."""

    kind: str
    at: float
    waiting: set[int]
    recovered_at: float | None = None


@dataclass
class Stall:
    job_id: int
    started: float
    ended: float
    claimed: bool
    """Held under a lease all along (a check or trigger in flight), rather than waiting for its turn."""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class JobTrace:
    fingerprint: tuple | None = None
    changed_at: float = 0.0
    finished_at: float | None = None
    recorded_at: float | None = None
    """When the Keboola job id first appeared in the database."""
    configuration: str = ""


@dataclass
class Observer:
    database_url: str
    traces: dict[int, JobTrace] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    samples: int = 0
    missed_samples: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._wall_offset = time.time() - time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-observer", daemon=True)
        # A connection per sample: the database may be restarted under us at any time.
        self._engine = make_engine(self.database_url, poolclass=NullPool)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._engine.dispose()
        now = time.monotonic()
        with self._lock:
            for job_id, trace in self.traces.items():
                if trace.finished_at is None:
                    claimed = trace.fingerprint is not None and trace.fingerprint[_LEASE_TOKEN] is not None
                    self.stalls.append(Stall(job_id, trace.changed_at, now, claimed))

    def mark(self, kind: str) -> Mark:
        """Note that a fault ended now; its recovery time is measured until every unfinished job moved."""
        with self._lock:
            unfinished = {job_id for job_id, trace in self.traces.items() if trace.finished_at is None}
            mark = Mark(kind, time.monotonic(), unfinished)
            if not unfinished:
                mark.recovered_at = mark.at
            self.marks.append(mark)
            return mark

    def recorded_at_unix(self, configuration: str) -> float | None:
        """When (wall clock, seconds since the epoch) the job targeting `configuration` had its Keboola job
        id recorded."""
        with self._lock:
            for trace in self.traces.values():
                if trace.configuration == configuration and trace.recorded_at is not None:
                    return trace.recorded_at + self._wall_offset
        return None

    def finished(self) -> set[int]:
        with self._lock:
            return {job_id for job_id, trace in self.traces.items() if trace.finished_at is not None}

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            try:
                with self._engine.connect() as connection:
                    rows = [tuple(row) for row in connection.execute(_SAMPLE)]
            except SQLAlchemyError:
                self.missed_samples += 1
                continue
            self._record(rows, time.monotonic())

    def _record(self, rows: list[tuple], now: float) -> None:
        with self._lock:
            self.samples += 1
            moved: set[int] = set()
            for row in rows:
                job_id, status = row[0], row[1]
                trace = self.traces.setdefault(job_id, JobTrace(changed_at=now))
                fingerprint = tuple(row[1:])
                if trace.fingerprint is not None and fingerprint != trace.fingerprint:
                    if now - trace.changed_at > STALL_KEPT and trace.finished_at is None:
                        claimed = trace.fingerprint[_LEASE_TOKEN] is not None
                        self.stalls.append(Stall(job_id, trace.changed_at, now, claimed))
                    trace.changed_at = now
                    moved.add(job_id)
                trace.fingerprint = fingerprint
                trace.configuration = row[-1]
                if row[4] is not None and trace.recorded_at is None:
                    trace.recorded_at = now
                if status in FINISHED and trace.finished_at is None:
                    trace.finished_at = now
                    moved.add(job_id)
            for mark in self.marks:
                if mark.recovered_at is None:
                    mark.waiting -= moved
                    if not mark.waiting:
                        mark.recovered_at = now
