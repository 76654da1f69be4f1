"""The application factory: settings in, a configured Flask app out. Nothing is created at import time."""

from __future__ import annotations

from flask import Flask

from api import cors, guards
from api.database import init_database
from api.docs import init_docs
from api.errors import JsonErrorsApi, register_error_handlers
from api.health import blp as health_blp
from api.jobs import blp as jobs_blp
from api.metrics import init_metrics
from api.schemas import ExactlyOneOfPlugin
from api.secrets import blp as secrets_blp
from api.stats import blp as stats_blp
from api.web import init_dashboard
from api.webhooks import blp as webhooks_blp
from teckochecker.config import Settings

API_TITLE = "TeckoChecker API"
# The version of the HTTP contract, not of the package: it changes when the API does.
API_VERSION = "1.0.0"
OPENAPI_VERSION = "3.0.3"
API_DESCRIPTION = (
    "Watch OpenAI Batch API batches and start a Keboola Connection job when they have all finished.\n\n"
    "Every endpoint except `/api/health`, `/api/webhooks/openai` (signed by OpenAI instead) and the "
    "documentation needs `Authorization: Bearer <API_TOKEN>`. "
    "Errors share one shape: `{code, status, message, errors}`. Lists are paginated with `page` and "
    "`page_size`; the `X-Pagination` header holds the totals."
)


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    app.config.update(
        API_TITLE=API_TITLE,
        API_VERSION=API_VERSION,
        OPENAPI_VERSION=OPENAPI_VERSION,
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_REDOC_PATH="redoc",
        API_SPEC_OPTIONS={
            "info": {"description": API_DESCRIPTION},
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
        MAX_CONTENT_LENGTH=guards.MAX_BODY_BYTES,
    )
    init_database(app, settings)
    init_docs(app)

    # Order matters: timing starts first; a CORS preflight is answered before the token check, which runs
    # before reading a body.
    init_metrics(app)
    app.before_request(cors.answer_preflight)
    app.before_request(guards.require_bearer_token)
    app.before_request(guards.require_write_role)
    app.before_request(guards.require_json_body)
    app.after_request(cors.add_cors_headers)

    api = JsonErrorsApi(app, spec_kwargs={"extra_plugins": [ExactlyOneOfPlugin()]})
    register_error_handlers(app)
    for blueprint in (health_blp, stats_blp, secrets_blp, jobs_blp, webhooks_blp):
        api.register_blueprint(blueprint)
    # The dashboard under `/`: its own session sign-in, CSRF protection and security headers (api/web).
    init_dashboard(app, settings)
    return app
