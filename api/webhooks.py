"""`POST /api/webhooks/openai`: OpenAI's batch webhooks, verified by signature instead of a bearer token.

Thin: the rules live in teckochecker/services/webhooks.py. The body is read raw (its bytes are signed), at
most MAX_BODY_BYTES, whether announced by Content-Length or sent chunked. Nothing outside the database is
called, so the answer takes milliseconds.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import request

from api.blueprint import Blueprint
from api.database import UnitOfWorkView, api_state, db_session
from api.errors import error_response
from api.schemas import ErrorSchema, WebhookReceiptSchema
from teckochecker.services import webhooks

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/webhooks",
    description="Webhooks from OpenAI. No bearer token: each request must carry a valid Standard Webhooks signature.",
)

_TOO_LARGE = f"The webhook body is larger than {webhooks.MAX_BODY_BYTES} bytes."
_NOT_FOUND = "No such resource. The endpoints are listed at /docs."
_REFUSALS = {
    400: (
        "Not a validly signed webhook (bad or missing signature headers, a stale timestamp, no matching secret).",
        "The webhook was refused: no stored signing secret matches the signature",
    ),
    404: ("No OpenAI webhook signing secret is stored, so webhooks are not accepted.", _NOT_FOUND),
    413: (f"The body is larger than {webhooks.MAX_BODY_BYTES} bytes.", _TOO_LARGE),
}


def _documented(func: Any) -> Any:
    for code, (description, message) in _REFUSALS.items():
        example = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
        func = blp.alt_response(code, schema=ErrorSchema, description=description, example=example)(func)
    return blp.doc(security=[])(func)


@blp.route("/openai")
class OpenAIWebhook(UnitOfWorkView):
    @blp.response(200, WebhookReceiptSchema)
    @_documented
    def post(self) -> Any:
        """Receive an OpenAI webhook (batch.completed, batch.failed, batch.cancelled, batch.expired)

        Register `PUBLIC_URL` + `/api/webhooks/openai` in OpenAI's dashboard; `teckochecker webhook info` prints
        it. The body is OpenAI's event, signed with a `whsec_…` secret stored as an `openai_webhook` secret. A
        batch event makes every active job watching the batch due now; the engine's next check decides. A
        replayed `webhook-id`, another event type or an unknown batch is acknowledged with 200 and changes
        nothing.
        """
        session = db_session()
        secrets = webhooks.signing_secrets(session, api_state().vault)
        if not secrets:
            return error_response(404, _NOT_FOUND)
        if request.content_length is not None and request.content_length > webhooks.MAX_BODY_BYTES:
            return error_response(413, _TOO_LARGE)
        # A chunked body has no Content-Length: read at most one byte more than the limit, and refuse if it came.
        request.max_content_length = webhooks.MAX_BODY_BYTES + 1
        body = request.get_data(cache=False)
        if len(body) > webhooks.MAX_BODY_BYTES:
            return error_response(413, _TOO_LARGE)
        try:
            receipt = webhooks.receive(session, secrets, body, request.headers)
        except webhooks.WebhookRefused as refusal:
            return error_response(400, f"The webhook was refused: {refusal}")
        return {"outcome": receipt.outcome, "event_type": receipt.event_type, "jobs_due": receipt.jobs_due}
