"""What the simulator remembers, behind one lock: its settings, and the state of each simulated API.

Each API's part lives beside its handlers' module: openai_state.py (keys, batches), keboola_state.py
(tokens, jobs), faults.py (faults, counters) and webhooks.py (the webhooks sent for finished batches);
SimulatorState puts them together.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import Any

from teckochecker.simulator.faults import FaultState
from teckochecker.simulator.keboola_state import JOB_STATUSES, KeboolaState
from teckochecker.simulator.openai_state import BATCH_STATUSES, OpenAIState
from teckochecker.simulator.timeline import SimulatorInputError, check_status
from teckochecker.simulator.webhooks import WebhookState


@dataclass
class SimSettings:
    latency_ms: float = 0.0
    batch_duration: float = 5.0
    batch_final_status: str = "completed"
    batch_request_total: int = 100
    cancel_duration: float = 1.0
    job_duration: float = 3.0
    job_final_status: str = "success"
    search_delay: float = 0.0
    fault_seed: int = 0

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise SimulatorInputError(f"unknown setting {name!r}; known: {', '.join(known)}")
            if name == "batch_final_status":
                check_status(value, BATCH_STATUSES, "batch status")
            elif name == "job_final_status":
                check_status(value, JOB_STATUSES, "job status")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise SimulatorInputError(f"{name} must be a number of 0 or more, got {value!r}")
        for name, value in changes.items():
            setattr(self, name, int(value) if name in ("batch_request_total", "fault_seed") else value)

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class SimulatorState(WebhookState, OpenAIState, KeboolaState, FaultState):
    """Everything the simulator knows, behind one lock (each operation is short)."""

    def __init__(self, **defaults: Any) -> None:
        """`defaults` are settings (see SimSettings) that survive a reset, such as a server-wide latency."""
        self._lock = threading.Lock()
        SimSettings().update(defaults)
        self._defaults = defaults
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.settings = SimSettings()
            self.settings.update(self._defaults)
            self._reset_openai()
            self._reset_keboola()
            self._reset_faults(self.settings.fault_seed)
            self._reset_webhooks()

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.settings.update(changes)
            if "fault_seed" in changes:
                self._seed_faults(self.settings.fault_seed)
            return self.settings.describe()

    @property
    def latency(self) -> float:
        return self.settings.latency_ms / 1000
