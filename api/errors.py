"""One JSON error shape for everything: `{"code", "status", "message", "errors"}`, never an HTML page.

Domain errors map to statuses here, so views stay free of try/except: ValidationError → 422 naming the
field, NotFoundError → 404, ConflictError → 409 (with the job's current status when that is the clash),
ConfigError/VaultError → 503 (the server's set-up, not the request, is at fault).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any, TypeVar

from flask import Flask, Response, jsonify, request
from flask_smorest import Api, Blueprint
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from api.schemas import ErrorSchema
from teckochecker.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    TeckoError,
    ValidationError,
    VaultError,
)
from teckochecker.services.jobs import StatusConflictError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

AUTHENTICATE_HEADER = 'Bearer realm="teckochecker"'
# How SQLite and PostgreSQL say that a table is missing (the same markers the CLI recognises).
MISSING_TABLE_MARKERS = ("no such table", "does not exist", "undefinedtable")

UNEXPECTED_ERROR = "An unexpected error occurred. It has been logged."
_DEFAULT_MESSAGES = {
    400: "The request could not be read; see errors.",
    404: "No such resource. The endpoints are listed at /docs.",
    422: "Invalid input; errors names each field that is wrong.",
    500: UNEXPECTED_ERROR,
}

_DOCUMENTED = {
    401: (
        "Missing or wrong bearer token.",
        {
            "code": 401,
            "status": "Unauthorized",
            "message": "Authentication required. Send the API token as the header "
            "`Authorization: Bearer <API_TOKEN>` (API_TOKEN is set in .env).",
        },
    ),
    403: (
        "The token has the read role, which may only read.",
        {
            "code": 403,
            "status": "Forbidden",
            "message": "The token 'grafana' has the read role: it may only read (GET). Use a token with the write "
            "role.",
        },
    ),
    404: ("Not found.", {"code": 404, "status": "Not Found", "message": "Job 42 not found"}),
    409: (
        "The request clashes with the current state.",
        {
            "code": 409,
            "status": "Conflict",
            "message": "Job 'Test job' is paused; only an active job can be paused",
            "errors": {"current_status": "paused"},
        },
    ),
    422: (
        "Invalid input; errors names each bad field.",
        {
            "code": 422,
            "status": "Unprocessable Entity",
            "message": "Invalid input: json.poll_interval_seconds: must be between 30 and 3600 seconds, got 5",
            "errors": {"json": {"poll_interval_seconds": ["must be between 30 and 3600 seconds, got 5"]}},
        },
    ),
    503: (
        "The server is not set up for this request (e.g. SECRET_KEY is missing), or the database is down or busy.",
        {"code": 503, "status": "Service Unavailable", "message": "SECRET_KEY: is not set. …"},
    ),
}


def error_payload(code: int, message: str, errors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The one error shape; also written by the gunicorn worker (api/server.py) for errors the app never sees."""
    payload: dict[str, Any] = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        payload["errors"] = errors
    return payload


