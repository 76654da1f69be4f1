"""A job's webhook hint: when a webhook last said one of its batches finished, so the engine checks that job
at once on its own instead of waiting for its key's list sweep.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hinted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.drop_column("hinted_at")
