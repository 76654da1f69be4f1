"""The views of a job that are not its JSON shape (tests/api/test_job_shape.py holds that)."""

from __future__ import annotations

from teckochecker.models import PollingJob
from teckochecker.presenters import keboola_job_url


def _job(**fields: object) -> PollingJob:
    return PollingJob(keboola_stack_url="https://connection.eu-central-1.keboola.com/", **fields)


def test_the_keboola_link_opens_the_job_in_its_project() -> None:
    job = _job(keboola_job_id="987654", keboola_project_id="4242")
    assert keboola_job_url(job) == "https://connection.eu-central-1.keboola.com/admin/projects/4242/queue/987654"


def test_no_link_before_keboola_names_the_project() -> None:
    assert keboola_job_url(_job(keboola_job_id="987654")) is None
    assert keboola_job_url(_job(keboola_project_id="4242")) is None
