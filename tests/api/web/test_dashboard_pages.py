"""The dashboard's pages through Flask's test client: sign-in and sessions, roles, CSRF, headers, forms that keep
what was typed and show the service's own messages, secrets that never come back, and the export."""

from __future__ import annotations

import base64
import csv
import io
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.web.auth import SESSION_COOKIE_NAME, session_signing_key
from api.web.formatting import relative_text, utc_text
from teckochecker.config import Settings
from teckochecker.db import make_engine, make_session_factory, session_scope
from teckochecker.services.tokens import create_token, revoke_token
from tests.api.conftest import AUTH, GUIDE_JOB, TOKEN
from tests.api.web.conftest import csrf_token_in, post_form, sign_in

PAGES = ("/", "/jobs", "/jobs/new", "/secrets", "/keboola-setup")
XSS = "<img src=x onerror=alert(1)>'\""


def named_token(settings: Settings, name: str, role: str) -> str:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return create_token(session, name=name, role=role)[1]
    finally:
        engine.dispose()


def session_cookie(client: FlaskClient):
    return client.get_cookie(SESSION_COOKIE_NAME)


def cookie_payload(value: str) -> str:
    """The readable part of Flask's signed cookie (base64 JSON, zlib-compressed when it starts with '.')."""
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return (zlib.decompress(raw) if compressed else raw).decode()


