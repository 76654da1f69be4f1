"""The Secrets page's verify action asks the live service (the simulator, over a real socket) and says what it
answered, never the value."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from teckochecker.config import Settings
from tests.api.conftest import TOKEN
from tests.api.web.conftest import post_form, sign_in
from tests.conftest import SIMULATOR_API_KEY, SIMULATOR_TOKEN, register_test_credentials


@pytest.fixture
def verifying_dashboard(app_factory, api_settings: Settings, simulator) -> FlaskClient:
    register_test_credentials(simulator)
    settings = api_settings.with_overrides(openai_base_url=simulator.openai_base_url, allow_insecure_endpoints=True)
    dashboard = app_factory(settings).test_client()
    sign_in(dashboard, TOKEN)
    for name, kind, value in (
        ("openai-live", "openai", SIMULATOR_API_KEY),
        ("keboola-live", "keboola", SIMULATOR_TOKEN),
        ("openai-revoked", "openai", "sk-nobody-knows-this-key"),
    ):
        added = post_form(dashboard, "/secrets", "/secrets", {"name": name, "type": kind, "value": value})
        assert added.status_code == 302, added.text
    return dashboard


def test_verify_reports_the_services_answer_in_the_page(verifying_dashboard: FlaskClient, simulator) -> None:
    def verify(secret_id: int, **form: str) -> str:
        response = post_form(verifying_dashboard, "/secrets", f"/secrets/{secret_id}/verify", form)
        assert response.status_code == 302 and response.headers["Location"] == "/secrets"
        return verifying_dashboard.get("/secrets").text

    assert "Secret &#39;openai-live&#39; is valid" in verify(1)
    keboola = verify(2, stack=simulator.stack_url)
    assert "Secret &#39;keboola-live&#39; is valid" in keboola and "teckochecker" in keboola
    revoked = verify(3)
    assert "Secret &#39;openai-revoked&#39; is invalid" in revoked and "notice-error" in revoked
    refused = verify(2, stack="https://evil.example.com")
    assert "Secret &#39;keboola-live&#39; was not checked" in refused
    for page in (keboola, revoked, refused):
        assert SIMULATOR_API_KEY not in page and SIMULATOR_TOKEN not in page and "sk-nobody" not in page
    assert verifying_dashboard.post("/secrets/9/verify").status_code == 400  # no CSRF token
