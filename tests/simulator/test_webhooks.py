"""The simulator sends webhooks as OpenAI does: signed, when a batch reaches a terminal status, retried on
non-2xx answers, and with the faults a receiver must survive."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.receivers import JsonReceiver, json_receiver
from tests.webhook_signing import new_signing_secret

PATH = "/api/webhooks/openai"


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _verify(secret: str, receiver: JsonReceiver, index: int = 0) -> dict:
    _, _, payload, headers = receiver.received[index]
    body = json.dumps(payload, separators=(",", ":"))
    return Webhook(secret).verify(body, {name.lower(): value for name, value in headers.items()})


def test_a_finished_batch_is_announced_once_signed_at_its_terminal_time(simulator) -> None:
    secret = new_signing_secret()
    with json_receiver() as receiver:
        simulator.control.configure_webhooks(receiver.http_url(PATH), secret)
        created = time.time()
        simulator.control.create_batch(batch_id="batch_hook", final_status="failed", duration=0.6)
        simulator.control.create_batch(batch_id="batch_flipped", final_status="completed", duration=3600)
        simulator.control.set_batch_status("batch_flipped", "cancelled")
        _wait(lambda: len(receiver.received) == 2)
        events = sorted((_verify(secret, receiver, i) for i in range(2)), key=lambda event: event["data"]["id"])
        assert [(e["type"], e["data"]["id"]) for e in events] == [
            ("batch.cancelled", "batch_flipped"), ("batch.failed", "batch_hook")
        ]  # fmt: skip
        assert events[0]["object"] == "event" and events[0]["id"].startswith("evt_")
        deliveries = {d["batch_id"]: d for d in simulator.control.webhooks()["deliveries"]}
        assert deliveries["batch_hook"]["terminal_at"] == pytest.approx(created + 0.6, abs=0.2)
        assert deliveries["batch_hook"]["delivered"]
        time.sleep(0.5)
        assert len(receiver.received) == 2, "each batch is announced once"


def test_non_2xx_answers_are_retried_with_the_same_webhook_id(simulator) -> None:
    secret = new_signing_secret()
    with json_receiver(**{PATH: 2}) as receiver:
        simulator.control.configure_webhooks(receiver.http_url(PATH), secret)
        simulator.control.create_batch(batch_id="batch_retried", final_status="completed", duration=0)
        _wait(lambda: len(receiver.received) == 3)
        assert [status for _, status, _, _ in receiver.received] == [500, 500, 200]
        assert len({headers["webhook-id"] for *_, headers in receiver.received}) == 1
        _verify(secret, receiver, 2)


def test_faults_duplicate_stale_bad_signature_and_drop(simulator) -> None:
    secret = new_signing_secret()
    control = simulator.control
    with json_receiver() as receiver:
        control.configure_webhooks(receiver.http_url(PATH), secret)
        for mode in ("duplicate", "stale", "bad_signature", "drop"):
            control.add_webhook_fault(mode, batch_id=f"batch_{mode}")
            control.create_batch(batch_id=f"batch_{mode}", final_status="completed", duration=0)
        _wait(lambda: len(receiver.received) == 4)
        time.sleep(0.3)
        by_batch: dict[str, list[int]] = {}
        for index, (_, _, payload, _) in enumerate(receiver.received):
            by_batch.setdefault(payload["data"]["id"], []).append(index)
        assert sorted(by_batch) == ["batch_bad_signature", "batch_duplicate", "batch_stale"]
        first, second = (receiver.received[i][3] for i in by_batch["batch_duplicate"])
        assert first["webhook-id"] == second["webhook-id"]
        with pytest.raises(WebhookVerificationError, match="too old"):
            _verify(secret, receiver, by_batch["batch_stale"][0])
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            _verify(secret, receiver, by_batch["batch_bad_signature"][0])
        dropped = [d for d in control.webhooks()["deliveries"] if d["batch_id"] == "batch_drop"]
        assert dropped[0]["fault"] == "drop" and dropped[0]["attempts"] == []
