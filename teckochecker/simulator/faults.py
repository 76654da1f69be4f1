"""The simulator's faults (requests made to fail on purpose) and its counters of requests and connections."""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Fault:
    """Make matching requests fail: an error status (with Retry-After), a delay, or a dropped connection.

    `after` handles the request first and fails only its answer (Keboola created the job, then answered
    502 or never answered). `probability` fires it on that share of the matching requests, from the
    simulator's seeded randomness (the `fault_seed` setting); `delay_max` makes the delay uniform between
    `delay` and `delay_max`.
    """

    id: str
    path: str
    method: str = "*"
    count: int | None = None
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    delay: float = 0.0
    delay_max: float | None = None
    drop: bool = False
    after: bool = False
    probability: float = 1.0
    headers: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    code: str | None = None
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)

    @property
    def decides(self) -> bool:
        """Whether it replaces the answer (an error or a dropped connection) rather than only delaying it."""
        return self.drop or self.status is not None

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FaultState:
    """Faults and counters of SimulatorState (a mixin): its lock guards these, and reset() empties them."""

    _lock: threading.Lock
    faults: list[Fault]
    requests: Counter[str]
    connections: int
    _fault_ids: Iterator[int]
    _fault_random: random.Random

    def _reset_faults(self, seed: int) -> None:
        self.faults = []
        self.requests = Counter()
        self.connections = 0
        self._fault_ids = itertools.count(1)
        self._fault_random = random.Random(seed)

    def _seed_faults(self, seed: int) -> None:
        self._fault_random.seed(seed)

    def add_fault(self, spec: dict[str, Any]) -> Fault:
        with self._lock:
            fault = Fault(id=str(next(self._fault_ids)), **spec)
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_faults(self, method: str, path: str) -> list[Fault]:
        """The faults that fire on this request, counted as fired, in the order they were added: each
        delay-only fault that fires, up to the first error or drop that fires, which decides the answer."""
        fired = []
        with self._lock:
            for fault in self.faults:
                if not fault.matches(method, path):
                    continue
                if fault.probability < 1 and self._fault_random.random() >= fault.probability:
                    continue
                fault.fired += 1
                fired.append(fault)
                if fault.decides:
                    break
        return fired

    def fault_delay(self, fault: Fault) -> float:
        if fault.delay_max is None:
            return fault.delay
        with self._lock:
            return self._fault_random.uniform(fault.delay, fault.delay_max)

    def count_request(self, route: str) -> None:
        with self._lock:
            self.requests[route] += 1

    def count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self.requests.values()),
                "requests": dict(self.requests),
                "connections": self.connections,
                "faults": [fault.describe() for fault in self.faults],
            }
