"""Authentication, CORS, body limits and the one JSON error shape, whatever goes wrong."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import api.database
from api.database import UnitOfWorkView, db_session
from api.guards import MAX_BODY_BYTES
from teckochecker.config import Settings
from teckochecker.errors import ConflictError
from teckochecker.services.secrets import add_secret
from tests.api.conftest import TOKEN

ERROR_KEYS = {"code", "status", "message"}


def assert_error(response: Any, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"errors"}
    assert body["code"] == code and body["message"]
    return body


PROTECTED = [
    ("GET", "/api/stats"),
    ("GET", "/api/admin/secrets"),
    ("POST", "/api/admin/secrets"),
    ("GET", "/api/admin/secrets/1"),
    ("DELETE", "/api/admin/secrets/1"),
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("GET", "/api/jobs/1"),
    ("PATCH", "/api/jobs/1"),
    ("DELETE", "/api/jobs/1"),
    ("POST", "/api/jobs/1/pause"),
    ("POST", "/api/jobs/1/resume"),
    ("GET", "/api/jobs/1/events"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_resource_endpoint_needs_the_token(anonymous: FlaskClient, method: str, path: str) -> None:
    body = assert_error(anonymous.open(path, method=method, json={}), 401)
    assert "Authorization: Bearer <API_TOKEN>" in body["message"]
    assert anonymous.open(path, method=method).headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer", "Bearer ünïcode"]
)
def test_a_wrong_token_is_refused(anonymous: FlaskClient, header: str) -> None:
    response = anonymous.get("/api/jobs", headers={"Authorization": header})
    body = assert_error(response, 401)
    assert "not valid" in body["message"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_the_right_token_is_accepted_whatever_the_scheme_case(anonymous: FlaskClient) -> None:
    assert anonymous.get("/api/jobs", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("path", ["/api/health", "/openapi.json", "/docs", "/redoc"])
def test_health_and_documentation_need_no_token(anonymous: FlaskClient, path: str) -> None:
    assert anonymous.get(path).status_code == 200


def test_without_api_token_the_api_is_open(app_factory: Any, settings: Settings) -> None:
    client = app_factory(settings.with_overrides(api_token=None)).test_client()
    assert client.get("/api/jobs").status_code == 200


def test_unknown_routes_answer_404_json(anonymous: FlaskClient, client: FlaskClient) -> None:
    # `/` is the dashboard (tests/api/web); everything unknown answers in the API's shape.
    for path in ("/nothing", "/api", "/api/nothing", "/api/jobs/0", "/api/jobs/abc", "/api/jobs/99999999999999"):
        assert_error(anonymous.get(path), 404)
        assert_error(client.get(path), 404)


def test_a_wrong_method_answers_405_with_allow(client: FlaskClient) -> None:
    response = client.put("/api/jobs", json={})
    body = assert_error(response, 405)
    assert "PUT" in body["message"]
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_invalid_json_answers_400(client: FlaskClient) -> None:
    body = assert_error(client.post("/api/jobs", data="{not json", content_type="application/json"), 400)
    assert body["errors"] == {"json": ["Invalid JSON body."]}


def test_json_nested_too_deeply_answers_400(client: FlaskClient) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    body = assert_error(client.post("/api/jobs", data=nested, content_type="application/json"), 400)
    assert body["errors"] == {"json": ["The JSON body is nested too deeply."]}


def test_a_body_that_is_not_json_answers_415(client: FlaskClient) -> None:
    body = assert_error(client.post("/api/admin/secrets", data="name=x", content_type="text/plain"), 415)
    assert "application/json" in body["message"]


def test_a_json_body_that_is_not_an_object_answers_422(client: FlaskClient) -> None:
    assert_error(client.post("/api/jobs", json=["not", "an", "object"]), 422)


def test_an_oversized_body_answers_413(client: FlaskClient) -> None:
    huge = {"name": "x", "type": "openai", "value": "v" * (MAX_BODY_BYTES + 1)}
    body = assert_error(client.post("/api/admin/secrets", json=huge), 413)
    assert str(MAX_BODY_BYTES) in body["message"]
    assert client.get("/api/admin/secrets").headers["X-Pagination"].startswith('{"total": 0')


def test_an_unexpected_error_answers_500_json_without_details(app: Flask, client: FlaskClient, caplog) -> None:
    def explode() -> None:
        raise RuntimeError("internal detail that must not leak")

    app.add_url_rule("/api/explode", view_func=explode)
    body = assert_error(client.get("/api/explode"), 500)
    assert "internal detail" not in body["message"]
    assert "internal detail that must not leak" in caplog.text


def test_a_missing_database_answers_503(app_factory: Any, tmp_path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'never-migrated.db'}", api_token=TOKEN)
    client = app_factory(settings).test_client()
    body = assert_error(client.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"}), 503)
    assert "teckochecker db init" in body["message"]


def test_an_unreachable_database_answers_503(app_factory: Any) -> None:
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", api_token=TOKEN)
    client = app_factory(settings).test_client()
    body = assert_error(client.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"}), 503)
    assert "unavailable" in body["message"] and "127.0.0.1" not in body["message"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_request_that_finds_every_connection_busy_waits_then_answers_503(
    app_factory: Any, api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API keeps a fixed pool (no overflow connections to open and close in a burst): a request waits for
    a free connection and, if none frees up in time, is told to come back, in the error shape."""
    monkeypatch.setattr(api.database, "POOL_SIZE", 1)
    monkeypatch.setattr(api.database, "POOL_TIMEOUT_SECONDS", 0.3)
    app = app_factory(api_settings)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with app.app_context():
        engine = api.database.api_state().engine
    assert client.get("/api/jobs", headers=auth).status_code == 200
    with engine.connect():  # the pool's only connection, held elsewhere
        body = assert_error(client.get("/api/jobs", headers=auth), 503)
    assert body["message"] == "The database is busy; try again shortly."
    assert client.get("/api/jobs", headers=auth).status_code == 200, "free again once it is returned"