def test_pages_ask_for_sign_in_and_a_wrong_token_is_refused(app: Flask) -> None:
    client = app.test_client()
    for path in (*PAGES, "/jobs/1"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in?next="), path
    page = client.get("/sign-in")
    refused = client.post("/sign-in", data={"csrf_token": csrf_token_in(page.text), "token": "wrong"})
    assert refused.status_code == 401 and "That token is not valid." in refused.text
    assert "wrong" not in refused.text
    # A bearer header does not open the dashboard: it signs in with its own session only.
    assert client.get("/", headers=AUTH).status_code == 302


def test_the_session_cookie_names_the_token_and_never_holds_it(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, TOKEN)
    cookie = session_cookie(client)
    assert cookie.http_only and cookie.same_site == "Strict" and not cookie.secure
    payload = cookie_payload(cookie.value)
    assert TOKEN not in payload and json.loads(payload)["token_name"] == "API_TOKEN"
    assert client.get("/").status_code == 200

    over_https = app.test_client()
    base = "https://dashboard.example"
    page = over_https.get("/sign-in", base_url=base)
    signed_in = over_https.post(
        "/sign-in",
        data={"csrf_token": csrf_token_in(page.text), "token": TOKEN},
        base_url=base,
        headers={"Referer": f"{base}/sign-in"},  # Flask-WTF checks the referrer of https requests
    )
    assert signed_in.status_code == 302
    assert over_https.get_cookie(SESSION_COOKIE_NAME, domain="dashboard.example").secure


def test_sign_out_ends_the_session(dashboard: FlaskClient) -> None:
    response = post_form(dashboard, "/", "/sign-out")
    assert response.status_code == 302 and response.headers["Location"] == "/sign-in"
    assert dashboard.get("/jobs").status_code == 302


def test_the_session_key_is_derived_and_changes_with_api_token(api_settings: Settings) -> None:
    key = session_signing_key(api_settings)
    assert key is not None and len(key) == 32
    assert key not in api_settings.secret_key.encode() and base64.urlsafe_b64encode(key) != api_settings.secret_key
    assert session_signing_key(api_settings.with_overrides(api_token="another")) != key
    assert session_signing_key(api_settings.with_overrides(secret_key=None)) is None


def test_without_secret_key_the_dashboard_says_what_to_set(app_factory, api_settings: Settings) -> None:
    response = app_factory(api_settings.with_overrides(secret_key=None)).test_client().get("/")
    assert response.status_code == 503 and "SECRET_KEY is not set" in response.text


def test_with_no_token_configured_the_dashboard_is_open(app_factory, settings: Settings) -> None:
    client = app_factory(settings).test_client()
    assert client.get("/").status_code == 200
    assert client.get("/sign-in").headers["Location"] == "/"
    # Still CSRF-protected: an open dashboard on loopback must not be driven by another site.
    assert client.post("/secrets", data={"name": "x", "type": "openai", "value": "sk"}).status_code == 400


def test_every_page_sends_the_security_headers(dashboard: FlaskClient) -> None:
    for path in (*PAGES, "/sign-in", "/jobs/999", "/assets/app.js"):
        response = dashboard.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy and "unsafe" not in policy, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "same-origin", path
    html = dashboard.get("/").text
    assert "<script>" not in html and " style=" not in html and " onclick" not in html


def test_a_post_without_the_csrf_token_is_refused(dashboard: FlaskClient, guide_secrets, client: FlaskClient) -> None:
    client.post("/api/jobs", json=GUIDE_JOB)
    for data in ({}, {"csrf_token": "forged"}):
        refused = dashboard.post("/jobs/1/pause", data=data)
        assert refused.status_code == 400 and "Form refused" in refused.text
    assert client.get("/api/jobs/1").json["status"] == "active"
    # The bearer-token API is not cookie-authenticated, so it needs no CSRF token.
    assert client.post("/api/jobs/1/pause").status_code == 200


def test_a_read_token_sees_everything_and_changes_nothing(app: Flask, api_settings, client, guide_secrets) -> None:
    client.post("/api/jobs", json=GUIDE_JOB)
    token = named_token(api_settings, "viewer", "read")
    reader = app.test_client()
    sign_in(reader, token)
    for path in (*PAGES, "/jobs/1"):
        assert reader.get(path).status_code == 200, path
    job_page = reader.get("/jobs/1").text
    assert 'class="actions"' not in job_page and "Pause" not in job_page and "Delete" not in job_page
    assert "Add a secret" not in reader.get("/secrets").text and "/jobs/new" not in reader.get("/jobs").text
    denied = post_form(reader, "/jobs/1", "/jobs/1/pause")
    assert denied.status_code == 403 and "read role" in denied.text
    # The same token on the API: GET works, every change is 403 in the API's JSON error shape.
    bearer = {"Authorization": f"Bearer {token}"}
    anonymous = app.test_client()
    assert anonymous.get("/api/jobs/1", headers=bearer).status_code == 200
    for method, path in (("POST", "/api/jobs/1/pause"), ("DELETE", "/api/jobs/1"), ("PATCH", "/api/admin/secrets/1")):
        response = anonymous.open(path, method=method, headers=bearer, json={"value": "x"})
        assert response.status_code == 403 and response.json["code"] == 403, (method, path)
    assert client.get("/api/jobs/1").json["status"] == "active"


def test_revoking_a_token_ends_its_sessions(app: Flask, api_settings: Settings) -> None:
    token = named_token(api_settings, "temporary", "write")
    browser = app.test_client()
    sign_in(browser, token)
    assert browser.get("/").status_code == 200
    engine = make_engine(api_settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        revoke_token(session, "temporary")
    engine.dispose()
    assert browser.get("/").status_code == 302


def test_secrets_are_added_rotated_and_never_rendered(dashboard: FlaskClient, client: FlaskClient) -> None:
    value = "sk-proj-do-not-show-me-1234567890"
    added = post_form(dashboard, "/secrets", "/secrets", {"name": "openai-prod", "type": "openai", "value": value})
    assert added.status_code == 302
    page = dashboard.get("/secrets").text
    assert "openai-prod" in page and value not in page and "sk-proj" not in page
    # Every type of SecretType is offered, so a new type needs no template change.
    assert all(f'<option value="{kind}"' in page for kind in ("openai", "keboola"))

    duplicate = post_form(dashboard, "/secrets", "/secrets", {"name": "openai-prod", "type": "openai", "value": value})
    assert duplicate.status_code == 422 and "already exists" in duplicate.text
    assert 'value="openai-prod"' in duplicate.text and value not in duplicate.text
    empty = post_form(dashboard, "/secrets", "/secrets", {"name": "blank", "type": "keboola", "value": "  "})
    assert empty.status_code == 422 and "must not be empty" in empty.text and 'id="value-error"' in empty.text

    rotated = post_form(dashboard, "/secrets", "/secrets/1/value", {"value": "sk-rotated-value"})
    assert rotated.status_code == 302
    followed = dashboard.get("/secrets").text
    assert "has a new value" in followed and "sk-rotated-value" not in followed


def test_deleting_a_secret_in_use_is_refused_naming_the_job(dashboard, client, guide_secrets) -> None:
    client.post("/api/jobs", json={**GUIDE_JOB, "name": XSS})
    post_form(dashboard, "/secrets", "/secrets/1/delete")
    page = dashboard.get("/secrets").text
    assert "is used by 1 job(s): 1 " in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert client.get("/api/admin/secrets/1").status_code == 200


def test_the_new_job_form_keeps_what_was_typed_and_shows_the_services_message(
    dashboard: FlaskClient, guide_secrets, client: FlaskClient
) -> None:
    form = {
        "name": "Pasted batches",
        "batch_ids": "batch_one, batch_two\n batch_three;batch_four",
        "openai_secret": "1",
        "keboola_secret": "2",
        "keboola_stack_url": "https://evil.example.com",
        "keboola_component_id": "kds-team.app-custom-python",
        "keboola_configuration_id": "123",
        "poll_interval_seconds": "120",
    }
    refused = post_form(dashboard, "/jobs/new", "/jobs/new", form)
    assert refused.status_code == 422
    assert 'id="keboola_stack_url-error"' in refused.text and "keboola.com" in refused.text
    assert 'value="Pasted batches"' in refused.text and "batch_one, batch_two" in refused.text
    assert '<option value="1" selected>' in refused.text

    wrong_interval = post_form(dashboard, "/jobs/new", "/jobs/new", {**form, "poll_interval_seconds": "soon"})
    assert wrong_interval.status_code == 422 and 'id="poll_interval_seconds-error"' in wrong_interval.text

    created = post_form(
        dashboard, "/jobs/new", "/jobs/new", {**form, "keboola_stack_url": GUIDE_JOB["keboola_stack_url"]}
    )
    assert created.status_code == 302 and created.headers["Location"] == "/jobs/1"
    job = client.get("/api/jobs/1").json
    assert [batch["batch_id"] for batch in job["batches"]] == ["batch_one", "batch_two", "batch_three", "batch_four"]


def test_job_actions_change_the_job_and_report_in_the_page(dashboard: FlaskClient, client, guide_secrets) -> None:
    client.post("/api/jobs", json=GUIDE_JOB)
    assert post_form(dashboard, "/jobs/1", "/jobs/1/check").status_code == 302
    assert "will be checked" in dashboard.get("/jobs/1").text
    post_form(dashboard, "/jobs/1", "/jobs/1/pause")
    page = dashboard.get("/jobs/1").text
    assert "Job &#39;Test job&#39; paused." in page and 'data-status="paused"' in page
    refused = post_form(dashboard, "/jobs/1", "/jobs/1/pause")
    assert refused.status_code == 302
    assert "only an active job can be paused" in dashboard.get("/jobs/1").text
    edited = post_form(dashboard, "/jobs/1/edit", "/jobs/1/edit", {
        "name": "Renamed", "keboola_stack_url": GUIDE_JOB["keboola_stack_url"], "keboola_component_id": "c",
        "keboola_configuration_id": "123456", "poll_interval_seconds": "120",
    })  # fmt: skip
    assert edited.status_code == 302
    job = client.get("/api/jobs/1").json
    assert (job["name"], job["keboola_component_id"], job["poll_interval_seconds"]) == ("Renamed", "c", 120)
    unchanged = post_form(dashboard, "/jobs/1/edit", "/jobs/1/edit", {
        "name": "Renamed", "keboola_stack_url": GUIDE_JOB["keboola_stack_url"], "keboola_component_id": "c",
        "keboola_configuration_id": "123456", "poll_interval_seconds": "120",
    })  # fmt: skip
    assert unchanged.status_code == 422 and "nothing to change" in unchanged.text
    post_form(dashboard, "/jobs/1", "/jobs/1/delete")
    assert client.get("/api/jobs/1").status_code == 404
    assert dashboard.get("/jobs/1").status_code == 404


def test_the_job_list_searches_filters_sorts_pages_and_exports(dashboard: FlaskClient, client, guide_secrets) -> None:
    for index in range(55):
        client.post("/api/jobs", json={**GUIDE_JOB, "name": f"=cmd job {index:02}", "batch_id": f"batch_n{index:02}"})
    client.post("/api/jobs/3/pause")
    first = dashboard.get("/jobs").text
    assert "1–50 of 55 jobs" in first and "Page 1 of 2" in first and "=cmd job 54" in first  # newest first
    assert "=cmd job 04" in dashboard.get("/jobs?page=2").text
    assert "1–1 of 1 job" in dashboard.get("/jobs?q=batch_n07").text
    paused = dashboard.get("/jobs?status=paused").text
    assert "1–1 of 1 job" in paused and "=cmd job 02" in paused
    assert "Status must be one of" in dashboard.get("/jobs?status=bogus").text
    assert "No job matches this filter" in dashboard.get("/jobs?q=nothing-like-this").text

    exported = dashboard.get("/jobs/export?format=csv&status=paused")
    assert exported.mimetype == "text/csv" and "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["name"] for row in rows] == ["'=cmd job 02"]  # a formula is defused for spreadsheets
    as_json = json.loads(dashboard.get("/jobs/export?format=json&q=batch_n1").text)
    assert len(as_json) == 10 and as_json[0]["name"] == "=cmd job 19"


def test_the_empty_states_say_what_to_do_next(dashboard: FlaskClient) -> None:
    assert "No jobs yet" in dashboard.get("/jobs").text and "teckochecker demo" in dashboard.get("/jobs").text
    assert "No secrets yet" in dashboard.get("/secrets").text
    assert "Nothing needs attention" in dashboard.get("/").text


def test_the_live_fragment_polls_while_the_job_runs(dashboard: FlaskClient, client, guide_secrets) -> None:
    client.post("/api/jobs", json=GUIDE_JOB)
    fragment = dashboard.get("/jobs/1/live")
    assert fragment.status_code == 200 and 'data-live-url="/jobs/1/live"' in fragment.text
    assert fragment.text.lstrip().startswith('<div id="job-live"')
    signed_out = dashboard.application.test_client()
    assert signed_out.get("/jobs/1/live", headers={"X-Dashboard-Fragment": "1"}).status_code == 401
    assert signed_out.get("/jobs/1/live").status_code == 302


@pytest.mark.parametrize("path", ["/sign-in?next=//evil.example", "/sign-in?next=https://evil.example"])
def test_sign_in_only_returns_to_this_site(app: Flask, path: str) -> None:
    client = app.test_client()
    page = client.get(path)
    response = client.post(path, data={"csrf_token": csrf_token_in(page.text), "token": TOKEN})
    assert response.headers["Location"] == "/"


def test_a_long_refusal_is_shortened_so_the_session_cookie_survives(dashboard, client, guide_secrets) -> None:
    for index in range(12):
        client.post("/api/jobs", json={**GUIDE_JOB, "name": f"{index:02} " + "long name " * 24})
    post_form(dashboard, "/secrets", "/secrets/1/delete")
    page = dashboard.get("/secrets")
    assert page.status_code == 200 and "is used by 12 job(s)" in page.text and "…</p>" in page.text
    assert dashboard.get("/jobs").status_code == 200  # still signed in


@pytest.mark.parametrize(
    ("offset_seconds", "text"),
    [
        (0, "now"),
        (42, "in 42 s"),
        (-59, "59 s ago"),
        (61, "in 1 min"),
        (-3 * 3600 - 5, "3 h ago"),
        (2 * 86400, "in 2 d"),
    ],
)
def test_times_read_relative_with_the_utc_time_beside(offset_seconds: int, text: str) -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert relative_text(now + timedelta(seconds=offset_seconds), now=now) == text
    assert utc_text(now) == "2026-12-01 12:00:00 UTC" and relative_text(None) == utc_text(None) == "—"


def test_odd_numbers_in_forms_and_urls_are_refused_cleanly(dashboard: FlaskClient, guide_secrets) -> None:
    form = {
        "name": "Odd", "batch_ids": "batch_odd", "openai_secret": "1", "keboola_secret": "2",
        "keboola_stack_url": GUIDE_JOB["keboola_stack_url"], "keboola_component_id": "c",
        "keboola_configuration_id": "1", "poll_interval_seconds": "120",
    }  # fmt: skip
    huge = "9" * 5000  # beyond what Python's int() reads
    odd_values = (
        ("poll_interval_seconds", "²"),
        ("poll_interval_seconds", "-5"),
        ("poll_interval_seconds", huge),
        ("openai_secret", "9" * 12),
        ("openai_secret", huge),
        ("keboola_secret", "²"),
    )
    for field, value in odd_values:
        refused = post_form(dashboard, "/jobs/new", "/jobs/new", {**form, field: value})
        assert refused.status_code == 422 and f'id="{field}-error"' in refused.text, (field, value[:20])
    long_interval = post_form(dashboard, "/jobs/new", "/jobs/new", {**form, "poll_interval_seconds": huge})
    assert "must be a whole number of seconds between 30 and 3600" in long_interval.text
    assert post_form(dashboard, "/jobs/new", "/jobs/new", form).status_code == 302
    edit = {key: form[key] for key in ("name", "keboola_component_id", "keboola_configuration_id")}
    edit |= {"keboola_stack_url": form["keboola_stack_url"], "poll_interval_seconds": huge}
    refused_edit = post_form(dashboard, "/jobs/1/edit", "/jobs/1/edit", edit)
    assert refused_edit.status_code == 422 and 'id="poll_interval_seconds-error"' in refused_edit.text
    for page in ("²", "99999999999999", huge):
        listed = dashboard.get(f"/jobs?page={page}")
        assert listed.status_code == 200 and "1–1 of 1 job" in listed.text
    assert dashboard.get("/jobs/99999999999").status_code == 404
    assert dashboard.get("/jobs/0").status_code == 404