def error_response(
    code: int, message: str, errors: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify(error_payload(code, message, errors))
    response.status_code = code
    response.headers.update(headers or {})
    return response


def _field_list(errors: Mapping[str, Any]) -> str:
    """`json.name, query.status` from webargs' {location: {field: [...]}}; keys only, never input values."""
    names = []
    for location, fields in errors.items():
        if isinstance(fields, Mapping):
            names.extend(f"{location}.{name}" for name in fields)
        else:
            names.append(str(location))
    return ", ".join(names)


def handle_http_exception(error: HTTPException) -> Response:
    """werkzeug's HTTP errors and flask-smorest's/webargs' `abort(…)` (which attach `data`)."""
    code = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = data.get("errors", data.get("messages"))
    headers = dict(data.get("headers") or {})
    message = data.get("message")
    if message is None and code == 422 and errors:
        message = f"Invalid input: {_field_list(errors)}"
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        allowed = ", ".join(sorted(error.valid_methods))
        headers["Allow"] = allowed
        message = message or f"{request.method} is not allowed here; allowed: {allowed}."
    if code == 401:
        headers.setdefault("WWW-Authenticate", AUTHENTICATE_HEADER)
    return error_response(code, message or _DEFAULT_MESSAGES.get(code) or error.description or "", errors, headers)


def _validation_error(error: ValidationError) -> Response:
    return error_response(
        422, f"Invalid input: json.{error.field}: {error.message}", {"json": {error.field: [error.message]}}
    )


def _not_found(error: NotFoundError) -> Response:
    return error_response(404, str(error))


def _status_conflict(error: StatusConflictError) -> Response:
    return error_response(409, str(error), {"current_status": error.current_status})


def _conflict(error: ConflictError) -> Response:
    return error_response(409, str(error))


def _setup_error(error: ConfigError | VaultError) -> Response:
    # The messages name the setting to fix and never contain a key or a secret value.
    return error_response(503, str(error))


def _other_domain_error(error: TeckoError) -> Response:
    return error_response(400, str(error))


def _database_error(error: DBAPIError) -> Response:
    detail = str(error.orig or error).lower()
    if any(marker in detail for marker in MISSING_TABLE_MARKERS):
        logger.error("database not initialised: %s", error.orig or error)
        return error_response(503, "The database is not initialised. Run `teckochecker db init`.")
    if isinstance(error, OperationalError):
        logger.warning("database unavailable: %s", error.orig or error)
        return error_response(503, "The database is unavailable; try again shortly.")
    return _unexpected(error)


def _pool_exhausted(error: PoolTimeoutError) -> Response:
    logger.warning("every database connection of this process stayed busy: %s", error)
    return error_response(503, "The database is busy; try again shortly.")


def _integrity_error(error: IntegrityError) -> Response:
    # Reached only when another writer changed the same rows between our checks and our commit.
    logger.info("integrity error, reported as a conflict: %s", error.orig or error)
    return error_response(409, "The request clashes with a change made at the same time; reload and retry.")


def _data_error(error: DataError) -> Response:
    logger.info("data error, reported as invalid input: %s", error.orig or error)
    return error_response(422, "A value cannot be stored: it is too long or not valid for its field.")


def _unexpected(error: Exception) -> Response:
    # Details go to the log only: a traceback or driver message could contain data from the request.
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(500, _DEFAULT_MESSAGES[500])


def register_error_handlers(app: Flask) -> None:
    # Flask picks the handler of the most specific class, so StatusConflictError wins over ConflictError.
    # HTTPException is handled by JsonErrorsApi, which flask-smorest registers when it is initialised.
    app.register_error_handler(ValidationError, _validation_error)
    app.register_error_handler(NotFoundError, _not_found)
    app.register_error_handler(StatusConflictError, _status_conflict)
    app.register_error_handler(ConflictError, _conflict)
    app.register_error_handler(ConfigError, _setup_error)
    app.register_error_handler(VaultError, _setup_error)
    app.register_error_handler(TeckoError, _other_domain_error)
    app.register_error_handler(OperationalError, _database_error)
    app.register_error_handler(ProgrammingError, _database_error)
    app.register_error_handler(PoolTimeoutError, _pool_exhausted)
    app.register_error_handler(IntegrityError, _integrity_error)
    app.register_error_handler(DataError, _data_error)
    app.register_error_handler(Exception, _unexpected)


class JsonErrorsApi(Api):
    """flask-smorest's Api, documenting our error schema and answering its errors in our shape."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        return handle_http_exception(error)


def documents_errors(blp: Blueprint, *codes: int) -> Callable[[F], F]:
    """Document the error responses an operation can give, each with the shared schema and an example."""

    def decorate(func: F) -> F:
        for code in codes:
            description, example = _DOCUMENTED[code]
            func = blp.alt_response(code, schema=ErrorSchema, description=description, example=example)(func)
        return func

    return decorate


@contextmanager
def domain_fields_as(names: Mapping[str, str]) -> Iterator[None]:
    """Report a domain ValidationError under the field name the client used (`batch_id`, not `batch_ids`)."""
    try:
        yield
    except ValidationError as error:
        raise ValidationError(names.get(error.field, error.field), error.message) from None
