"""The overview's figures: activity per time slice, reaction-time percentiles, and the jobs that need a person."""

from datetime import timedelta

import pytest

from teckochecker.db import utcnow
from teckochecker.models import JobEvent
from teckochecker.services import insights
from teckochecker.services.jobs import JobDraft, create_job
from teckochecker.services.secrets import add_secret


@pytest.fixture
def job(session, settings, vault):
    add_secret(session, vault, name="openai", type="openai", value="sk")
    add_secret(session, vault, name="keboola", type="keboola", value="kbc")
    created = create_job(
        session,
        settings,
        JobDraft(
            name="job",
            batch_ids=["batch_a", "batch_b"],
            openai_secret="openai",
            keboola_secret="keboola",
            keboola_stack_url="https://connection.keboola.com",
            keboola_component_id="c",
            keboola_configuration_id="1",
        ),
    )
    session.commit()
    return created


def add_event(session, job, kind: str, at) -> None:
    session.add(JobEvent(job_id=job.id, kind=kind, message=kind, created_at=at))
    session.flush()


def test_activity_counts_checks_and_triggers_in_their_slices(session, job) -> None:
    now = utcnow()
    add_event(session, job, "batch_status", now - timedelta(minutes=2))
    add_event(session, job, "checked", now - timedelta(minutes=3))
    add_event(session, job, "keboola_started", now - timedelta(minutes=14))
    add_event(session, job, "batch_status", now - timedelta(minutes=59))
    add_event(session, job, "batch_status", now - timedelta(minutes=61))  # outside the hour
    add_event(session, job, "paused", now - timedelta(minutes=1))  # not a check
    series = insights.activity_series(session, timedelta(hours=1), 12, now=now)
    assert len(series.buckets) == 12 and series.buckets[-1].end == now
    assert [bucket.checks for bucket in series.buckets] == [1] + [0] * 10 + [2]
    assert [bucket.triggers for bucket in series.buckets] == [0] * 9 + [1, 0, 0]
    assert (series.checks, series.triggers) == (3, 1)


def test_reaction_time_runs_from_the_last_batch_finishing_to_the_keboola_start(session, job) -> None:
    assert insights.reaction_times(session) == insights.ReactionTimes(0, None, None)
    now = utcnow()
    job.batches[0].finished_at = now - timedelta(seconds=30)
    job.batches[1].finished_at = now - timedelta(seconds=12)
    add_event(session, job, "keboola_started", now - timedelta(seconds=10))
    add_event(session, job, "keboola_started", now - timedelta(days=2))  # outside the day
    reaction = insights.reaction_times(session, now=now)
    assert (
        reaction.count == 1 and reaction.p50_seconds == pytest.approx(2.0) and reaction.p95_seconds == pytest.approx(2)
    )


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert insights.percentile(values, 0.5) == 50 and insights.percentile(values, 0.95) == 95
    assert insights.percentile([7.0], 0.95) == 7.0


def test_attention_lists_failed_jobs_by_reason_and_failing_checks(session, job) -> None:
    assert insights.jobs_needing_attention(session) == ([], 0)
    job.status, job.last_error = "failed", "OpenAI rejected the key"
    session.flush()
    items, total = insights.jobs_needing_attention(session)
    assert total == 1 and items[0].reason is insights.AttentionReason.KEY_REJECTED
    job.keboola_job_id = "42"
    session.flush()
    assert insights.jobs_needing_attention(session)[0][0].reason is insights.AttentionReason.KEBOOLA_ERROR
    job.status, job.keboola_job_id = "active", None
    session.flush()
    assert insights.jobs_needing_attention(session)[0][0].reason is insights.AttentionReason.CHECKS_FAILING
    job.last_error = None
    session.flush()
    assert insights.jobs_needing_attention(session) == ([], 0)
