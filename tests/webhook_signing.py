"""Signing webhooks as OpenAI does, for tests: Standard Webhooks headers made with the standardwebhooks library."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def batch_event(batch_id: str, event_type: str = "batch.completed") -> dict[str, Any]:
    return {
        "id": f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "type": event_type,
        "created_at": int(time.time()),
        "data": {"id": batch_id},
    }


def signed(
    secret: str, event: dict[str, Any], *, webhook_id: str | None = None, sent_at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery of `event`."""
    body = json.dumps(event, separators=(",", ":"))
    webhook_id = webhook_id or f"wh_{secrets.token_hex(8)}"
    moment = time.time() if sent_at is None else sent_at
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(moment, UTC), body)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment)),
        "webhook-signature": signature,
    }
    return body.encode(), headers
