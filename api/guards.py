"""What every request passes before it reaches a view: the bearer token, then a JSON body of bounded size."""

from __future__ import annotations

from flask import Response, g, request

from api.database import api_state, db_session
from api.errors import AUTHENTICATE_HEADER, error_response
from teckochecker.services.tokens import OPEN_ACCESS, Principal, authenticate, authentication_required

MAX_BODY_BYTES = 1024 * 1024
# The health check, the metrics (counts and timings only) and the documentation (spec, Swagger UI, ReDoc and
# their scripts) are readable without a token. Webhooks cannot send one: their signature is checked instead
# (api/webhooks.py).
PUBLIC_BLUEPRINTS = frozenset({"health", "metrics", "api-docs", "docs-assets", "webhooks"})
# Blueprints that bound and read their request bodies themselves (a webhook's signature covers its raw bytes).
RAW_BODY_BLUEPRINTS = frozenset({"webhooks"})
# The dashboard signs people in with a session cookie of its own (api/web/auth.py), not a bearer header.
DASHBOARD_BLUEPRINT = "web"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HOW_TO_AUTHENTICATE = "Send the API token as the header `Authorization: Bearer <API_TOKEN>` (API_TOKEN is set in .env)."


def current_principal() -> Principal | None:
    """Who the request acts as, once a guard has decided."""
    return g.get("principal")


def require_bearer_token() -> Response | None:
    if (
        request.method == "OPTIONS"  # browsers send CORS preflights without credentials
        or request.routing_exception is not None  # unknown URLs answer 404/405, which reveal nothing
        or request.blueprint in PUBLIC_BLUEPRINTS
        or DASHBOARD_BLUEPRINT in request.blueprints
    ):
        return None
    settings = api_state().settings
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    principal = authenticate(db_session(), settings, given) if scheme.lower() == "bearer" else None
    if principal is None and not authentication_required(db_session(), settings):
        # No API_TOKEN and no named token: the API is open, and `teckochecker api` listens on loopback only.
        principal = OPEN_ACCESS
    if principal is not None:
        g.principal = principal
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


def require_write_role() -> Response | None:
    """A `read` token may only read: every other method is refused before the body is read."""
    principal = current_principal()
    if principal is None or principal.can_write or request.method in READ_METHODS:
        return None
    return error_response(
        403, f"The token '{principal.name}' has the read role: it may only read (GET). Use a token with the write role."
    )


def require_json_body() -> Response | None:
    """Refuse oversized bodies before reading them, and bodies that are not JSON instead of ignoring them."""
    if request.method not in BODY_METHODS or request.blueprint in RAW_BODY_BLUEPRINTS:
        return None
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return error_response(413, f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes.")
    if DASHBOARD_BLUEPRINT in request.blueprints:
        return None  # the dashboard's forms are sent as forms
    has_body = bool(length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if has_body and not request.is_json:
        return error_response(415, "Send the request body as JSON with `Content-Type: application/json`.")
    return None
