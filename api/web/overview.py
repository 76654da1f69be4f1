"""`/`: the installation at a glance: its parts, its jobs, its activity, and what needs a person."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, render_template

from api.database import api_state, db_session
from api.health import check_broker, check_database, check_workers
from api.web.charts import activity_chart
from teckochecker.db import utcnow
from teckochecker.services.insights import activity_series, jobs_needing_attention, reaction_times
from teckochecker.services.stats import jobs_by_status

blp = Blueprint("overview", __name__)

HOUR_SLICES = 12  # five minutes each
DAY_SLICES = 24  # an hour each


@blp.route("/")
def overview() -> str:
    session = db_session()
    state = api_state()
    now = utcnow()
    counts = jobs_by_status(session)
    attention, attention_total = jobs_needing_attention(session)
    return render_template(
        "overview.html",
        parts={
            "Database": check_database(),
            "Broker": check_broker(state.settings),
            "Workers": check_workers(),
        },
        mode=state.settings.mode,
        uptime_seconds=state.uptime_seconds,
        started_at=state.started_at,
        counts=counts,
        total_jobs=sum(counts.values()),
        hour_chart=activity_chart(
            "Last hour", activity_series(session, timedelta(hours=1), HOUR_SLICES, now=now), "%H:%M"
        ),
        day_chart=activity_chart(
            "Last 24 hours", activity_series(session, timedelta(days=1), DAY_SLICES, now=now), "%H:00"
        ),
        reaction=reaction_times(session, now=now),
        attention=attention,
        attention_total=attention_total,
    )
