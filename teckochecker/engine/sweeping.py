"""List sweeps: refresh many watched batches of one key with `GET /batches` pages instead of one GET each.

OpenAI lists a key's batches newest first, 100 full batch objects a page, with an `after` cursor. When a
key's watched unfinished batches are recent, a few pages refresh hundreds of them. When they are old or
scattered among many unwatched batches, pages bring little, and one GET per batch is cheaper. So:

- Beat's census turns a key's sweep mode on when it watches at least SWEEP_MIN_WATCHED unfinished
  batches (and the key is not in its back-off after a sweep that did not pay).
- A sweep pages from the newest until every wanted batch has been seen, or the page is past the oldest
  wanted batch's `created_at`, or SWEEP_MAX_PAGES; the batches it did not find are asked for one by one.
- A sweep that brings fewer than SWEEP_MIN_FOUND_PER_PAGE wanted batches a page after its first
  SWEEP_PROBE_PAGES stops at once (single GETs take over) and turns the key's sweep mode off for
  SWEEP_RETRY_AFTER, so a key whose layout does not suit sweeps costs only those few probe pages. Only a
  sweep that wanted enough of the key's watched batches can tell that: had they filled the list, its pages
  would have brought SWEEP_MIN_FOUND_PER_PAGE each. A smaller one (a few jobs due at once, a short window)
  finds little whatever the layout, and its probe says nothing about the key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from teckochecker.clients.errors import ServiceError
from teckochecker.clients.openai_batches import LIST_PAGE_LIMIT, Batch, BatchPage
from teckochecker.engine.keys import ensure_key_states
from teckochecker.models import BATCH_TERMINAL_STATUSES, JobBatch, JobStatus, OpenAIKeyState, PollingJob

SWEEP_MIN_WATCHED = 200
# A group sweeps only when it wants at least this many batches: below, a handful of GETs is cheaper.
SWEEP_MIN_WANTED = 16
SWEEP_MAX_PAGES = 1000
SWEEP_PROBE_PAGES = 3
SWEEP_MIN_FOUND_PER_PAGE = 4
SWEEP_RETRY_AFTER = timedelta(hours=1)
# A sweep starts this long (at least) before its first job's slot; it learns its real duration as it goes.
SWEEP_LEAD_MIN_SECONDS = 1.0
SWEEP_LEAD_MAX_SECONDS = 60.0

_jobs = PollingJob.__table__
_batches = JobBatch.__table__
_states = OpenAIKeyState.__table__


class SweepEnd(StrEnum):
    COMPLETE = "complete"  # every wanted batch was found
    PASSED_OLDEST = "passed_oldest"  # past the oldest wanted batch: the rest are not in the list
    LIST_END = "list_end"
    MAX_PAGES = "max_pages"
    UNPRODUCTIVE = "unproductive"  # pages brought too few wanted batches: single GETs are cheaper
    NO_BUDGET = "no_budget"
    FAILED = "failed"


@dataclass
class SweepResult:
    wanted: int = 0
    found: dict[str, Batch] = field(default_factory=dict)
    pages: int = 0
    end: SweepEnd = SweepEnd.COMPLETE
    failure: ServiceError | None = None


def sweep(
    list_page: Callable[[str | None], BatchPage],
    wanted: Collection[str],
    oldest_created_at: int | None,
    *,
    spend: Callable[[], bool],
) -> SweepResult:
    """Page through a key's batches for `wanted`; `spend()` takes one request from the budget or says no.

    `oldest_created_at` is the oldest `created_at` among the wanted batches when every one of them is known.
    """
    remaining = set(wanted)
    result = SweepResult(wanted=len(remaining))
    after: str | None = None
    while remaining:
        if result.pages >= SWEEP_MAX_PAGES:
            result.end = SweepEnd.MAX_PAGES
            break
        if not spend():
            result.end = SweepEnd.NO_BUDGET
            break
        try:
            page = list_page(after)
        except ServiceError as error:
            result.end, result.failure = SweepEnd.FAILED, error
            break
        result.pages += 1
        for batch in page.batches:
            if batch.id in remaining:
                remaining.discard(batch.id)
                result.found[batch.id] = batch
        end = _end_after(page, result, bool(remaining), oldest_created_at)
        if end is not None:
            result.end = end
            break
        after = page.last_id
    return result


def _end_after(page: BatchPage, result: SweepResult, more_wanted: bool, oldest: int | None) -> SweepEnd | None:
    if not more_wanted:
        return SweepEnd.COMPLETE
    if result.pages >= SWEEP_PROBE_PAGES and len(result.found) < result.pages * SWEEP_MIN_FOUND_PER_PAGE:
        return SweepEnd.UNPRODUCTIVE
    if not page.has_more:
        return SweepEnd.LIST_END
    last = page.batches[-1].created_at
    if oldest is not None and last is not None and last < oldest:
        return SweepEnd.PASSED_OLDEST
    return None


def record_sweep(session: Session, key_id: int, result: SweepResult, seconds: float, now: datetime) -> None:
    """Remember how the key's sweep went: its lead time, and whether sweeps still pay."""
    ensure_key_states(session, [key_id])
    values: dict[str, object] = {
        "last_sweep_at": now,
        "last_sweep_pages": result.pages,
        "last_sweep_found": len(result.found),
        # Start the next sweep early enough to end by its first job's slot, with room for a slower run.
        "sweep_lead_seconds": min(SWEEP_LEAD_MAX_SECONDS, max(SWEEP_LEAD_MIN_SECONDS, 1.5 * seconds + 0.5)),
    }
    if result.end is SweepEnd.UNPRODUCTIVE and _probe_tells(session, key_id, result.wanted):
        values.update(sweep_mode=False, sweep_retry_at=now + SWEEP_RETRY_AFTER)
    session.execute(update(_states).where(_states.c.secret_id == key_id).values(**values))


