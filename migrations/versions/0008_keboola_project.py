"""The Keboola project of a job's Keboola job, as Keboola reports it, so the dashboard can link to that job.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keboola_project_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("polling_jobs", schema=None) as batch_op:
        batch_op.drop_column("keboola_project_id")
