"""List sweeps and request budgets: what the engine knows about each OpenAI key, and batches' creation times.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "openai_key_states",
        sa.Column("secret_id", sa.Integer(), nullable=False),
        sa.Column("sweep_mode", sa.Boolean(), nullable=False),
        sa.Column("sweep_retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sweep_lead_seconds", sa.Double(), nullable=False),
        sa.Column("last_sweep_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sweep_pages", sa.Integer(), nullable=True),
        sa.Column("last_sweep_found", sa.Integer(), nullable=True),
        sa.Column("budget_tokens", sa.Double(), nullable=True),
        sa.Column("budget_refilled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["secrets.id"],
            name=op.f("fk_openai_key_states_secret_id_secrets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("secret_id", name=op.f("pk_openai_key_states")),
    )
    with op.batch_alter_table("job_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("openai_created_at", sa.Integer(), nullable=True))
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_polling_jobs_openai_secret_id_status_next_check_at",
            ["openai_secret_id", "status", "next_check_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_polling_jobs_openai_secret_id_status_next_check_at")
    with op.batch_alter_table("job_batches", schema=None) as batch_op:
        batch_op.drop_column("openai_created_at")
    op.drop_table("openai_key_states")
