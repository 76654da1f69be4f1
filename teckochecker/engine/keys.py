"""What the fleet shares about each OpenAI key: its request budget, its 429 pause, and how its batches are
refreshed. One row per key in `openai_key_states`, created when first needed.

The budget is a token bucket kept in the database, so every worker draws from the same one. With a
limit of L requests a minute it holds at most C tokens (a few seconds' worth) and refills at (L − C)/60 a
second: in any 60 s at most C + (L − C) = L requests go out, never more. Updates are compare-and-set on
the row (no lock is held), so they are safe on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from teckochecker.models import OpenAIKeyState

# How many seconds of the budget may go out at once.
BURST_SECONDS = 2.0
_states = OpenAIKeyState.__table__


def ensure_key_states(session: Session, key_ids: list[int]) -> None:
    """Create the rows of keys that have none yet (concurrent creators are harmless)."""
    if not key_ids:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_states).on_conflict_do_nothing(index_elements=["secret_id"])
    session.execute(
        statement, [{"secret_id": key_id, "sweep_mode": False, "sweep_lead_seconds": 2.0} for key_id in key_ids]
    )


@dataclass(frozen=True)
class RequestBudget:
    """OPENAI_MAX_REQUESTS_PER_MINUTE for every key (None: no limit, only 429 pauses)."""

    per_minute: int | None

    @property
    def capacity(self) -> float:
        assert self.per_minute is not None
        return max(1.0, min(float(self.per_minute), self.per_minute / 60 * BURST_SECONDS))

    def take(self, session: Session, key_id: int, wanted: int, now: datetime) -> int:
        """Take up to `wanted` requests from the key's budget now; returns how many may be made (0 when paused)."""
        if wanted <= 0:
            return 0
        for _ in range(20):
            state = session.execute(
                select(_states.c.budget_tokens, _states.c.budget_refilled_at, _states.c.blocked_until).where(
                    _states.c.secret_id == key_id
                )
            ).first()
            if state is None:
                ensure_key_states(session, [key_id])
                continue
            if state.blocked_until is not None and state.blocked_until > now:
                return 0
            if self.per_minute is None:
                return wanted
            available = self._refilled(state.budget_tokens, state.budget_refilled_at, now)
            granted = min(wanted, math.floor(available))
            guard = and_(
                _states.c.secret_id == key_id,
                _same(_states.c.budget_tokens, state.budget_tokens),
                _same(_states.c.budget_refilled_at, state.budget_refilled_at),
            )
            written = session.execute(
                update(_states).where(guard).values(budget_tokens=available - granted, budget_refilled_at=now)
            )
            if written.rowcount == 1:
                return granted
        # Twenty writers raced us for the same key: wait for the next chance rather than spend blindly.
        return 0

    def _refilled(self, tokens: float | None, refilled_at: datetime | None, now: datetime) -> float:
        capacity = self.capacity
        if tokens is None or refilled_at is None:
            return capacity
        rate = (self.per_minute - capacity) / 60 if self.per_minute is not None else 0.0
        elapsed = max(0.0, (now - refilled_at).total_seconds())
        return min(capacity, tokens + rate * elapsed)


def _same(column: ColumnElement, value: object) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def pause_key(session: Session, key_id: int, until: datetime) -> None:
    """A 429: no request with this key, from any worker, until `until` (a later pause wins)."""
    ensure_key_states(session, [key_id])
    session.execute(
        update(_states)
        .where(
            _states.c.secret_id == key_id,
            (_states.c.blocked_until.is_(None)) | (_states.c.blocked_until < bindparam("until")),
        )
        .values(blocked_until=bindparam("until")),
        {"until": until},
    )
