"""What a check or a trigger run did with a job: the `outcome` label of logs and metrics."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    # Either action.
    SKIPPED = "skipped"  # the job was no longer ours (lease lost, paused, deleted): nothing done
    REFUSED = "refused"  # the service refused for good; the job records why
    TRANSIENT_ERROR = "transient_error"  # worth asking again (Celery retries)
    # Checks.
    CHECKED = "checked"
    ALL_FINISHED = "all_finished"  # every batch has finished: the job moves to `triggering`
    OVER_BUDGET = "over_budget"  # the key's request budget (or a 429 pause) left batches for the next slot
    # Trigger runs.
    STARTED = "started"  # the Keboola job was started, or found where an earlier attempt started it
    WAITING_FOR_SEARCH = "waiting_for_search"  # Keboola's job search may not show an earlier attempt yet
    FOLLOWING = "following"  # the Keboola job runs; looked at again later
    FINISHED_SUCCESS = "finished_success"
    FINISHED_ERROR = "finished_error"
