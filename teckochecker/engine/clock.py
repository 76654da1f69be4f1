"""The clock that decides ownership: the database's.

Leases, claims and the Keboola trigger's "have I already tried?" all compare times written by different
machines. Taking every such time from the database keeps a worker or beat whose clock is off (by 30 s,
say) from stealing a live lease or misjudging how long ago a Keboola job was requested. SQLite is the
embedded single-machine default, whose processes share one clock: there it is this machine's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from teckochecker.db import utcnow


def database_now(session: Session) -> datetime:
    """The database's current time (timezone-aware UTC), read in the session's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.statement_timestamp()))
    return utcnow()
