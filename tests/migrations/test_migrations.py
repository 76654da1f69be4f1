"""Alembic owns the schema: one head, upgrades from empty on both databases, no drift from the models."""

import pytest
from sqlalchemy import inspect

from teckochecker.db import make_engine
from teckochecker.schema import check_models_match_migrations, current_revision, head_revisions, reset


def test_there_is_exactly_one_head() -> None:
    assert len(head_revisions()) == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_from_empty_then_models_and_migrations_agree(kind: str, make_database) -> None:
    url = make_database(kind)
    check_models_match_migrations(url)
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revisions()[0]
        tables = set(inspect(engine).get_table_names())
        assert {"secrets", "polling_jobs", "job_batches", "job_events", "api_tokens", "alembic_version"} <= tables
        indexes = {index["name"] for index in inspect(engine).get_indexes("polling_jobs")}
        assert {
            "ix_polling_jobs_status_next_check_at",
            "ix_polling_jobs_next_check_at_id",
            "ix_polling_jobs_created_at_id",
        } <= indexes
    finally:
        engine.dispose()


def test_reset_on_sqlite_recreates_an_empty_schema(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'reset.db'}"
    reset(url)
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revisions()[0]
    finally:
        engine.dispose()