_WATCHED_BY_KEY = (
    select(_jobs.c.openai_secret_id, func.count())
    .select_from(_jobs.join(_batches, _batches.c.job_id == _jobs.c.id))
    .where(_jobs.c.status == JobStatus.ACTIVE.value, _batches.c.status.not_in(sorted(BATCH_TERMINAL_STATUSES)))
    .group_by(_jobs.c.openai_secret_id)
)
_WATCHED_OF_KEY = _WATCHED_BY_KEY.where(_jobs.c.openai_secret_id == bindparam("key_id"))


def _probe_tells(session: Session, key_id: int, wanted: int) -> bool:
    """Whether a sweep that wanted `wanted` batches and found too few says the key's layout does not suit
    sweeps: only if, with the key's watched batches filling its list, its pages would have found enough."""
    row = session.execute(_WATCHED_OF_KEY, {"key_id": key_id}).first()
    watched = row[1] if row is not None else 0
    return wanted * LIST_PAGE_LIMIT >= watched * SWEEP_MIN_FOUND_PER_PAGE


def refresh_sweep_modes(session: Session, now: datetime) -> dict[int, bool]:
    """Beat's census: sweep the keys that watch enough unfinished batches and are not backing off."""
    watched = dict(session.execute(_WATCHED_BY_KEY).all())
    ensure_key_states(session, sorted(watched))
    modes = {}
    for key_id, retry_at in session.execute(select(_states.c.secret_id, _states.c.sweep_retry_at)).all():
        modes[key_id] = watched.get(key_id, 0) >= SWEEP_MIN_WATCHED and (retry_at is None or retry_at <= now)
    if modes:
        session.execute(
            update(_states).where(_states.c.secret_id == bindparam("key_id")).values(sweep_mode=bindparam("mode")),
            [{"key_id": key_id, "mode": mode} for key_id, mode in modes.items()],
        )
    return modes
