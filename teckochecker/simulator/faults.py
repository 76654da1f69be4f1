"""The simulator's faults (requests made to fail on purpose) and its counters of requests and connections."""

from __future__ import annotations

import fnmatch
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Fault:
    """Make matching requests fail: an error status (with Retry-After), a delay, or a dropped connection."""

    id: str
    path: str
    method: str = "*"
    count: int | None = None
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    delay: float = 0.0
    drop: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    code: str | None = None
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FaultState:
    """Faults and counters of SimulatorState (a mixin): its lock guards these, and reset() empties them."""

    _lock: threading.Lock
    faults: list[Fault]
    requests: Counter[str]
    connections: int
    _fault_ids: Iterator[int]

    def _reset_faults(self) -> None:
        self.faults = []
        self.requests = Counter()
        self.connections = 0
        self._fault_ids = itertools.count(1)

    def add_fault(self, spec: dict[str, Any]) -> Fault:
        with self._lock:
            fault = Fault(id=str(next(self._fault_ids)), **spec)
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault that matches, counted as fired."""
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    return fault
            return None

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
