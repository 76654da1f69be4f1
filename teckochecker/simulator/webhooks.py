"""The simulator sends webhooks as OpenAI does: a signed `batch.<status>` event when a batch reaches a terminal
status, retried with backoff while the receiver answers anything but 2xx.

Batch statuses are computed from timelines when read, so a background thread wakes at each batch's terminal
time (also after `set_batch_status` or a cancel moved it) and posts then. Signatures are Standard Webhooks
(`webhook-id`, `webhook-timestamp`, `webhook-signature`), made with the `standardwebhooks` library. Faults:
send a duplicate, a stale timestamp or a bad signature, or drop the event, for one batch or the next N events.
"""

from __future__ import annotations

import heapq
import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
from standardwebhooks.webhooks import Webhook

from teckochecker.simulator.openai_state import BATCH_TERMINAL_STATUSES
from teckochecker.simulator.timeline import SimulatorInputError

if TYPE_CHECKING:
    from teckochecker.simulator.openai_state import SimBatch

FAULT_MODES = ("duplicate", "stale", "bad_signature", "drop")
STALE_SECONDS = 600  # twice the receivers' 5-minute tolerance
MAX_ATTEMPTS = 6
FIRST_RETRY_SECONDS = 0.5
POST_TIMEOUT_SECONDS = 10.0
SENDERS = 16


@dataclass
class WebhookFault:
    mode: str
    batch_id: str | None = None
    count: int | None = 1  # for batch-less faults: how many events; None: until cleared
    fired: int = 0

    def applies(self, batch_id: str) -> bool:
        if self.batch_id is not None:
            return self.batch_id == batch_id
        return self.count is None or self.fired < self.count


@dataclass
class Delivery:
    webhook_id: str
    event: dict[str, Any]
    terminal_at: float | None
    fault: str | None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "event_id": self.event["id"],
            "type": self.event["type"],
            "batch_id": self.event["data"]["id"],
            "terminal_at": self.terminal_at,
            "fault": self.fault,
            "attempts": list(self.attempts),
            "delivered": self.delivered,
        }


def terminal_at(batch: SimBatch) -> float | None:
    """When the batch's timeline first reaches a terminal status (seconds since the epoch), if it does."""
    for step in batch.steps:
        if step.status in BATCH_TERMINAL_STATUSES:
            return batch.created + step.at
    return None


