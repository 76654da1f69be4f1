"""`/secrets`: add, rotate, verify and delete secrets. A value goes in through a form and never comes back out."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for

from api.database import api_state, db_session
from api.schemas import MAX_ID
from api.web.actions import commit, notify, perform
from teckochecker.errors import ConflictError, ValidationError
from teckochecker.models import SecretType
from teckochecker.services import secrets as secret_service
from teckochecker.services.verification import STACK_BOUND_TYPES, verify_stored_secret

blp = Blueprint("secrets", __name__, url_prefix="/secrets")


def _page(*, values: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200):
    session = db_session()
    return (
        render_template(
            "secrets.html",
            secrets=secret_service.list_secrets(session),
            usage=secret_service.usage_counts(session),
            types=list(SecretType),
            stack_bound={kind.value for kind in STACK_BOUND_TYPES},
            values=values or {},
            errors=errors or {},
            can_write=g.principal.can_write,
        ),
        status,
    )


@blp.route("")
def secret_list() -> Any:
    return _page()


@blp.route("", methods=["POST"])
def add() -> Any:
    # The value is read once and never put back into the page, not even after an error.
    values = {"name": request.form.get("name", ""), "type": request.form.get("type", "")}
    try:
        secret = secret_service.add_secret(
            db_session(),
            api_state().vault,
            name=values["name"],
            type=values["type"],
            value=request.form.get("value", ""),
        )
        commit()
    except (ValidationError, ConflictError) as error:
        db_session().rollback()
        field = error.field if isinstance(error, ValidationError) else "name"
        message = error.message if isinstance(error, ValidationError) else str(error)
        return _page(values=values, errors={field: message}, status=422)
    notify(f"Secret '{secret.name}' added (encrypted).")
    return redirect(url_for("web.secrets.secret_list"))


@blp.route(f"/<int(min=1, max={MAX_ID}):secret_id>/value", methods=["POST"])
def rotate(secret_id: int) -> Response:
    def action() -> str:
        session = db_session()
        secret = secret_service.get_secret(session, secret_id)
        secret_service.replace_secret_value(session, api_state().vault, secret, request.form.get("value", ""))
        return f"Secret '{secret.name}' has a new value; jobs use it at their next call."

    return perform(action, then=url_for("web.secrets.secret_list"))


@blp.route(f"/<int(min=1, max={MAX_ID}):secret_id>/verify", methods=["POST"])
def verify(secret_id: int) -> Response:
    session = db_session()
    secret = secret_service.get_secret(session, secret_id)
    state = api_state()
    try:
        result = verify_stored_secret(
            session, state.vault, state.settings, secret, stack=request.form.get("stack", "").strip() or None
        )
    except ValidationError as error:
        notify(f"Secret '{secret.name}' was not checked: {error.message}", "error")
    else:
        notify(f"Secret '{secret.name}' is {result.verdict}: {result.message}", "success" if result.ok else "error")
    return redirect(url_for("web.secrets.secret_list"))


@blp.route(f"/<int(min=1, max={MAX_ID}):secret_id>/delete", methods=["POST"])
def delete(secret_id: int) -> Response:
    def action() -> str:
        session = db_session()
        secret = secret_service.get_secret(session, secret_id)
        secret_service.delete_secret(session, secret)
        return f"Secret '{secret.name}' deleted."

    return perform(action, then=url_for("web.secrets.secret_list"))
