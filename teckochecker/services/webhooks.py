"""OpenAI webhooks in: verify the signature, drop replays, and mark the jobs that watch the batch as due now.

A webhook is a hint, never the truth: it only moves `next_check_at` of the active jobs watching the batch to
now, and the engine's normal check asks OpenAI and decides exactly as a poll would. So a validly signed event
for a batch that has not finished changes nothing, and a lost webhook costs at most one interval.

Signatures follow Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), checked with the
`standardwebhooks` library against every stored `openai_webhook` secret (several OpenAI projects, rotation),
with its 5-minute timestamp tolerance.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from teckochecker.db import UTCDateTime, utcnow
from teckochecker.engine.wakeups import announcement
from teckochecker.errors import TeckoError
from teckochecker.models import (
    BATCH_TERMINAL_STATUSES,
    JobBatch,
    JobStatus,
    PollingJob,
    Secret,
    SecretType,
    WebhookDelivery,
)
from teckochecker.vault import Vault

WEBHOOK_PATH = "/api/webhooks/openai"
# The events to select in OpenAI's dashboard; any other type is acknowledged and ignored.
BATCH_EVENTS = ("batch.completed", "batch.failed", "batch.cancelled", "batch.expired")
MAX_BODY_BYTES = 64 * 1024
# Far longer than the library's 5-minute tolerance, so a replay inside the tolerance is always caught.
REMEMBER_DELIVERIES = timedelta(hours=24)
SIGNING_SECRET_PREFIX = "whsec_"
SIGNING_SECRET_MIN_BYTES = 16
WEBHOOK_ID_MAX_LENGTH = 255

# A moment: a time from Python (SQLite) or the database's clock as an SQL expression (PostgreSQL).
Moment = datetime | ColumnElement[Any]

_jobs = PollingJob.__table__
_batches = JobBatch.__table__
_deliveries = WebhookDelivery.__table__
_secrets = Secret.__table__


class WebhookRefused(TeckoError):
    """The request is not a validly signed webhook: answered 400, and nothing is done."""


class Outcome(enum.StrEnum):
    MARKED_DUE = "marked_due"  # the jobs watching the batch are due now (possibly none: an unknown batch)
    REPLAY = "replay"  # this webhook-id was seen before
    IGNORED = "ignored"  # not a batch event


@dataclass(frozen=True)
class Receipt:
    outcome: Outcome
    event_type: str
    jobs_due: int = 0


def signing_secret_problem(value: str) -> str | None:
    """Why `value` is not a Standard Webhooks signing secret (`whsec_` + base64 of the key), or None."""
    if not value.startswith(SIGNING_SECRET_PREFIX):
        return f"an OpenAI webhook signing secret starts with {SIGNING_SECRET_PREFIX} (copy it from OpenAI's dashboard)"
    encoded = value[len(SIGNING_SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"the part after {SIGNING_SECRET_PREFIX} must be base64; check what was pasted"
    if len(key) < SIGNING_SECRET_MIN_BYTES:
        return f"the signing secret is too short ({len(key)} bytes of key); check what was pasted"
    return None


_SIGNING_SECRETS = (
    select(_secrets.c.id, _secrets.c.name, _secrets.c.encrypted_value)
    .where(_secrets.c.type == SecretType.OPENAI_WEBHOOK.value)
    .order_by(_secrets.c.id)
)


@functools.lru_cache(maxsize=64)
def _verifier(vault: Vault, secret_name: str, encrypted_value: str) -> Webhook:
    """The verifier of one stored signing secret. Kept per ciphertext (an updated secret has a new one): the
    decryption and key decoding cost as much as the rest of a webhook's handling. The key never leaves the
    process, as with a secret read from the environment."""
    return Webhook(vault.decrypt(encrypted_value, secret_name=secret_name))


def signing_secrets(session: Session, vault: Vault) -> list[tuple[int, Webhook]]:
    """Every stored signing secret, as (id, verifier). Empty: webhooks are not accepted at all."""
    rows = session.connection().execute(_SIGNING_SECRETS)
    return [(row.id, _verifier(vault, row.name, row.encrypted_value)) for row in rows]


def verify(secrets: list[tuple[int, Webhook]], body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """The id of the secret that signed the request, and the event; WebhookRefused otherwise."""
    wanted = {name: headers.get(name) for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    missing = [name for name, value in wanted.items() if not value]
    if missing:
        raise WebhookRefused(f"missing the header(s) {', '.join(missing)}: this is not a Standard Webhooks request")
    if len(wanted["webhook-id"] or "") > WEBHOOK_ID_MAX_LENGTH:
        raise WebhookRefused("the webhook-id header is too long")
    reason = "no stored signing secret matches the signature"
    for secret_id, verifier in secrets:
        try:
            event = verifier.verify(body, wanted)
        except WebhookVerificationError as error:
            if "timestamp" in str(error).lower() or "Signature Headers" in str(error):
                # The timestamp is the same whichever secret is tried.
                raise WebhookRefused(f"{error} (the tolerance is 5 minutes)") from None
            continue
        except ValueError:
            # A malformed signature header or a body that is not UTF-8/JSON (all ValueError subclasses).
            reason = "the signature header or the body is malformed"
            continue
        if not isinstance(event, dict):
            raise WebhookRefused("the event is not a JSON object")
        return secret_id, event
    raise WebhookRefused(reason)


def _delivery_insert(dialect: str, now: Moment) -> Any:
    """Record the delivery (parameters webhook_id, event_type, secret_id), returning its id only when it was not
    recorded before. Atomic under concurrency."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(_deliveries)
        .values(
            webhook_id=bindparam("webhook_id"),
            event_type=bindparam("event_type"),
            received_at=now,
            secret_id=bindparam("secret_id"),
        )
        .on_conflict_do_nothing(index_elements=["webhook_id"])
        .returning(_deliveries.c.webhook_id)
    )


