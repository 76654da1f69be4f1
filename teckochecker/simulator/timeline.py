"""What both simulated APIs share: timelines of statuses, computed when asked for, and input errors.

A status is never advanced in the background: a batch or job created with a 5 s duration simply reads as
finished once 5 s have passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class SimulatorInputError(ValueError):
    """A control-API request the simulator cannot honour; the message says why."""


def check_status(value: Any, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise SimulatorInputError(f"{value!r} is not a {what}; use one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Step:
    status: str
    at: float
    """Seconds after creation."""


def spread(road: Sequence[str], duration: float) -> list[Step]:
    if len(road) == 1:
        return [Step(road[0], 0.0)]
    return [Step(status, duration * index / (len(road) - 1)) for index, status in enumerate(road)]


def steps_reached(steps: Sequence[Step], elapsed: float) -> list[Step]:
    return [step for step in steps if step.at <= elapsed] or [steps[0]]


def flip_steps(steps: Sequence[Step], status: str, elapsed: float) -> list[Step]:
    kept = steps_reached(steps, elapsed)
    if kept[-1].status == status:
        return kept
    return [*kept, Step(status, max(elapsed, kept[-1].at))]


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
