"""Signing in to the dashboard: a token in, a signed session cookie out that names the token, never holds it.

The cookie (Flask's signed session) holds the token's row id, name and role, and Flask-WTF's CSRF secret.
It is HttpOnly, SameSite=Strict, and Secure whenever the request came over https. Revoking a token ends its
sessions at the next request. With no API_TOKEN and no named token the dashboard is open, like the API.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from api.database import api_state, db_session
from api.web.actions import notify
from teckochecker.config import Settings
from teckochecker.services.tokens import (
    OPEN_ACCESS,
    Principal,
    authenticate,
    authentication_required,
    current_principal,
)

blp = Blueprint("auth", __name__)

SESSION_COOKIE_NAME = "teckochecker_session"
SESSION_KEY_INFO = b"teckochecker dashboard session signing key v1"
# Endpoints a signed-out browser may reach.
PUBLIC_ENDPOINTS = frozenset({"web.static", "web.auth.sign_in"})
# The live fragments are fetched by app.js, which cannot follow a redirect to the sign-in page usefully.
FRAGMENT_HEADER = "X-Dashboard-Fragment"


def session_signing_key(settings: Settings) -> bytes | None:
    """A key for the session cookie, derived (HKDF) from SECRET_KEY's first key and API_TOKEN.

    Never the Fernet key itself: a leaked cookie key must not decrypt secrets. Changing API_TOKEN or rotating
    SECRET_KEY changes it, which signs every browser out. None without SECRET_KEY.
    """
    if not settings.secret_keys:
        return None
    material = settings.secret_keys[0].encode() + b"\0" + (settings.api_token or "").encode()
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=SESSION_KEY_INFO).derive(material)


class DashboardSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure whenever this request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure

    def open_session(self, app: Flask, incoming: Request) -> SecureCookieSession | None:
        # Most requests (the REST API, webhooks) carry no session cookie: an empty session needs no signing
        # serializer, which Flask would otherwise build for every request.
        if app.secret_key is not None and not incoming.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, incoming)


def init_sessions(app: Flask, settings: Settings) -> None:
    app.secret_key = session_signing_key(settings)
    app.session_interface = DashboardSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )


def _remember(principal: Principal) -> None:
    session.clear()
    session["token_id"] = principal.token_id
    session["token_name"] = principal.name
    session["role"] = principal.role.value


def _signed_in_principal() -> Principal | None:
    name = session.get("token_name")
    if not isinstance(name, str):
        return None
    principal = current_principal(db_session(), api_state().settings, session.get("token_id"), name)
    if principal is None:
        # Revoked, or API_TOKEN changed: the cookie names a token that no longer works.
        session.clear()
    return principal


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never `//host`, a scheme, or a backslash that browsers read as a slash."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("web.overview.overview")


def guard_dashboard() -> Response | str | tuple[Any, int] | None:
    """Every dashboard request: a session key must exist; POSTs need a CSRF token; pages need a principal;
    changes need the write role."""
    if current_app.secret_key is None:
        return render_template("error.html", title="SECRET_KEY is not set", message=(
            "The dashboard signs its session cookie with a key derived from SECRET_KEY. Set SECRET_KEY in .env "
            "(`python scripts/init_db.py --create-env` writes one) and restart."
        )), 503  # fmt: skip
    if request.method == "POST":
        current_app.extensions["csrf"].protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    principal = _signed_in_principal()
    if principal is None and not authentication_required(db_session(), api_state().settings):
        principal = OPEN_ACCESS
    if principal is None:
        if request.headers.get(FRAGMENT_HEADER):
            return "Signed out", 401
        return redirect(url_for("web.auth.sign_in", next=request.full_path.rstrip("?")))
    g.principal = principal
    if request.method == "POST" and not principal.can_write:
        return render_template("error.html", title="Read-only token", message=(
            f"You are signed in as '{principal.name}', a token with the read role: it can see everything but "
            "change nothing. Sign in with a write token to do this."
        )), 403  # fmt: skip
    return None


@blp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response | str | tuple[str, int]:
    settings = api_state().settings
    if not authentication_required(db_session(), settings):
        return redirect(url_for("web.overview.overview"))
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("sign_in.html", next=target)
    principal = authenticate(db_session(), settings, request.form.get("token", ""))
    if principal is None:
        return render_template("sign_in.html", next=target, error="That token is not valid."), 401
    _remember(principal)
    return redirect(target)


@blp.route("/sign-out", methods=["POST"])
def sign_out() -> Response:
    session.clear()
    notify("You are signed out.")
    return redirect(url_for("web.auth.sign_in"))