def _mark_due(now: Moment) -> Any:
    """The UPDATE that makes every active job watching the batch (parameter batch_id), still unfinished in our
    records, due now and hinted. One UPDATE on the batch-id index; a job already due keeps its earlier time.
    The hint makes the engine check the job on its own, and again after a check already running when the
    webhook came."""
    watching = (
        select(_batches.c.job_id)
        .where(_batches.c.batch_id == bindparam("batch_id"), _batches.c.status.not_in(list(BATCH_TERMINAL_STATUSES)))
        .scalar_subquery()
    )
    due = case((_jobs.c.next_check_at.is_not(None) & (_jobs.c.next_check_at < now), _jobs.c.next_check_at), else_=now)
    return (
        update(_jobs)
        .where(_jobs.c.id.in_(watching), _jobs.c.status == JobStatus.ACTIVE.value)
        .values(next_check_at=due, hinted_at=now)
    )


def _recorded_and_marked() -> tuple[Any, Any]:
    """PostgreSQL, one statement each at the database's clock: (record only; record, and only if that was new,
    mark the jobs due and announce them to the dispatcher when there are any). Each returns how many rows it
    recorded, and the second also how many jobs it marked.

    Both also make their transaction commit without waiting for the disk (`synchronous_commit` off, for this
    transaction only). A transaction that announces holds PostgreSQL's one notification lock from its commit
    until the commit is on disk, so in a burst each webhook's commit waited for the flush of the one before it
    (docs/BENCHMARKS.md: most of PostgreSQL's sessions were seen waiting for that lock). What such a commit
    risks is small: if PostgreSQL itself crashes within a fraction of a second after the answer, the hint and
    the replay record are lost. The job's next poll then finds the batch (a lost webhook costs at most one
    interval), and a replay is harmless."""
    now = func.statement_timestamp()
    unflushed = func.set_config("synchronous_commit", "off", True)
    delivery = _delivery_insert("postgresql", now).cte("delivery")
    recorded = select(func.count()).select_from(delivery).scalar_subquery()
    marked = _mark_due(now).where(exists(select(delivery.c.webhook_id))).returning(_jobs.c.id).cte("marked")
    due = select(func.count()).select_from(marked).scalar_subquery()
    announced = select(announcement()).select_from(marked).limit(1).scalar_subquery()
    return select(recorded, unflushed), select(recorded, due, announced, unflushed)


