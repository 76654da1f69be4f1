"""The database schema. Alembic owns it: every change here needs a named revision in migrations/."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from teckochecker.db import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 (read by SQLAlchemy, never mutated)


class SecretType(enum.StrEnum):
    OPENAI = "openai"
    KEBOOLA = "keboola"
    # A Standard Webhooks signing secret (`whsec_…`) of one OpenAI project: verifies OpenAI's webhooks.
    OPENAI_WEBHOOK = "openai_webhook"
    # An Apprise URL (Slack, Teams, email, …): where notifications go. It holds credentials, hence a secret.
    NOTIFICATION = "notification"


class TokenRole(enum.StrEnum):
    """What an API token may do: `read` sees everything, `write` also changes things."""

    READ = "read"
    WRITE = "write"


class JobStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    TRIGGERING = "triggering"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    FAILED = "failed"


# Ids are 32-bit integers in the database; a larger number names nothing (and would overflow the driver).
MAX_ID = 2**31 - 1

FINISHED_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_FAILURES, JobStatus.FAILED})

# OpenAI's own batch statuses, plus `pending` (not yet checked) and `not_found` (OpenAI answered 404).
BATCH_PENDING = "pending"
BATCH_NOT_FOUND = "not_found"
BATCH_SUCCEEDED_STATUSES = frozenset({"completed"})
BATCH_FAILED_STATUSES = frozenset({"failed", "expired", "cancelled", BATCH_NOT_FOUND})
BATCH_TERMINAL_STATUSES = BATCH_SUCCEEDED_STATUSES | BATCH_FAILED_STATUSES


def _in(column: str, values: enum.EnumMeta) -> str:
    return f"{column} IN ({', '.join(repr(member.value) for member in values)})"  # type: ignore[attr-defined]


class Secret(Base):
    __tablename__ = "secrets"
    __table_args__ = (CheckConstraint(_in("type", SecretType), name="type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    encrypted_value: Mapped[str] = mapped_column(Text)
    # A notification target's events, comma-separated (not secret); None: every event. Other types: None.
    notification_events: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Secret(id={self.id!r}, name={self.name!r}, type={self.type!r})"


class PollingJob(Base):
    __tablename__ = "polling_jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        CheckConstraint("poll_interval_seconds > 0", name="poll_interval_positive"),
        # "Active jobs due now, oldest first" is an index range scan, even at 100,000 jobs.
        Index("ix_polling_jobs_status_next_check_at", "status", "next_check_at"),
        # The dashboard's job list sorts by next check or creation time and shows one page: with these, the
        # first page of 100,000 jobs is an index scan that stops after one page, not a sort of every row.
        Index("ix_polling_jobs_next_check_at_id", "next_check_at", "id"),
        Index("ix_polling_jobs_created_at_id", "created_at", "id"),
        # "Is a job of this key due soon?" decides when a key's list sweep starts.
        Index("ix_polling_jobs_openai_secret_id_status_next_check_at", "openai_secret_id", "status", "next_check_at"),
        # "Which jobs of this sweep's group has a webhook hinted?": only the few hinted jobs are in it.
        Index(
            "ix_polling_jobs_hinted_lease_token",
            "lease_token",
            postgresql_where=text("hinted_at IS NOT NULL"),
            sqlite_where=text("hinted_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    openai_secret_id: Mapped[int] = mapped_column(ForeignKey("secrets.id", ondelete="RESTRICT"), index=True)
    keboola_secret_id: Mapped[int] = mapped_column(ForeignKey("secrets.id", ondelete="RESTRICT"), index=True)
    keboola_stack_url: Mapped[str] = mapped_column(String(2048))
    keboola_component_id: Mapped[str] = mapped_column(String(255))
    keboola_configuration_id: Mapped[str] = mapped_column(String(255))
    poll_interval_seconds: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default=JobStatus.ACTIVE.value)
    next_check_at: Mapped[datetime | None]
    last_check_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None]
    keboola_job_id: Mapped[str | None] = mapped_column(String(64))
    keboola_job_status: Mapped[str | None] = mapped_column(String(32))
    # Learnt from Keboola's own view of the job; the dashboard's link to the job needs it.
    keboola_project_id: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    # The engine's lease: the holder of `lease_token` may work on the job until `lease_until`. A dead
    # worker's lease simply expires, and the dispatcher hands the job out again.
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None]
    # Set, and committed, just before the Keboola job is requested: after a crash it says "look for the
    # job you may have started before starting another one".
    trigger_attempted_at: Mapped[datetime | None]
    # When a check last got an answer for every batch it asked about; the stall alert counts from it.
    last_success_at: Mapped[datetime | None]
    # Set while a "no successful check" alert stands, so it is sent once and its recovery once.
    stalled_at: Mapped[datetime | None] = mapped_column(index=True)
    # When a webhook last said one of the job's batches finished, or a user asked to check the job now, until
    # a check that started after it has run. A hinted job is checked on its own (single GETs, at once), never
    # held back for its key's sweep.
    hinted_at: Mapped[datetime | None]

    openai_secret: Mapped[Secret] = relationship(foreign_keys=[openai_secret_id], lazy="selectin")
    keboola_secret: Mapped[Secret] = relationship(foreign_keys=[keboola_secret_id], lazy="selectin")
    batches: Mapped[list[JobBatch]] = relationship(
        back_populates="job", order_by="JobBatch.id", cascade="all, delete-orphan", passive_deletes=True
    )
    notification_targets: Mapped[list[Secret]] = relationship(
        secondary="job_notifications", order_by="Secret.id", lazy="selectin", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"PollingJob(id={self.id!r}, name={self.name!r}, status={self.status!r})"


class JobBatch(Base):
    __tablename__ = "job_batches"
    __table_args__ = (UniqueConstraint("job_id", "batch_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("polling_jobs.id", ondelete="CASCADE"))
    # Indexed for webhooks, which name a batch and ask for the jobs that watch it.
    batch_id: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(32), default=BATCH_PENDING)
    request_total: Mapped[int] = mapped_column(default=0)
    request_completed: Mapped[int] = mapped_column(default=0)
    request_failed: Mapped[int] = mapped_column(default=0)
    output_file_id: Mapped[str | None] = mapped_column(String(255))
    error_file_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]
    # OpenAI's `created_at` (Unix seconds): a list sweep, newest first, can stop once it is past the oldest.
    openai_created_at: Mapped[int | None]

    job: Mapped[PollingJob] = relationship(back_populates="batches")

    @property
    def is_terminal(self) -> bool:
        return self.status in BATCH_TERMINAL_STATUSES

    def __repr__(self) -> str:
        return f"JobBatch(job_id={self.job_id!r}, batch_id={self.batch_id!r}, status={self.status!r})"


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("polling_jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def __repr__(self) -> str:
        return f"JobEvent(job_id={self.job_id!r}, kind={self.kind!r})"


class OpenAIKeyState(Base):
    """What the engine knows about one OpenAI key, shared by every worker and beat.

    How its batches are refreshed (list sweeps or one GET per batch, chosen from what each costs), and its
    request budget: a token bucket (OPENAI_MAX_REQUESTS_PER_MINUTE) and, after a 429, a pause for the
    whole fleet until `blocked_until`.
    """

    __tablename__ = "openai_key_states"

    secret_id: Mapped[int] = mapped_column(ForeignKey("secrets.id", ondelete="CASCADE"), primary_key=True)
    sweep_mode: Mapped[bool] = mapped_column(default=False)
    # After a sweep that did not pay, single GETs until then.
    sweep_retry_at: Mapped[datetime | None]
    # How long before its first job's slot a sweep starts, so that it ends by that slot.
    sweep_lead_seconds: Mapped[float] = mapped_column(default=2.0)
    last_sweep_at: Mapped[datetime | None]
    last_sweep_pages: Mapped[int | None]
    last_sweep_found: Mapped[int | None]
    budget_tokens: Mapped[float | None]
    budget_refilled_at: Mapped[datetime | None]
    blocked_until: Mapped[datetime | None]


class WorkerHeartbeat(Base):
    """When each worker last reported: lets the API's health check see workers on other machines."""

    __tablename__ = "worker_heartbeats"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(index=True)


