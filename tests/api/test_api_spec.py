"""The committed OpenAPI spec is the one the code produces, and it documents every operation fully."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import re

import pytest
from flask.testing import FlaskClient

from api.docs import REDOC_FOLDER, REDOC_SHA384, swagger_ui_version
from api.spec import render_spec
from teckochecker.services.secrets import SECRET_VALUE_MAX_LENGTH
from teckochecker.services.validation import NAME_MAX_LENGTH
from tests.conftest import REPO_ROOT

SPEC_PATH = REPO_ROOT / "docs" / "openapi.json"
REGENERATE = "python -m api.spec > docs/openapi.json"
PUBLIC_OPERATIONS = {("get", "/api/health"), ("post", "/api/webhooks/openai")}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
ASSET_URL = re.compile(r'(?:src|href)="([^"]*)"')


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(render_spec())


def test_the_committed_spec_matches_the_code() -> None:
    if not SPEC_PATH.is_file() or SPEC_PATH.read_text() != render_spec():
        pytest.fail(f"docs/openapi.json differs from what the code generates. Regenerate it: `{REGENERATE}`")


def test_the_served_spec_is_the_committed_one_whatever_the_settings(anonymous: FlaskClient) -> None:
    assert anonymous.get("/openapi.json").json == json.loads(SPEC_PATH.read_text())


def test_swagger_ui_and_redoc_are_served(anonymous: FlaskClient) -> None:
    for path, marker in (("/docs", "swagger-ui"), ("/redoc", "redoc")):
        response = anonymous.get(path)
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert marker in response.get_data(as_text=True) and "/openapi.json" in response.get_data(as_text=True)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_pages_load_their_assets_from_the_app_itself(anonymous: FlaskClient, page: str) -> None:
    """No CDN: the pages work without internet access, and every asset is a pinned file the app serves."""
    html = anonymous.get(page).get_data(as_text=True)
    assets = ASSET_URL.findall(html)
    assert assets and "http://" not in html and "https://" not in html
    for url in assets:
        assert url.startswith("/docs/assets/") and not url.startswith("//"), url
        response = anonymous.get(url)
        assert response.status_code == 200 and len(response.data) > 1000, url
        assert response.headers["Cache-Control"] == "public, max-age=31536000", url  # the version is in the URL


def test_the_documentation_assets_are_the_pinned_versions(anonymous: FlaskClient) -> None:
    redoc = (REDOC_FOLDER / "redoc.standalone.js").read_bytes()
    assert base64.b64encode(hashlib.sha384(redoc).digest()).decode() == REDOC_SHA384
    assert swagger_ui_version() == importlib.metadata.version("flask-swagger-ui")  # it ships swagger-ui-dist's own
    assert f"/docs/assets/swagger-ui-{swagger_ui_version()}/" in anonymous.get("/docs").get_data(as_text=True)
    assert anonymous.get("/docs/assets/redoc-0.0.1/redoc.standalone.js").status_code == 404
    assert anonymous.get("/docs/assets/redoc-2.5.4/../../app.py").status_code == 404


def test_the_spec_documents_the_limits_the_api_enforces(spec: dict) -> None:
    schemas = spec["components"]["schemas"]
    for schema in ("SecretCreate", "SecretUpdate"):
        value = schemas[schema]["properties"]["value"]
        assert (value["minLength"], value["maxLength"]) == (1, SECRET_VALUE_MAX_LENGTH), schema
    for schema in ("SecretCreate", "JobCreate", "JobUpdate"):
        name = schemas[schema]["properties"]["name"]
        assert (name["minLength"], name["maxLength"]) == (1, NAME_MAX_LENGTH), schema
    search = next(p for p in spec["paths"]["/api/jobs"]["get"]["parameters"] if p["name"] == "q")["schema"]
    assert re.fullmatch(search["pattern"], "Café\u00a0☕") and not re.search(search["pattern"], "a\x85b")


def test_the_spec_documents_the_alternatives_of_a_new_job(spec: dict) -> None:
    assert spec["components"]["schemas"]["JobCreate"]["allOf"] == [
        {"oneOf": [{"required": ["batch_id"]}, {"required": ["batch_ids"]}]},
        {"oneOf": [{"required": ["openai_secret_id"]}, {"required": ["openai_secret"]}]},
        {"oneOf": [{"required": ["keboola_secret_id"]}, {"required": ["keboola_secret"]}]},
    ]


@pytest.mark.parametrize("path", ["/api/jobs", "/api/admin/secrets"])
def test_the_pagination_header_is_documented_as_the_json_string_it_is(spec: dict, path: str) -> None:
    header = spec["paths"][path]["get"]["responses"]["200"]["headers"]["X-Pagination"]
    assert header["schema"] == {"type": "string"}
    assert set(json.loads(header["example"])) == {
        "total", "total_pages", "first_page", "last_page", "page", "previous_page", "next_page"
    }  # fmt: skip


def test_bearer_security_is_declared(spec: dict) -> None:
    assert spec["components"]["securitySchemes"] == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    assert spec["security"] == [{"bearerAuth": []}]


def test_every_operation_is_documented(spec: dict) -> None:
    operations = [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    assert len(operations) == 21
    for method, path, operation in operations:
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        responses = operation["responses"]
        assert "default" in responses, where
        if (method, path) in PUBLIC_OPERATIONS:
            assert operation["security"] == [], where
        else:
            assert "security" not in operation and "401" in responses, where
        if "{" in path:
            assert "404" in responses, where
            assert item_parameters(spec, path)[0]["schema"]["maximum"] == 2**31 - 1, where
        if "requestBody" in operation:
            assert "422" in responses and "example" in operation["requestBody"]["content"]["application/json"], where
        for parameter in operation.get("parameters", []):
            assert parameter["schema"], where


def item_parameters(spec: dict, path: str) -> list[dict]:
    return spec["paths"][path]["parameters"]


def test_secret_values_are_write_only(spec: dict) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["SecretCreate"]["properties"]["value"]["writeOnly"] is True
    assert "value" not in schemas["Secret"]["properties"]
