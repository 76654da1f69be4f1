"""CORS for the origins in CORS_ORIGINS only: the handful of headers browsers need, without a dependency."""

from __future__ import annotations

from flask import Response, current_app, request

from api.database import api_state

ALLOWED_METHODS = "GET, POST, PATCH, DELETE"
ALLOWED_HEADERS = "Authorization, Content-Type"
EXPOSED_HEADERS = "Location, X-Pagination"
PREFLIGHT_MAX_AGE_SECONDS = "600"


def _allowed_origin() -> str | None:
    origin = request.headers.get("Origin")
    if not origin:
        return None
    allowed = {configured.rstrip("/") for configured in api_state().settings.cors_origins}
    if origin in allowed:
        return origin
    return "*" if "*" in allowed else None


def answer_preflight() -> Response | None:
    """A preflight from an allowed origin is answered at once; others get no CORS headers, so browsers refuse."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    origin = _allowed_origin()
    if origin is None:
        return None
    response = current_app.response_class(status=204)
    response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_SECONDS
    return response


def add_cors_headers(response: Response) -> Response:
    if api_state().settings.cors_origins:
        # Caches must not serve one origin's answer to another.
        response.vary.add("Origin")
    origin = _allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response
