"""What every request passes before it reaches a view: the bearer token, then a JSON body of bounded size."""

from __future__ import annotations

import hmac

from flask import Response, request

from api.database import api_state
from api.errors import AUTHENTICATE_HEADER, error_response

MAX_BODY_BYTES = 1024 * 1024
# The health check, the metrics (counts and timings only) and the documentation (spec, Swagger UI, ReDoc and
# their scripts) are readable without a token.
PUBLIC_BLUEPRINTS = frozenset({"health", "metrics", "api-docs", "docs-assets"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
HOW_TO_AUTHENTICATE = "Send the API token as the header `Authorization: Bearer <API_TOKEN>` (API_TOKEN is set in .env)."


def require_bearer_token() -> Response | None:
    token = api_state().settings.api_token
    if (
        token is None  # no API_TOKEN: the API is open, and `teckochecker api` listens on loopback only
        or request.method == "OPTIONS"  # browsers send CORS preflights without credentials
        or request.routing_exception is not None  # unknown URLs answer 404/405, which reveal nothing
        or request.blueprint in PUBLIC_BLUEPRINTS
    ):
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    if not header:
        return error_response(
            401, f"Authentication required. {HOW_TO_AUTHENTICATE}", None, {"WWW-Authenticate": AUTHENTICATE_HEADER}
        )
    return error_response(
        401,
        f"The bearer token is not valid. {HOW_TO_AUTHENTICATE}",
        None,
        {"WWW-Authenticate": f'{AUTHENTICATE_HEADER}, error="invalid_token"'},
    )


def require_json_body() -> Response | None:
    """Refuse oversized bodies before reading them, and bodies that are not JSON instead of ignoring them."""
    if request.method not in BODY_METHODS:
        return None
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return error_response(413, f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes.")
    has_body = bool(length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if has_body and not request.is_json:
        return error_response(415, "Send the request body as JSON with `Content-Type: application/json`.")
    return None
