"""`/api/jobs`: the guide's body, the alternatives, listing, editing, state changes and history."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from teckochecker.models import JobStatus, PollingJob
from tests.api.conftest import GUIDE_JOB

pytestmark = pytest.mark.usefixtures("guide_secrets")

JOB_FIELDS = {
    "id", "name", "status", "openai_secret", "keboola_secret", "notify", "keboola_stack_url", "keboola_component_id",
    "keboola_configuration_id", "poll_interval_seconds", "batches", "keboola_job_id", "keboola_job_status",
    "last_check_at", "next_check_at", "created_at", "updated_at", "completed_at", "last_error",
}  # fmt: skip


def create(client: FlaskClient, **changes: Any) -> dict[str, Any]:
    response = client.post("/api/jobs", json={**GUIDE_JOB, **changes})
    assert response.status_code == 201, response.json
    return response.json


def set_status(session: Session, job_id: int, status: JobStatus, **columns: Any) -> None:
    job = session.get(PollingJob, job_id)
    job.status = status.value
    for name, value in columns.items():
        setattr(job, name, value)
    session.commit()


def test_the_guides_body_creates_a_job(client: FlaskClient) -> None:
    response = client.post("/api/jobs", json=GUIDE_JOB)
    assert response.status_code == 201
    job = response.json
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert set(job) == JOB_FIELDS
    assert job["status"] == "active" and job["poll_interval_seconds"] == 120
    assert job["openai_secret"] == {"id": 1, "name": "openai-test"}
    assert job["keboola_secret"] == {"id": 2, "name": "keboola-test"}
    assert job["next_check_at"] is not None and job["last_check_at"] is None
    [batch] = job["batches"]
    assert batch["batch_id"] == "batch_123" and batch["status"] == "pending"
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert client.get(response.headers["Location"]).json == job


def test_batch_ids_and_secrets_by_name(client: FlaskClient) -> None:
    body = {key: value for key, value in GUIDE_JOB.items() if not key.endswith(("batch_id", "secret_id"))}
    body |= {"batch_ids": ["batch_a", "batch_b"], "openai_secret": "openai-test", "keboola_secret": "keboola-test"}
    del body["poll_interval_seconds"]
    job = client.post("/api/jobs", json=body).json
    assert [batch["batch_id"] for batch in job["batches"]] == ["batch_a", "batch_b"]
    assert job["openai_secret"]["name"] == "openai-test" and job["poll_interval_seconds"] == 120


@pytest.mark.parametrize(
    ("changes", "removed", "fields"),
    [
        ({"batch_ids": ["batch_x"]}, [], {"batch_id", "batch_ids"}),
        ({}, ["batch_id"], {"batch_id", "batch_ids"}),
        ({"openai_secret": "openai-test"}, [], {"openai_secret_id", "openai_secret"}),
        ({}, ["keboola_secret_id"], {"keboola_secret_id", "keboola_secret"}),
    ],
)
def test_exactly_one_of_each_alternative(
    client: FlaskClient, changes: dict[str, Any], removed: list[str], fields: set[str]
) -> None:
    body = {key: value for key, value in {**GUIDE_JOB, **changes}.items() if key not in removed}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422
    assert set(response.json["errors"]["json"]) == fields


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"batch_id": "not-a-batch"}, "batch_id", "is not an OpenAI batch id"),
        ({"batch_id": None, "batch_ids": []}, "batch_ids", "at least one batch id"),
        ({"openai_secret_id": 2}, "openai_secret_id", "a keboola secret, but a openai secret is needed"),
        ({"keboola_secret_id": 99}, "keboola_secret_id", "secret 99 does not exist"),
        ({"keboola_secret_id": None, "keboola_secret": "nope"}, "keboola_secret", "'nope' does not exist"),
        ({"keboola_stack_url": "https://evil.example.com"}, "keboola_stack_url", "is not a Keboola stack"),
        # requests would connect to evil.com (urllib3 stops the host at the backslash) with the token.
        ({"keboola_stack_url": "https://evil.com\\.keboola.com"}, "keboola_stack_url", "backslashes"),
        ({"keboola_stack_url": "https://a b.keboola.com"}, "keboola_stack_url", "spaces"),
        ({"keboola_stack_url": "https://a\x00.keboola.com"}, "keboola_stack_url", "control"),
        ({"poll_interval_seconds": 5}, "poll_interval_seconds", "between 30 and 3600"),
        ({"poll_interval_seconds": "120"}, "poll_interval_seconds", "Not a valid integer"),
        ({"poll_interval_seconds": 120.5}, "poll_interval_seconds", "Not a valid integer"),
        ({"name": " "}, "name", "must not be empty"),
        ({"keboola_component_id": "has space"}, "keboola_component_id", "without spaces"),
        ({"openai_secret_id": 2**40}, "openai_secret_id", "less than or equal to"),
        ({"openai_secret_id": None, "openai_secret": "a\x00b"}, "openai_secret", "control characters"),
        ({"status": "completed"}, "status", "Unknown field"),
    ],
)
def test_invalid_input_names_the_field_the_client_sent(
    client: FlaskClient, changes: dict[str, Any], field: str, fragment: str
) -> None:
    body = {key: value for key, value in {**GUIDE_JOB, **changes}.items() if value is not None}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]["json"]) == [field]
    assert fragment in json.dumps(response.json["errors"])


def test_list_filters_and_paginates(client: FlaskClient, session: Session) -> None:
    ids = [create(client, name=name)["id"] for name in ("Nightly 100%", "nightly_b", "Weekly", "Other nightly")]
    set_status(session, ids[1], JobStatus.PAUSED)

    response = client.get("/api/jobs?page_size=2&page=2")
    assert [job["id"] for job in response.json] == ids[2:]
    assert json.loads(response.headers["X-Pagination"]) == {
        "total": 4, "total_pages": 2, "first_page": 1, "last_page": 2, "page": 2, "previous_page": 1,
    }  # fmt: skip
    assert [job["name"] for job in client.get("/api/jobs?q=NIGHTLY").json] == [
        "Nightly 100%", "nightly_b", "Other nightly",
    ]  # fmt: skip
    # The search is literal: % and _ are not wildcards.
    assert [job["name"] for job in client.get("/api/jobs?q=100%25").json] == ["Nightly 100%"]
    assert [job["name"] for job in client.get("/api/jobs?q=y_b").json] == ["nightly_b"]
    assert [job["id"] for job in client.get("/api/jobs?status=paused").json] == [ids[1]]
    assert [job["id"] for job in client.get("/api/jobs?status=active&q=nightly").json] == [ids[0], ids[3]]
    beyond = client.get("/api/jobs?page=1000000000000000000000")
    assert beyond.status_code == 200 and beyond.json == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=done", "status"), ("page=0", "page"), ("page_size=101", "page_size"), ("q=" + "x" * 256, "q")],
)
def test_list_refuses_bad_parameters(client: FlaskClient, query: str, field: str) -> None:
    response = client.get(f"/api/jobs?{query}")
    assert response.status_code == 422
    assert field in response.json["errors"]["query"]


def test_a_search_may_hold_any_text_but_control_characters(client: FlaskClient) -> None:
    ids = [create(client, name=name)["id"] for name in ("Café ☕ job", "Plain")]
    assert [job["id"] for job in client.get("/api/jobs", query_string={"q": "é ☕"}).json] == [ids[0]]
    no_break_space = client.get("/api/jobs", query_string={"q": "Café\u00a0☕"})  # not str.isprintable()
    assert no_break_space.status_code == 200 and no_break_space.json == []
    for control in ("\x00", "\x1b", "\n", "\x7f", "\x85"):  # NUL, C0, DEL and C1 controls
        response = client.get("/api/jobs", query_string={"q": f"a{control}b"})
        assert response.status_code == 422 and "control characters" in json.dumps(response.json["errors"])


HUGE = "9" * 5000  # beyond Python's 4,300-digit limit on converting a string to an integer


@pytest.mark.parametrize("field", ["poll_interval_seconds", "openai_secret_id", "keboola_secret_id"])
def test_an_integer_of_thousands_of_digits_is_refused_naming_the_field(client: FlaskClient, field: str) -> None:
    body = json.dumps({**GUIDE_JOB, field: 0}).replace(f'"{field}": 0', f'"{field}": -{HUGE}')
    response = client.post("/api/jobs", data=body, content_type="application/json")
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]["json"]) == [field]


def test_huge_integers_in_an_edit_a_query_or_a_path_are_refused(client: FlaskClient) -> None:
    job_id = create(client)["id"]
    edit = client.patch(
        f"/api/jobs/{job_id}", data=f'{{"poll_interval_seconds": {HUGE}}}', content_type="application/json"
    )
    assert edit.status_code == 422 and list(edit.json["errors"]["json"]) == ["poll_interval_seconds"]
    for query, field in ((f"page={HUGE}", "page"), (f"page_size={HUGE}", "page_size")):
        listed = client.get(f"/api/jobs?{query}")
        assert listed.status_code == 422 and list(listed.json["errors"]["query"]) == [field]
    events = client.get(f"/api/jobs/{job_id}/events?before_id={HUGE}")
    assert events.status_code == 422 and list(events.json["errors"]["query"]) == ["before_id"]
    for path in (f"/api/jobs/{HUGE}", f"/api/jobs/{HUGE}/events", f"/api/admin/secrets/{HUGE}"):
        assert client.get(path).status_code == 404


def test_patch_changes_only_the_given_fields(client: FlaskClient) -> None:
    job = create(client)
    response = client.patch(f"/api/jobs/{job['id']}", json={"name": "Renamed", "poll_interval_seconds": 300})
    assert response.status_code == 200
    assert response.json["name"] == "Renamed" and response.json["poll_interval_seconds"] == 300
    assert response.json["keboola_stack_url"] == job["keboola_stack_url"]
    assert client.get(f"/api/jobs/{job['id']}").json["name"] == "Renamed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "job"),
        ({"poll_interval_seconds": 1}, "poll_interval_seconds"),
        ({"batch_id": "batch_z"}, "batch_id"),
        ({"keboola_stack_url": "https://evil.com\\.keboola.com"}, "keboola_stack_url"),
        ({"keboola_stack_url": "https://connection.keboola.com%2f@evil.com"}, "keboola_stack_url"),
    ],
)
def test_patch_refuses_invalid_changes(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    job = create(client)
    response = client.patch(f"/api/jobs/{job['id']}", json=body)
    assert response.status_code == 422
    assert field in response.json["errors"]["json"]


def test_patch_of_a_finished_job_is_a_conflict(client: FlaskClient, session: Session) -> None:
    job = create(client)
    set_status(session, job["id"], JobStatus.COMPLETED)
    response = client.patch(f"/api/jobs/{job['id']}", json={"name": "late"})
    assert response.status_code == 409
    assert response.json["errors"] == {"current_status": "completed"}


def test_pause_and_resume(client: FlaskClient) -> None:
    job_id = create(client)["id"]
    paused = client.post(f"/api/jobs/{job_id}/pause")
    assert paused.status_code == 200
    assert paused.json["status"] == "paused" and paused.json["next_check_at"] is None

    again = client.post(f"/api/jobs/{job_id}/pause")
    assert again.status_code == 409
    assert again.json["errors"] == {"current_status": "paused"} and "paused" in again.json["message"]

    resumed = client.post(f"/api/jobs/{job_id}/resume")
    assert resumed.status_code == 200 and resumed.json["status"] == "active"
    conflict = client.post(f"/api/jobs/{job_id}/resume")
    assert conflict.status_code == 409 and conflict.json["errors"] == {"current_status": "active"}


def test_a_failed_job_resumes_only_before_its_keboola_job_started(client: FlaskClient, session: Session) -> None:
    first, second = create(client)["id"], create(client)["id"]
    set_status(session, first, JobStatus.FAILED, last_error="OpenAI said 401")
    set_status(session, second, JobStatus.FAILED, keboola_job_id="987")
    resumed = client.post(f"/api/jobs/{first}/resume")
    assert resumed.status_code == 200 and resumed.json["last_error"] is None
    refused = client.post(f"/api/jobs/{second}/resume")
    assert refused.status_code == 409
    assert refused.json["errors"] == {"current_status": "failed"} and "987" in refused.json["message"]


def test_delete(client: FlaskClient, session: Session) -> None:
    job_id = create(client)["id"]
    set_status(session, job_id, JobStatus.TRIGGERING)
    refused = client.delete(f"/api/jobs/{job_id}")
    assert refused.status_code == 409 and refused.json["errors"] == {"current_status": "triggering"}

    set_status(session, job_id, JobStatus.COMPLETED)
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert client.get(f"/api/jobs/{job_id}").status_code == 404


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/resume"), ("GET", "/events")],
)
def test_a_missing_job_answers_404(client: FlaskClient, method: str, suffix: str) -> None:
    response = client.open(f"/api/jobs/42{suffix}", method=method, json={"name": "x"})
    assert response.status_code == 404
    assert response.json["message"] == "Job 42 not found"


def test_events_newest_first_with_a_cursor(client: FlaskClient) -> None:
    job_id = create(client)["id"]
    for _ in range(2):
        client.post(f"/api/jobs/{job_id}/pause")
        client.post(f"/api/jobs/{job_id}/resume")
    everything = client.get(f"/api/jobs/{job_id}/events").json
    assert [event["kind"] for event in everything] == ["resumed", "paused", "resumed", "paused", "created"]

    first_page = client.get(f"/api/jobs/{job_id}/events?limit=2").json
    second_page = client.get(f"/api/jobs/{job_id}/events?limit=2&before_id={first_page[-1]['id']}").json
    assert first_page + second_page == everything[:4]
    assert client.get(f"/api/jobs/{job_id}/events?limit=101").status_code == 422


def _walk(client: FlaskClient, query: str) -> tuple[list[int], int]:
    """Every job of a list, page by page through the cursors; and how many pages that took."""
    seen, url, pages = [], f"/api/jobs?{query}&page_size=3&after=", 0
    while True:
        response = client.get(url)
        assert response.status_code == 200, response.json
        assert "X-Pagination" not in response.headers  # nothing is counted
        seen += [job["id"] for job in response.json]
        pages += 1
        if "X-Next-Cursor" not in response.headers:
            assert "Link" not in response.headers
            return seen, pages
        url = f"/api/jobs?{query}&page_size=3&after={response.headers['X-Next-Cursor']}"
        assert response.headers["Link"].endswith('; rel="next"')


@pytest.mark.parametrize("sort", ["created", "-created", "next_check"])
def test_cursor_pages_walk_every_job_once_in_the_lists_order(client: FlaskClient, session: Session, sort: str) -> None:
    ids = [create(client, name=f"job {n}")["id"] for n in range(10)]
    # Jobs without a next check (paused) come last when sorting by it.
    for job_id in ids[2:5]:
        client.post(f"/api/jobs/{job_id}/pause")
    numbered = [
        job["id"] for page in (1, 2, 3, 4) for job in client.get(f"/api/jobs?sort={sort}&page_size=3&page={page}").json
    ]

    walked, pages = _walk(client, f"sort={sort}")

    assert walked == numbered and sorted(walked) == ids and pages == 4
    if sort == "next_check":
        assert walked[-3:] == ids[2:5]


def test_a_numbered_page_says_where_the_cursor_pages_go_on(client: FlaskClient) -> None:
    ids = [create(client, name=f"job {n}")["id"] for n in range(5)]
    first = client.get("/api/jobs?page_size=2")
    assert json.loads(first.headers["X-Pagination"])["total"] == 5
    rest = client.get(f"/api/jobs?page_size=10&after={first.headers['X-Next-Cursor']}")
    assert [job["id"] for job in first.json + rest.json] == ids
    last = client.get("/api/jobs?page_size=2&page=3")
    assert "X-Next-Cursor" not in last.headers


@pytest.mark.parametrize(
    "query",
    [
        "after=not-a-cursor",
        "after=W10",
        "sort=-created&after=WyJjcmVhdGVkIiwgIjIwMjYtMDEtMDFUMDA6MDA6MDArMDA6MDAiLCAxXQ",
    ],
)
def test_a_cursor_that_the_list_did_not_hand_out_is_refused(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/jobs?{query}")
    assert response.status_code == 422 and "after" in response.json["errors"]["query"]
