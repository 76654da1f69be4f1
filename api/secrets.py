"""`/api/admin/secrets`: store, list and delete encrypted secrets. A value goes in and never comes out."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask_smorest import Page

from api.blueprint import Blueprint
from api.database import UnitOfWorkView, api_state, db_session
from api.errors import documents_errors
from api.schemas import (
    LOCATION_HEADER,
    MAX_ID,
    SecretCreateSchema,
    SecretEventsSchema,
    SecretSchema,
    SecretUpdateSchema,
    SecretVerifySchema,
    VerificationSchema,
)
from teckochecker.models import Secret
from teckochecker.services import secrets as secret_service
from teckochecker.services.verification import verify_stored_secret

blp = Blueprint(
    "secrets",
    __name__,
    url_prefix="/api/admin/secrets",
    description="Encrypted OpenAI keys, Keboola tokens, OpenAI webhook signing secrets and notification targets "
    "(Apprise URLs). Values are write-only: no response contains them.",
)


@blp.route("")
class Secrets(UnitOfWorkView):
    @blp.response(200, SecretSchema(many=True))
    # Installations hold a handful of secrets, so the page is cut from the full list.
    @blp.paginate(Page)
    @documents_errors(blp, 401)
    def get(self) -> list[Secret]:
        """List secrets (names and types, never values)"""
        return secret_service.list_secrets(db_session())

    @blp.arguments(SecretCreateSchema, example={"name": "openai-test", "type": "openai", "value": "sk-..."})
    @blp.response(201, SecretSchema, headers=LOCATION_HEADER)
    @documents_errors(blp, 401, 403, 409, 422, 503)
    def post(self, data: dict[str, Any]) -> tuple[Secret, int, dict[str, str]]:
        """Store a secret, encrypted with SECRET_KEY

        409 when the name is taken; 503 when the server has no SECRET_KEY.
        """
        secret = secret_service.add_secret(
            db_session(),
            api_state().vault,
            name=data["name"],
            type=data["type"],
            value=data["value"],
            events=data.get("events"),
        )
        return secret, 201, {"Location": url_for("secrets.SecretById", secret_id=secret.id)}


SECRET_PATH = f"/<int(min=1, max={MAX_ID}):secret_id>"
SECRET_ID_PARAMETER = [{"in": "path", "name": "secret_id", "description": "The secret's id.", "example": 1}]


@blp.route(SECRET_PATH, parameters=SECRET_ID_PARAMETER)
class SecretById(UnitOfWorkView):
    @blp.response(200, SecretSchema)
    @documents_errors(blp, 401, 404)
    def get(self, secret_id: int) -> Secret:
        """Show a secret (never its value)"""
        return secret_service.get_secret(db_session(), secret_id)

    @blp.arguments(SecretUpdateSchema, example={"value": "sk-new..."})
    @blp.response(200, SecretSchema)
    @documents_errors(blp, 401, 403, 404, 422, 503)
    def patch(self, data: dict[str, Any], secret_id: int) -> Secret:
        """Replace a secret's value (rotate a key)

        Jobs using it pick the new value up at their next call. 503 when the server has no SECRET_KEY.
        """
        session = db_session()
        secret = secret_service.get_secret(session, secret_id)
        return secret_service.replace_secret_value(session, api_state().vault, secret, data["value"])

    @blp.response(204)
    @documents_errors(blp, 401, 403, 404, 409)
    def delete(self, secret_id: int) -> None:
        """Delete a secret no job uses

        409 naming the jobs that still use it: delete those jobs first.
        """
        session = db_session()
        secret_service.delete_secret(session, secret_service.get_secret(session, secret_id))


@blp.route(f"{SECRET_PATH}/verify", parameters=SECRET_ID_PARAMETER)
class SecretVerify(UnitOfWorkView):
    @blp.arguments(SecretVerifySchema, example={"stack": "https://connection.eu-central-1.keboola.com"})
    @blp.response(200, VerificationSchema)
    @documents_errors(blp, 401, 403, 404, 422, 503)
    def post(self, data: dict[str, Any], secret_id: int) -> dict[str, Any]:
        """Ask OpenAI or Keboola whether they accept a stored secret

        OpenAI: list batches with the key. Keboola: verify the token on `stack`. 200 with the verdict whatever
        it is (`valid`, `invalid`, `unreachable`); the message never contains the secret.
        """
        session = db_session()
        secret = secret_service.get_secret(session, secret_id)
        state = api_state()
        result = verify_stored_secret(session, state.vault, state.settings, secret, stack=data.get("stack"))
        return {"verdict": result.verdict, "valid": result.ok, "message": result.message}


@blp.route(f"{SECRET_PATH}/events", parameters=SECRET_ID_PARAMETER)
class SecretEvents(UnitOfWorkView):
    @blp.arguments(SecretEventsSchema, example={"events": ["failed", "stalled"]})
    @blp.response(200, SecretSchema)
    @documents_errors(blp, 401, 403, 404, 422)
    def put(self, data: dict[str, Any], secret_id: int) -> Secret:
        """Choose which events a notification target hears of

        `["all"]` for every event. 422 for a secret that is not a notification target.
        """
        session = db_session()
        secret = secret_service.get_secret(session, secret_id)
        return secret_service.set_notification_events(session, secret, data["events"])
