"""How the dashboard writes times and numbers: UTC, with a relative form ("in 42 s", "3 min ago")."""

from __future__ import annotations

from datetime import UTC, datetime

from teckochecker.db import utcnow

_UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def utc_text(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative_text(moment: datetime | None, *, now: datetime | None = None) -> str:
    """The distance from now in its largest whole unit: "in 42 s", "3 min ago", "now"."""
    if moment is None:
        return "—"
    seconds = round((moment - (now or utcnow())).total_seconds())
    if seconds == 0:
        return "now"
    distance = abs(seconds)
    amount, unit = next((distance // size, unit) for size, unit in _UNITS if distance >= size)
    return f"in {amount} {unit}" if seconds > 0 else f"{amount} {unit} ago"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def status_text(status: str) -> str:
    return status.replace("_", " ")