# Built once: a webhook only binds its values (building and keying a statement per request cost a tenth of it).
_RECORD, _RECORD_AND_MARK = _recorded_and_marked()
_SQLITE_RECORD = _delivery_insert("sqlite", bindparam("now", type_=UTCDateTime()))
_MARK_DUE_AT = _mark_due(bindparam("now", type_=UTCDateTime()))


def forget_old_deliveries(session: Session, now: datetime) -> int:
    """Forget ids older than REMEMBER_DELIVERIES, except the newest (it says when the last webhook came).

    Beat runs this, not the requests, so concurrent deliveries never contend for the same old rows."""
    newest = select(func.max(_deliveries.c.received_at)).scalar_subquery()
    return session.execute(
        delete(_deliveries).where(
            _deliveries.c.received_at < now - REMEMBER_DELIVERIES, _deliveries.c.received_at < newest
        )
    ).rowcount


def mark_batch_jobs_due(session: Session, batch_id: str, now: datetime) -> int:
    """Make the active jobs that watch `batch_id` due now and hinted (see `_mark_due`); returns how many."""
    return session.execute(_MARK_DUE_AT, {"batch_id": batch_id, "now": now}).rowcount


def _record(session: Session, webhook_id: str, event_type: str, secret_id: int, batch_id: str | None) -> int | None:
    """Record the delivery and, for a batch event, mark the jobs watching the batch due and announce them to
    the dispatcher. None for a replay (nothing changed), else how many jobs are due.

    On PostgreSQL this is one statement: the insert, the update guarded by the insert having happened, and the
    announcement when jobs became due. SQLite takes them one by one."""
    received = {"webhook_id": webhook_id, "event_type": event_type[:64], "secret_id": secret_id}
    # On the session's connection: the ORM layer would add a tenth to a webhook's cost for nothing.
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        now = utcnow()
        if connection.execute(_SQLITE_RECORD, {**received, "now": now}).first() is None:
            return None
        return mark_batch_jobs_due(session, batch_id, now) if batch_id is not None else 0
    if batch_id is None:
        recorded, _ = connection.execute(_RECORD, received).one()
        return 0 if recorded else None
    recorded, due, _announced, _ = connection.execute(_RECORD_AND_MARK, {**received, "batch_id": batch_id}).one()
    return due if recorded else None


def receive(session: Session, secrets: list[tuple[int, Webhook]], body: bytes, headers: Mapping[str, str]) -> Receipt:
    """Verify one webhook against `secrets` (from `signing_secrets`) and act on it; the caller commits.
    WebhookRefused for anything not validly signed."""
    secret_id, event = verify(secrets, body, headers)
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise WebhookRefused("the event has no type")
    data = event.get("data")
    batch_id = data.get("id") if isinstance(data, dict) else None
    if event_type not in BATCH_EVENTS or not isinstance(batch_id, str):
        batch_id = None
    jobs_due = _record(session, headers["webhook-id"], event_type, secret_id, batch_id)
    if jobs_due is None:
        return Receipt(Outcome.REPLAY, event_type)
    if batch_id is None:
        return Receipt(Outcome.IGNORED, event_type)
    return Receipt(Outcome.MARKED_DUE, event_type, jobs_due)


@dataclass(frozen=True)
class WebhookStatus:
    signing_secrets: list[str]
    last_received_at: datetime | None
    last_event_type: str | None


def status(session: Session) -> WebhookStatus:
    """What `webhook info` shows: the stored signing secrets' names and the last valid webhook."""
    names = list(
        session.scalars(select(Secret.name).where(Secret.type == SecretType.OPENAI_WEBHOOK.value).order_by(Secret.id))
    )
    last = session.execute(
        select(_deliveries.c.received_at, _deliveries.c.event_type).order_by(_deliveries.c.received_at.desc()).limit(1)
    ).first()
    return WebhookStatus(names, last.received_at if last else None, last.event_type if last else None)
