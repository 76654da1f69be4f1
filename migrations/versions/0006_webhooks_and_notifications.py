"""Webhooks in, notifications out: two secret types, seen webhook ids, job subscriptions, the notification
outbox, a job's last successful check and stall mark, and an index on batch ids for webhook lookups.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TYPES = "type IN ('openai', 'keboola')"
NEW_TYPES = "type IN ('openai', 'keboola', 'openai_webhook', 'notification')"


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("webhook_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("secret_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["secret_id"], ["secrets.id"], name=op.f("fk_webhook_deliveries_secret_id_secrets"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("webhook_id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_secret_id"), ["secret_id"], unique=False)

    op.create_table(
        "job_notifications",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("secret_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["polling_jobs.id"], name=op.f("fk_job_notifications_job_id_polling_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["secret_id"], ["secrets.id"], name=op.f("fk_job_notifications_secret_id_secrets"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("job_id", "secret_id", name=op.f("pk_job_notifications")),
    )
    with op.batch_alter_table("job_notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_notifications_secret_id"), ["secret_id"], unique=False)

    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'sending', 'sent', 'failed')", name=op.f("ck_notification_outbox_state")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["polling_jobs.id"], name=op.f("fk_notification_outbox_job_id_polling_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["secrets.id"], name=op.f("fk_notification_outbox_target_id_secrets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
    )
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notification_outbox_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_notification_outbox_job_id"), ["job_id"], unique=False)
        batch_op.create_index("ix_notification_outbox_state_target_id", ["state", "target_id"], unique=False)

    with op.batch_alter_table("job_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_batches_batch_id"), ["batch_id"], unique=False)

    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("stalled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_polling_jobs_stalled_at"), ["stalled_at"], unique=False)

    with op.batch_alter_table("secrets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notification_events", sa.String(length=255), nullable=True))
        batch_op.drop_constraint(op.f("ck_secrets_type"), type_="check")
        batch_op.create_check_constraint(op.f("ck_secrets_type"), NEW_TYPES)


def downgrade() -> None:
    op.execute("DELETE FROM secrets WHERE type IN ('openai_webhook', 'notification')")
    with op.batch_alter_table("secrets", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_secrets_type"), type_="check")
        batch_op.create_check_constraint(op.f("ck_secrets_type"), OLD_TYPES)
        batch_op.drop_column("notification_events")

    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_polling_jobs_stalled_at"))
        batch_op.drop_column("stalled_at")
        batch_op.drop_column("last_success_at")

    with op.batch_alter_table("job_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_batches_batch_id"))

    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_outbox_state_target_id")
        batch_op.drop_index(batch_op.f("ix_notification_outbox_job_id"))
        batch_op.drop_index(batch_op.f("ix_notification_outbox_created_at"))

    op.drop_table("notification_outbox")
    with op.batch_alter_table("job_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_notifications_secret_id"))

    op.drop_table("job_notifications")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_secret_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_received_at"))

    op.drop_table("webhook_deliveries")