class WebhookSender:
    """Posts events to the configured URL from a few threads; one background thread keeps the timetable."""

    def __init__(self, batch_status: Any) -> None:
        """`batch_status(batch_id, now)` returns the batch's status now (None for an unknown batch)."""
        self._batch_status = batch_status
        self._lock = threading.Condition()
        self._url: str | None = None
        self._webhook: Webhook | None = None
        self._timetable: list[tuple[float, str]] = []
        self._announced: set[str] = set()
        self._faults: list[WebhookFault] = []
        self._deliveries: list[Delivery] = []
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="sim-webhook")
        self._session = threading.local()
        self._stopping = False
        self._thread = threading.Thread(target=self._keep_timetable, name="sim-webhook-timetable", daemon=True)
        self._thread.start()

    # -- control ---------------------------------------------------------------------------------------

    def configure(self, url: str, secret: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise SimulatorInputError("'url' must be an http:// or https:// URL")
        try:
            webhook = Webhook(secret)
        except Exception:
            raise SimulatorInputError("'secret' must be a Standard Webhooks secret (whsec_ + base64)") from None
        with self._lock:
            self._url, self._webhook = url, webhook

    def disable(self) -> None:
        with self._lock:
            self._url = self._webhook = None

    def reset(self) -> None:
        with self._lock:
            self._url = self._webhook = None
            self._timetable.clear()
            self._announced.clear()
            self._faults.clear()
            self._deliveries.clear()

    def add_fault(self, mode: str, batch_id: str | None, count: int | None) -> WebhookFault:
        if mode not in FAULT_MODES:
            raise SimulatorInputError(f"'mode' must be one of {', '.join(FAULT_MODES)}, got {mode!r}")
        fault = WebhookFault(mode, batch_id, None if batch_id is not None else count)
        with self._lock:
            self._faults.append(fault)
        return fault

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "url": self._url,
                "faults": [vars(fault).copy() for fault in self._faults],
                "deliveries": [delivery.describe() for delivery in self._deliveries],
            }

    # -- the timetable -----------------------------------------------------------------------------------

    def batch_changed(self, batch: SimBatch) -> None:
        """Called under the simulator's lock whenever a batch's timeline was set or changed."""
        moment = terminal_at(batch)
        if moment is None or batch.id in self._announced:
            return
        with self._lock:
            heapq.heappush(self._timetable, (moment, batch.id))
            self._lock.notify()

    def send_now(self, batch_id: str, event_type: str) -> Delivery:
        """Send an event for `batch_id` now, whatever its status (to test a receiver's distrust)."""
        return self._send(batch_id, event_type, None)

    def _keep_timetable(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and (not self._timetable or self._timetable[0][0] > time.time()):
                    wait = self._timetable[0][0] - time.time() if self._timetable else None
                    self._lock.wait(timeout=wait)
                if self._stopping:
                    return
                moment, batch_id = heapq.heappop(self._timetable)
                if self._url is None or batch_id in self._announced:
                    continue
            status = self._batch_status(batch_id, time.time())
            if status in BATCH_TERMINAL_STATUSES:
                with self._lock:
                    self._announced.add(batch_id)
                self._send(batch_id, f"batch.{status}", moment)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- sending -----------------------------------------------------------------------------------------

    def _take_fault(self, batch_id: str) -> str | None:
        with self._lock:
            for fault in self._faults:
                if fault.applies(batch_id):
                    fault.fired += 1
                    return fault.mode
        return None

    def _send(self, batch_id: str, event_type: str, moment: float | None) -> Delivery:
        created = int(moment if moment is not None else time.time())
        event = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": event_type,
            "created_at": created,
            "data": {"id": batch_id},
        }
        delivery = Delivery(f"wh_{secrets.token_hex(12)}", event, moment, self._take_fault(batch_id))
        with self._lock:
            self._deliveries.append(delivery)
        if delivery.fault != "drop":
            self._pool.submit(self._deliver, delivery)
            if delivery.fault == "duplicate":
                self._pool.submit(self._deliver, delivery)
        return delivery

    def _deliver(self, delivery: Delivery) -> None:
        body = json.dumps(delivery.event, separators=(",", ":"))
        wait = FIRST_RETRY_SECONDS
        for _attempt in range(MAX_ATTEMPTS):
            with self._lock:
                url, webhook = self._url, self._webhook
            if url is None or webhook is None or self._stopping:
                return
            headers = self._headers(delivery, webhook, body)
            try:
                answer = self._http().post(url, data=body.encode(), headers=headers, timeout=POST_TIMEOUT_SECONDS)
                outcome: dict[str, Any] = {"at": time.time(), "status": answer.status_code}
            except requests.RequestException as error:
                outcome = {"at": time.time(), "error": type(error).__name__}
            with self._lock:
                delivery.attempts.append(outcome)
                if 200 <= outcome.get("status", 0) < 300:
                    delivery.delivered = True
                    return
            time.sleep(wait)
            wait *= 2

    def _headers(self, delivery: Delivery, webhook: Webhook, body: str) -> dict[str, str]:
        sent_at = time.time() - (STALE_SECONDS if delivery.fault == "stale" else 0)
        signer = Webhook(secrets.token_bytes(24)) if delivery.fault == "bad_signature" else webhook
        signature = signer.sign(delivery.webhook_id, datetime.fromtimestamp(sent_at, UTC), body)
        return {
            "content-type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(int(sent_at)),
            "webhook-signature": signature,
            "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks) teckochecker-simulator",
        }

    def _http(self) -> requests.Session:
        session = getattr(self._session, "value", None)
        if session is None:
            session = self._session.value = requests.Session()
            # The receiver is the URL we were given: no proxy or .netrc from the environment, and no lookup of
            # them for every post.
            session.trust_env = False
        return session


class WebhookState:
    """The webhook side of SimulatorState (a mixin before OpenAIState): tells the sender of every batch whose
    timeline was set or changed."""

    _lock: threading.Lock
    batches: dict[str, SimBatch]
    webhooks: WebhookSender

    def _reset_webhooks(self) -> None:
        if getattr(self, "webhooks", None) is None:
            self.webhooks = WebhookSender(self._batch_status)
        else:
            self.webhooks.reset()

    def _batch_status(self, batch_id: str, now: float) -> str | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            return batch.status(now) if batch is not None else None

    def _timeline_changed(self, batch_id: str) -> None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is not None:
                self.webhooks.batch_changed(batch)

    def create_batch(self, **kwargs: Any) -> dict[str, Any]:
        rendered = super().create_batch(**kwargs)  # type: ignore[misc]
        self._timeline_changed(rendered["id"])
        return rendered

    def flip_batch(self, batch_id: str, status: str) -> dict[str, Any] | None:
        rendered = super().flip_batch(batch_id, status)  # type: ignore[misc]
        if rendered is not None:
            self._timeline_changed(batch_id)
        return rendered

    def cancel_batch(self, batch_id: str, key: str) -> tuple[str, dict[str, Any] | None]:
        outcome, rendered = super().cancel_batch(batch_id, key)  # type: ignore[misc]
        if outcome == "ok":
            self._timeline_changed(batch_id)
        return outcome, rendered
