"""Initial schema: secrets, polling jobs, their batches and their event history.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("encrypted_value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("type IN ('openai', 'keboola')", name=op.f("ck_secrets_type")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secrets")),
        sa.UniqueConstraint("name", name=op.f("uq_secrets_name")),
    )
    op.create_table(
        "polling_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("openai_secret_id", sa.Integer(), nullable=False),
        sa.Column("keboola_secret_id", sa.Integer(), nullable=False),
        sa.Column("keboola_stack_url", sa.String(length=2048), nullable=False),
        sa.Column("keboola_component_id", sa.String(length=255), nullable=False),
        sa.Column("keboola_configuration_id", sa.String(length=255), nullable=False),
        sa.Column("poll_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("keboola_job_id", sa.String(length=64), nullable=True),
        sa.Column("keboola_job_status", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'triggering', 'completed', 'completed_with_failures', 'failed')",
            name=op.f("ck_polling_jobs_status"),
        ),
        sa.CheckConstraint("poll_interval_seconds > 0", name=op.f("ck_polling_jobs_poll_interval_positive")),
        sa.ForeignKeyConstraint(
            ["keboola_secret_id"],
            ["secrets.id"],
            name=op.f("fk_polling_jobs_keboola_secret_id_secrets"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["openai_secret_id"],
            ["secrets.id"],
            name=op.f("fk_polling_jobs_openai_secret_id_secrets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_polling_jobs")),
    )
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_polling_jobs_keboola_secret_id"), ["keboola_secret_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_polling_jobs_openai_secret_id"), ["openai_secret_id"], unique=False)
        batch_op.create_index("ix_polling_jobs_status_next_check_at", ["status", "next_check_at"], unique=False)

    op.create_table(
        "job_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("request_total", sa.Integer(), nullable=False),
        sa.Column("request_completed", sa.Integer(), nullable=False),
        sa.Column("request_failed", sa.Integer(), nullable=False),
        sa.Column("output_file_id", sa.String(length=255), nullable=True),
        sa.Column("error_file_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["polling_jobs.id"],
            name=op.f("fk_job_batches_job_id_polling_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_batches")),
        sa.UniqueConstraint("job_id", "batch_id", name=op.f("uq_job_batches_job_id_batch_id")),
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["polling_jobs.id"],
            name=op.f("fk_job_events_job_id_polling_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index("ix_job_events_job_id_id", ["job_id", "id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index("ix_job_events_job_id_id")
        batch_op.drop_index(batch_op.f("ix_job_events_created_at"))

    op.drop_table("job_events")
    op.drop_table("job_batches")
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_polling_jobs_status_next_check_at")
        batch_op.drop_index(batch_op.f("ix_polling_jobs_openai_secret_id"))
        batch_op.drop_index(batch_op.f("ix_polling_jobs_keboola_secret_id"))

    op.drop_table("polling_jobs")
    op.drop_table("secrets")
