"""`GET /api/stats`: how many jobs, batches and secrets there are, and what happened in the last hour."""

from __future__ import annotations

from typing import Any

from api.blueprint import Blueprint
from api.database import UnitOfWorkView, api_state, db_session
from api.errors import documents_errors
from api.schemas import StatsSchema
from teckochecker.services.stats import collect_stats

blp = Blueprint("stats", __name__, url_prefix="/api/stats", description="Counts across the installation.")


@blp.route("")
class Statistics(UnitOfWorkView):
    @blp.response(200, StatsSchema)
    @documents_errors(blp, 401)
    def get(self) -> dict[str, Any]:
        """Counts of jobs, batches and secrets, recent activity, and uptime

        Jobs are counted per status (every status listed, zero included), batches per OpenAI status.
        `last_hour` counts checks that found a change and Keboola jobs started in the last hour.
        """
        stats = collect_stats(db_session())
        state = api_state()
        return {
            "jobs": {"total": sum(stats.jobs_by_status.values()), "by_status": stats.jobs_by_status},
            "batches": {"total": sum(stats.batches_by_status.values()), "by_status": stats.batches_by_status},
            "secrets": stats.secrets,
            "last_hour": {"checks": stats.checks_last_hour, "keboola_triggers": stats.keboola_triggers_last_hour},
            "uptime_seconds": round(state.uptime_seconds, 3),
            "started_at": state.started_at,
        }
