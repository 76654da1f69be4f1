"""The events a notification target can choose, and which job events they come from."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

from teckochecker.errors import ValidationError


class NotificationKind(enum.StrEnum):
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    # Every failure of a job. The two below are failures too, narrowed for targets that want only them.
    FAILED = "failed"
    KEY_REJECTED = "key_rejected"  # OpenAI or Keboola refused a key: a person must replace it
    KEBOOLA_ERROR = "keboola_error"  # the Keboola job ran and ended in error
    STALLED = "stalled"  # no successful check for STALL_ALERT_INTERVALS intervals
    RECOVERED = "recovered"  # a check succeeded again after a stall alert


FAILURE_KINDS = frozenset({NotificationKind.FAILED, NotificationKind.KEY_REJECTED, NotificationKind.KEBOOLA_ERROR})
# The job events (models.JobEvent.kind) written for a stall and its end.
STALLED_EVENT = "stalled"
STALL_RECOVERED_EVENT = "stall_recovered"
# What the engine writes when a key is refused (engine/checking.py, engine/triggering.py): the messages are the
# only place that says why a job failed, and tests/notifications drives both through the real engine.
_KEY_REJECTED = re.compile(r"^OpenAI rejected the key|^Keboola refused .*HTTP (401|403)\b")
_KEBOOLA_JOB_ENDED = re.compile(r"^Keboola job \S+ finished with status ")


def notification_kind(event_kind: str, message: str) -> NotificationKind | None:
    """The notification a job event gives, or None for events nobody is told about."""
    if event_kind == NotificationKind.COMPLETED:
        return NotificationKind.COMPLETED
    if event_kind == NotificationKind.COMPLETED_WITH_FAILURES:
        return NotificationKind.COMPLETED_WITH_FAILURES
    if event_kind == "failed":
        if _KEY_REJECTED.search(message):
            return NotificationKind.KEY_REJECTED
        if _KEBOOLA_JOB_ENDED.search(message):
            return NotificationKind.KEBOOLA_ERROR
        return NotificationKind.FAILED
    if event_kind == STALLED_EVENT:
        return NotificationKind.STALLED
    if event_kind == STALL_RECOVERED_EVENT:
        return NotificationKind.RECOVERED
    return None


def wanted_by(kind: NotificationKind, chosen: frozenset[NotificationKind] | None) -> bool:
    """Whether a target that chose `chosen` (None: everything) hears of `kind`; `failed` covers every failure."""
    if chosen is None:
        return True
    return kind in chosen or (kind in FAILURE_KINDS and NotificationKind.FAILED in chosen)


def parse_events(field: str, values: Iterable[str] | str | None) -> frozenset[NotificationKind] | None:
    """`completed,failed` (or a list) as a set of kinds; None, or `all` among them, means every event."""
    if values is None:
        return None
    items = values.split(",") if isinstance(values, str) else list(values)
    names = [str(item).strip().lower() for item in items if str(item).strip()]
    if not names:
        raise ValidationError(field, f"name at least one event, or all; events: {', '.join(NotificationKind)}")
    if "all" in names:
        return None
    chosen = set()
    for name in names:
        try:
            chosen.add(NotificationKind(name))
        except ValueError:
            raise ValidationError(field, f"unknown event {name!r}; events: {', '.join(NotificationKind)}") from None
    return frozenset(chosen)


def stored_events(chosen: frozenset[NotificationKind] | None) -> str | None:
    """The column value for `chosen`: comma-separated in a fixed order, None for every event."""
    if chosen is None:
        return None
    return ",".join(kind.value for kind in NotificationKind if kind in chosen)


def events_of(stored: str | None) -> frozenset[NotificationKind] | None:
    return None if stored is None else frozenset(NotificationKind(name) for name in stored.split(",") if name)
