"""The dashboard: server-rendered pages under `/`, beside the REST API under `/api`.

Views are thin: they call the same services as the API and the CLI, and render Jinja2 templates (autoescaped).
A little plain JavaScript (static/app.js) refreshes the job page's live fragment; no page needs it to work.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from api.web import auth, formatting, jobs, overview, secrets, setup
from api.web.security import add_security_headers
from teckochecker.config import Settings
from teckochecker.errors import ConfigError, NotFoundError, TeckoError, VaultError

logger = logging.getLogger(__name__)

STATIC_URL_PATH = "/assets"  # `/static` is the Flask app's own


def _not_found(error: NotFoundError) -> tuple[str, int]:
    return render_template("error.html", title="Not found", message=str(error)), 404


def _refused(error: TeckoError) -> tuple[str, int]:
    # A set-up problem (no SECRET_KEY) is the server's; anything else the request's. Messages hold no secret.
    status = 503 if isinstance(error, ConfigError | VaultError) else 400
    return render_template("error.html", title="Not possible", message=str(error)), status


def _unexpected(error: Exception) -> tuple[str, int]:
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return render_template("error.html", title="Something went wrong", message=(
        "An unexpected error occurred. It has been logged; try again, or see the server log."
    )), 500  # fmt: skip


def _csrf_refused(error: CSRFError) -> tuple[str, int]:
    return render_template("error.html", title="Form refused", message=(
        f"{error.description} The form was not sent from this dashboard, or your session ended. Go back, reload "
        "the page and try again."
    )), 400  # fmt: skip


def _http_error(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    return render_template("error.html", title=error.name, message=error.description), code


def _dashboard_blueprint() -> Blueprint:
    web = Blueprint(
        "web", __name__, template_folder="templates", static_folder="static", static_url_path=STATIC_URL_PATH
    )
    web.before_request(auth.guard_dashboard)
    web.after_request(add_security_headers)
    web.register_error_handler(NotFoundError, _not_found)
    web.register_error_handler(CSRFError, _csrf_refused)
    web.register_error_handler(HTTPException, _http_error)
    web.register_error_handler(TeckoError, _refused)
    web.register_error_handler(Exception, _unexpected)
    for child in (auth.blp, overview.blp, jobs.blp, secrets.blp, setup.blp):
        web.register_blueprint(child)
    return web


def init_dashboard(app: Flask, settings: Settings) -> None:
    auth.init_sessions(app, settings)
    app.config.update(
        # The dashboard calls protect() itself, so the bearer-token API under /api is never asked for a CSRF token.
        WTF_CSRF_CHECK_DEFAULT=False,
        # A page left open all day still submits; the token lives as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
    )
    CSRFProtect(app)
    app.jinja_env.filters.update(
        utc=formatting.utc_text,
        relative=formatting.relative_text,
        duration=formatting.duration_text,
        status_text=formatting.status_text,
    )
    app.register_blueprint(_dashboard_blueprint())