def test_a_failed_request_commits_nothing(app: Flask, client: FlaskClient, vault) -> None:
    """What a view flushed before failing is rolled back: only a request that succeeds commits."""

    class AddThenFail(UnitOfWorkView):
        def post(self) -> None:
            add_secret(db_session(), vault, name="half-done", type="openai", value="sk-x")
            raise ConflictError("refused after the secret was flushed")

    app.add_url_rule("/api/add-then-fail", view_func=AddThenFail.as_view("add_then_fail"))
    assert_error(client.post("/api/add-then-fail"), 409)
    assert client.get("/api/admin/secrets").json == []


class TestCors:
    ORIGIN = "https://dashboard.example.com"

    @pytest.fixture
    def cors_client(self, app_factory: Any, api_settings: Settings) -> FlaskClient:
        return app_factory(api_settings.with_overrides(cors_origins=(self.ORIGIN + "/",))).test_client()

    def test_an_allowed_origin_gets_the_headers(self, cors_client: FlaskClient) -> None:
        response = cors_client.get("/api/jobs", headers={"Origin": self.ORIGIN, "Authorization": f"Bearer {TOKEN}"})
        assert response.headers["Access-Control-Allow-Origin"] == self.ORIGIN
        assert "X-Pagination" in response.headers["Access-Control-Expose-Headers"]
        assert "Origin" in response.headers["Vary"]

    def test_a_preflight_is_answered_without_a_token(self, cors_client: FlaskClient) -> None:
        response = cors_client.options(
            "/api/jobs",
            headers={
                "Origin": self.ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert response.status_code == 204
        assert response.headers["Access-Control-Allow-Origin"] == self.ORIGIN
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]

    def test_another_origin_gets_no_cors_headers(self, cors_client: FlaskClient) -> None:
        for response in (
            cors_client.get("/api/health", headers={"Origin": "https://evil.example.com"}),
            cors_client.options(
                "/api/jobs",
                headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "DELETE"},
            ),
        ):
            assert "Access-Control-Allow-Origin" not in response.headers

    def test_without_cors_origins_no_origin_is_allowed(self, client: FlaskClient) -> None:
        response = client.get("/api/jobs", headers={"Origin": self.ORIGIN})
        assert "Access-Control-Allow-Origin" not in response.headers
