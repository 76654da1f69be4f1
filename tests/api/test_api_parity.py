"""What the CLI could do and the API now can: retry a trigger, check now, rotate and verify a secret, export jobs;
and what a `read` token may do (GET only)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.models import JobStatus, PollingJob, Secret
from teckochecker.services.export import EXPORT_COLUMNS
from teckochecker.services.tokens import create_token
from teckochecker.vault import Vault
from tests.api.conftest import AUTH, GUIDE_JOB
from tests.conftest import SIMULATOR_API_KEY, SIMULATOR_TOKEN, register_test_credentials


def create(client: FlaskClient, **changes: Any) -> dict[str, Any]:
    response = client.post("/api/jobs", json={**GUIDE_JOB, **changes})
    assert response.status_code == 201, response.json
    return response.json


@pytest.mark.usefixtures("guide_secrets")
def test_retry_rearms_a_failed_job_whose_batches_finished(client: FlaskClient, session: Session) -> None:
    job_id = create(client)["id"]
    assert client.post(f"/api/jobs/{job_id}/retry").json["errors"] == {"current_status": "active"}
    job = session.get(PollingJob, job_id)
    job.status, job.keboola_job_id, job.last_error = "failed", "77", "Keboola job 77 finished with status error"
    job.batches[0].status = "completed"
    session.commit()
    retried = client.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 200
    assert (retried.json["status"], retried.json["keboola_job_id"], retried.json["last_error"]) == (
        "triggering",
        None,
        None,
    )


@pytest.mark.usefixtures("guide_secrets")
def test_check_now_makes_an_active_job_due(client: FlaskClient, session: Session) -> None:
    job_id = create(client)["id"]
    job = session.get(PollingJob, job_id)
    job.next_check_at = utcnow() + timedelta(hours=1)
    session.commit()
    before = utcnow()
    checked = client.post(f"/api/jobs/{job_id}/check")
    assert checked.status_code == 200
    assert before <= datetime.fromisoformat(checked.json["next_check_at"]) <= utcnow()
    assert client.get(f"/api/jobs/{job_id}/events").json[0]["kind"] == "check_requested"
    client.post(f"/api/jobs/{job_id}/pause")
    refused = client.post(f"/api/jobs/{job_id}/check")
    assert refused.status_code == 409 and refused.json["errors"] == {"current_status": "paused"}
    assert client.post("/api/jobs/999/check").status_code == 404


@pytest.mark.usefixtures("guide_secrets")
def test_patch_replaces_a_secrets_value_and_never_returns_it(
    client: FlaskClient, session: Session, api_settings: Settings
) -> None:
    updated = client.patch("/api/admin/secrets/1", json={"value": "  sk-rotated  "})
    assert updated.status_code == 200 and "sk-rotated" not in updated.text
    assert set(updated.json) == {"id", "name", "type", "events", "created_at", "updated_at"}
    stored = session.get(Secret, 1)
    assert Vault(api_settings.secret_key).decrypt(stored.encrypted_value, secret_name=stored.name) == "sk-rotated"
    empty = client.patch("/api/admin/secrets/1", json={"value": " "})
    assert empty.status_code == 422 and empty.json["errors"] == {
        "json": {"value": ["the secret value must not be empty"]}
    }
    assert client.patch("/api/admin/secrets/1", json={}).status_code == 422
    too_long = client.patch("/api/admin/secrets/1", json={"value": "k" * 4097})
    assert too_long.status_code == 422 and "k" * 100 not in too_long.text
    assert client.patch("/api/admin/secrets/99", json={"value": "x"}).status_code == 404


@pytest.fixture
def verifying_client(app_factory, api_settings: Settings, simulator) -> FlaskClient:
    register_test_credentials(simulator)
    settings = api_settings.with_overrides(openai_base_url=simulator.openai_base_url, allow_insecure_endpoints=True)
    client = app_factory(settings).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = AUTH["Authorization"]
    for name, kind, value in (
        ("openai-live", "openai", SIMULATOR_API_KEY),
        ("keboola-live", "keboola", SIMULATOR_TOKEN),
        ("openai-revoked", "openai", "sk-nobody-knows-this-key"),
    ):
        assert client.post("/api/admin/secrets", json={"name": name, "type": kind, "value": value}).status_code == 201
    return client


def test_verify_asks_the_service_and_never_echoes_the_secret(verifying_client: FlaskClient, simulator) -> None:
    openai = verifying_client.post("/api/admin/secrets/1/verify")
    assert openai.status_code == 200 and openai.json["verdict"] == "valid" and openai.json["valid"] is True
    keboola = verifying_client.post("/api/admin/secrets/2/verify", json={"stack": simulator.stack_url})
    assert keboola.json["verdict"] == "valid" and "teckochecker" in keboola.json["message"]
    revoked = verifying_client.post("/api/admin/secrets/3/verify")
    assert revoked.json == {"verdict": "invalid", "valid": False, "message": revoked.json["message"]}
    for response in (openai, keboola, revoked):
        assert SIMULATOR_API_KEY not in response.text and SIMULATOR_TOKEN not in response.text
        assert "sk-nobody" not in response.text


def test_verify_validates_the_stack_like_a_jobs(verifying_client: FlaskClient) -> None:
    refused = verifying_client.post("/api/admin/secrets/2/verify", json={"stack": "https://evil.example.com"})
    assert refused.status_code == 422 and list(refused.json["errors"]["json"]) == ["stack"]
    assert verifying_client.post("/api/admin/secrets/9/verify").status_code == 404


@pytest.mark.usefixtures("guide_secrets")
def test_export_honours_the_lists_filters_in_csv_and_json(client: FlaskClient, session: Session) -> None:
    for name in ("alpha", "=HYPERLINK(1)", "beta"):
        create(client, name=name, batch_id=f"batch_{name.strip('=()1').lower()}")
    session.get(PollingJob, 2).batches[0].request_total = 40
    session.commit()
    client.post("/api/jobs/3/pause")

    as_csv = client.get("/api/jobs/export?format=csv&sort=-created")
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert as_csv.headers["Content-Disposition"] == 'attachment; filename="teckochecker-jobs.csv"'
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [row["name"] for row in rows] == ["beta", "'=HYPERLINK(1)", "alpha"]
    assert rows[1]["requests_total"] == "40" and rows[1]["batches_total"] == "1" and rows[1]["openai_secret"]

    paused = client.get("/api/jobs/export?format=json&status=paused").json
    assert [job["name"] for job in paused] == ["beta"] and paused[0]["status"] == JobStatus.PAUSED
    listed = client.get("/api/jobs?q=batch_alpha").json
    exported = client.get("/api/jobs/export?format=json&q=batch_alpha").json
    assert [job["id"] for job in listed] == [job["id"] for job in exported] == [1]
    assert client.get("/api/jobs/export?format=json&q=nothing").json == []
    assert client.get("/api/jobs/export?format=xml").status_code == 422


@pytest.mark.usefixtures("guide_secrets")
def test_the_list_sorts_by_next_check_or_creation(client: FlaskClient) -> None:
    for name in ("one", "two", "three"):
        create(client, name=name)
    client.post("/api/jobs/2/pause")
    assert [job["name"] for job in client.get("/api/jobs?sort=-created").json] == ["three", "two", "one"]
    assert [job["name"] for job in client.get("/api/jobs?sort=next_check").json][-1] == "two"
    assert client.get("/api/jobs?sort=name").status_code == 422


@pytest.fixture
def read_token(api_settings: Settings, session: Session) -> str:
    plaintext = create_token(session, name="grafana", role="read")[1]
    session.commit()
    return plaintext


@pytest.mark.usefixtures("guide_secrets")
def test_a_read_token_may_only_get(app: Flask, client: FlaskClient, read_token: str) -> None:
    create(client)
    reader = app.test_client()
    reader.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {read_token}"
    for path in (
        "/api/jobs",
        "/api/jobs/1",
        "/api/jobs/1/events",
        "/api/admin/secrets",
        "/api/stats",
        "/api/jobs/export",
    ):
        assert reader.get(path).status_code == 200, path
    for method, path in (
        ("POST", "/api/jobs"),
        ("PATCH", "/api/jobs/1"),
        ("DELETE", "/api/jobs/1"),
        ("POST", "/api/jobs/1/pause"),
        ("POST", "/api/jobs/1/check"),
        ("POST", "/api/admin/secrets/1/verify"),
        ("DELETE", "/api/admin/secrets/1"),
    ):
        refused = reader.open(path, method=method, json={})
        assert refused.status_code == 403, (method, path)
        assert refused.json["status"] == "Forbidden" and "read role" in refused.json["message"]
    assert client.get("/api/jobs/1").json["status"] == "active"


def test_named_tokens_alone_close_the_open_api(app_factory, settings: Settings, session: Session) -> None:
    open_app = app_factory(settings)
    assert open_app.test_client().get("/api/jobs").status_code == 200
    plaintext = create_token(session, name="ci", role="write")[1]
    session.commit()
    assert open_app.test_client().get("/api/jobs").status_code == 401
    writer = open_app.test_client()
    writer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {plaintext}"
    assert writer.get("/api/jobs").status_code == 200
