"""What a notification says: one message per target for everything it is told at once.

Each event names the job (name and id), its batches (counts and the failed ids), its Keboola job (id, and a
link when the project is known), the error (redacted) and a link to the job. A burst is one message listing
the first MAX_LISTED events and counting the rest by kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from teckochecker.notifications.delivery import Message
from teckochecker.notifications.events import FAILURE_KINDS, NotificationKind

MAX_LISTED = 20
# The job's page in the dashboard (it signs the reader in first).
JOB_LINK_PATH = "/jobs/{job_id}"

_HEADLINES = {
    NotificationKind.COMPLETED: "completed: its Keboola job succeeded",
    NotificationKind.COMPLETED_WITH_FAILURES: "completed with failures: its Keboola job succeeded, some batches failed",
    NotificationKind.FAILED: "failed",
    NotificationKind.KEY_REJECTED: "failed: a key was rejected, and a person must replace it",
    NotificationKind.KEBOOLA_ERROR: "failed: its Keboola job ended in error",
    NotificationKind.STALLED: "has had no successful check for a while: the service it depends on may be down",
    NotificationKind.RECOVERED: "recovered: checks succeed again",
}
_SEVERITY = {
    NotificationKind.COMPLETED: "success",
    NotificationKind.COMPLETED_WITH_FAILURES: "warning",
    NotificationKind.STALLED: "warning",
    NotificationKind.RECOVERED: "success",
    **dict.fromkeys(FAILURE_KINDS, "failure"),
}
_SEVERITY_ORDER = ("info", "success", "warning", "failure")
_WITH_DETAIL = FAILURE_KINDS | {NotificationKind.STALLED}


@dataclass(frozen=True)
class JobFacts:
    """What a notification tells of a job, read when it is sent."""

    id: int
    name: str
    batch_total: int
    batch_completed: int
    failed_batch_ids: tuple[str, ...]
    keboola_job_id: str | None
    keboola_link: str | None
    job_link: str | None


@dataclass(frozen=True)
class Item:
    kind: NotificationKind
    detail: str  # the event's message, already redacted
    job: JobFacts


def job_link(public_url: str | None, job_id: int) -> str | None:
    return f"{public_url.rstrip('/')}{JOB_LINK_PATH.format(job_id=job_id)}" if public_url else None


def _describe(item: Item) -> list[str]:
    job = item.job
    failed = len(job.failed_batch_ids)
    batches = f"Batches: {job.batch_total} ({job.batch_completed} completed, {failed} failed"
    batches += f": {', '.join(job.failed_batch_ids)})" if failed else ")"
    lines = [f"Job '{job.name}' (id {job.id}) {_HEADLINES[item.kind]}", f"  {batches}"]
    if job.keboola_job_id:
        where = f": {job.keboola_link}" if job.keboola_link else ""
        lines.append(f"  Keboola job {job.keboola_job_id}{where}")
    if item.kind in _WITH_DETAIL and item.detail:
        lines.append(f"  {'Error' if item.kind in FAILURE_KINDS else 'Detail'}: {item.detail}")
    if item.kind == NotificationKind.RECOVERED and item.detail:
        lines.append(f"  {item.detail}")
    if job.job_link:
        lines.append(f"  {job.job_link}")
    return lines


def _counted(kinds: Counter[NotificationKind]) -> str:
    return ", ".join(f"{count} {kind.value}" for kind, count in sorted(kinds.items(), key=lambda kc: -kc[1]))


def render(items: Sequence[Item]) -> Message:
    """One message for everything a target is told at once."""
    if not items:
        raise ValueError("nothing to notify")
    severity = max((_SEVERITY[item.kind] for item in items), key=_SEVERITY_ORDER.index)
    if len(items) == 1:
        (item,) = items
        title = f"TeckoChecker: job '{item.job.name}' {item.kind.value.replace('_', ' ')}"
    else:
        title = f"TeckoChecker: {len(items)} job events ({_counted(Counter(item.kind for item in items))})"
    blocks = ["\n".join(_describe(item)) for item in items[:MAX_LISTED]]
    rest = items[MAX_LISTED:]
    if rest:
        blocks.append(f"… and {len(rest)} more: {_counted(Counter(item.kind for item in rest))}.")
    return Message(title=title, body="\n\n".join(blocks), severity=severity)
