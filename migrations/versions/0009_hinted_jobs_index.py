"""An index of the jobs a webhook hinted and no check has answered yet: a running list sweep looks for them
among its group every half second, and there are only ever a few.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HINTED = sa.text("hinted_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_polling_jobs_hinted_lease_token",
        "polling_jobs",
        ["lease_token"],
        postgresql_where=HINTED,
        sqlite_where=HINTED,
    )


def downgrade() -> None:
    op.drop_index("ix_polling_jobs_hinted_lease_token", table_name="polling_jobs")