class JobNotification(Base):
    """A job's subscription to a notification target (a `notification` secret)."""

    __tablename__ = "job_notifications"

    job_id: Mapped[int] = mapped_column(ForeignKey("polling_jobs.id", ondelete="CASCADE"), primary_key=True)
    # RESTRICT: a target in use cannot be deleted, as a job's keys cannot.
    secret_id: Mapped[int] = mapped_column(ForeignKey("secrets.id", ondelete="RESTRICT"), primary_key=True, index=True)


class NotificationState(enum.StrEnum):
    PENDING = "pending"  # waiting to be sent
    SENDING = "sending"  # an attempt has begun (committed before the call): never attempted twice
    SENT = "sent"
    FAILED = "failed"  # retries ran out, or a worker stopped during an attempt: recorded on the job


class OutboxNotification(Base):
    """One event to tell one target, written in the transaction of the event itself (the outbox pattern)."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        CheckConstraint(_in("state", NotificationState), name="state"),
        # "Targets with something to send" and "this target's rows" are both index range scans.
        Index("ix_notification_outbox_state_target_id", "state", "target_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("secrets.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(ForeignKey("polling_jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=NotificationState.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    # Like a job's lease: beat hands the target's rows to one task (the token is its id) until lease_until.
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    sent_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """A webhook that passed signature verification, by its `webhook-id`: a replay finds its row and does nothing."""

    __tablename__ = "webhook_deliveries"

    webhook_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(index=True)
    # Which signing secret verified it (None once that secret is deleted).
    secret_id: Mapped[int | None] = mapped_column(ForeignKey("secrets.id", ondelete="SET NULL"), index=True)


class ApiToken(Base):
    """A named API token. Only the SHA-256 of the token is stored: the token itself is shown once, at creation."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_in("role", TokenRole), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # Hex SHA-256 of a 256-bit random token: a fast hash is right here, since nothing can be guessed.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!r}, name={self.name!r}, role={self.role!r})"
