"""The committed OpenAPI spec is the one the code produces, and it documents every operation fully."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from api.spec import render_spec
from tests.conftest import REPO_ROOT

SPEC_PATH = REPO_ROOT / "docs" / "openapi.json"
REGENERATE = "python -m api.spec > docs/openapi.json"
PUBLIC_OPERATIONS = {("get", "/api/health")}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


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
    assert len(operations) == 19
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
