"""Named API tokens with a role (stored as SHA-256 hashes), and the indexes the dashboard's job list sorts by.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('read', 'write')", name=op.f("ck_api_tokens_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_polling_jobs_next_check_at_id", ["next_check_at", "id"], unique=False)
        batch_op.create_index("ix_polling_jobs_created_at_id", ["created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_polling_jobs_created_at_id")
        batch_op.drop_index("ix_polling_jobs_next_check_at_id")
    op.drop_table("api_tokens")
