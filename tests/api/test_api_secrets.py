"""`/api/admin/secrets`: the value goes in encrypted and never comes out, not even in an error."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.models import Secret
from teckochecker.services.secrets import reveal_secret
from teckochecker.vault import Vault
from tests.api.conftest import GUIDE_JOB, TOKEN

LEAK = "sk-LEAK-CANARY-9d2f"


def test_create_stores_the_value_encrypted_and_never_returns_it(
    client: FlaskClient, session: Session, vault: Vault
) -> None:
    response = client.post("/api/admin/secrets", json={"name": "openai-test", "type": "openai", "value": LEAK})
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/admin/secrets/{response.json['id']}"
    assert set(response.json) == {"id", "name", "type", "events", "created_at", "updated_at"}
    assert response.json["name"] == "openai-test" and response.json["type"] == "openai"

    stored = session.get(Secret, response.json["id"])
    assert LEAK not in stored.encrypted_value
    assert reveal_secret(session, vault, stored.id) == LEAK
    for path in ("/api/admin/secrets", f"/api/admin/secrets/{stored.id}"):
        assert LEAK not in client.get(path).get_data(as_text=True)


def test_list_is_paginated(client: FlaskClient) -> None:
    for number in range(3):
        client.post("/api/admin/secrets", json={"name": f"s{number}", "type": "keboola", "value": "v"})
    response = client.get("/api/admin/secrets?page=2&page_size=2")
    assert [secret["name"] for secret in response.json] == ["s2"]
    assert '"total": 3' in response.headers["X-Pagination"]


def test_show_and_delete(client: FlaskClient) -> None:
    secret_id = client.post("/api/admin/secrets", json={"name": "k", "type": "keboola", "value": "v"}).json["id"]
    assert client.get(f"/api/admin/secrets/{secret_id}").json["name"] == "k"
    deleted = client.delete(f"/api/admin/secrets/{secret_id}")
    assert deleted.status_code == 204 and deleted.data == b""
    for response in (client.get(f"/api/admin/secrets/{secret_id}"), client.delete(f"/api/admin/secrets/{secret_id}")):
        assert response.status_code == 404
        assert response.json["message"] == f"Secret {secret_id} not found"


def test_a_duplicate_name_is_a_conflict(client: FlaskClient) -> None:
    body = {"name": "dup", "type": "openai", "value": LEAK}
    assert client.post("/api/admin/secrets", json=body).status_code == 201
    response = client.post("/api/admin/secrets", json=body)
    assert response.status_code == 409
    assert "already exists" in response.json["message"] and LEAK not in response.get_data(as_text=True)


def test_deleting_a_secret_in_use_is_refused_naming_the_jobs(client: FlaskClient, guide_secrets) -> None:
    job_id = client.post("/api/jobs", json=GUIDE_JOB).json["id"]
    response = client.delete("/api/admin/secrets/1")
    assert response.status_code == 409
    assert f"{job_id} 'Test job'" in response.json["message"]
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert client.delete("/api/admin/secrets/1").status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "type": "azure", "value": LEAK}, "type"),
        ({"name": "", "type": "openai", "value": LEAK}, "name"),
        ({"name": "a\tb", "type": "openai", "value": LEAK}, "name"),
        ({"name": "x" * 256, "type": "openai", "value": LEAK}, "name"),
        ({"name": 7, "type": "openai", "value": LEAK}, "name"),
        ({"type": "openai", "value": LEAK}, "name"),
        ({"name": "x", "value": LEAK}, "type"),
        ({"name": "x", "type": "openai"}, "value"),
        ({"name": "x", "type": "openai", "value": "   "}, "value"),
        ({"name": "x", "type": "openai", "value": ""}, "value"),
        ({"name": "x", "type": "openai", "value": "v" * 4097}, "value"),
        ({"name": "x", "type": "openai", "value": None}, "value"),
        ({"name": "x", "type": "openai", "value": [LEAK]}, "value"),
        ({"name": "x", "type": "openai", "value": {"key": LEAK}}, "value"),
        ({"name": "x", "type": "openai", "value": 12345678}, "value"),
        ({"name": "x", "type": "openai", "value": "\ud800" + LEAK}, "value"),
        ({"name": "x", "type": "openai", "value": LEAK, "extra": LEAK}, "extra"),
    ],
)
def test_invalid_input_names_the_field_and_never_echoes_the_value(
    client: FlaskClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/admin/secrets", json=body)
    assert response.status_code == 422
    assert field in response.json["errors"]["json"]
    assert LEAK not in response.get_data(as_text=True)
    assert "12345678" not in response.get_data(as_text=True)


def test_a_malformed_body_never_echoes_the_value(client: FlaskClient) -> None:
    raw = '{"name": "x", "type": "openai", "value": "' + LEAK + '"'
    response = client.post("/api/admin/secrets", data=raw, content_type="application/json")
    assert response.status_code == 400 and LEAK not in response.get_data(as_text=True)


def test_without_secret_key_creating_a_secret_answers_503(app_factory: Any, settings: Settings) -> None:
    client = app_factory(settings.with_overrides(secret_key=None, api_token=TOKEN)).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    response = client.post("/api/admin/secrets", json={"name": "x", "type": "openai", "value": LEAK})
    assert response.status_code == 503
    assert "SECRET_KEY" in response.json["message"] and LEAK not in response.get_data(as_text=True)
    assert client.get("/api/admin/secrets").status_code == 200
