"""Beat's notification duties, every few seconds beside the dispatch of checks: send each target's pending
notifications (one task per target, on its own queue), raise and clear "no successful check" alerts, record
attempts a worker stopped in the middle of, and forget old outbox rows and webhook ids."""

from __future__ import annotations

import logging
import time
from typing import Any

from teckochecker.db import session_scope, utcnow
from teckochecker.notifications import outbox, sending, stalls
from teckochecker.services.webhooks import forget_old_deliveries
from worker.notification_tasks import send_notification_task
from worker.runtime import Runtime

logger = logging.getLogger(__name__)
# Notifications wait up to this long: the pause that lets a burst of events gather into one message.
SEND_EVERY_SECONDS = 3.0
STALL_SCAN_EVERY_SECONDS = 15.0
PURGE_EVERY_SECONDS = 3600.0


class NotificationBeat:
    def __init__(self) -> None:
        self._next_send = 0.0
        self._next_scan = 0.0
        self._next_purge = 0.0

    def tick(self, app: Any, runtime: Runtime) -> None:
        moment = time.monotonic()
        if moment >= self._next_scan:
            self._next_scan = moment + STALL_SCAN_EVERY_SECONDS
            self._guarded("scan for stalled jobs", self._scan, runtime)
        if moment >= self._next_send:
            self._next_send = moment + SEND_EVERY_SECONDS
            self._guarded("send notifications", self._send, runtime, app)
        if moment >= self._next_purge:
            self._next_purge = moment + PURGE_EVERY_SECONDS
            self._guarded("forget old notifications and webhook ids", self._purge, runtime)

    @staticmethod
    def _guarded(what: str, step: Any, *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            # The next tick tries again; a failure here never stops the dispatch of checks.
            logger.exception("could not %s; trying again later", what)

    @staticmethod
    def _scan(runtime: Runtime) -> None:
        with session_scope(runtime.sessions) as session:
            changes = stalls.scan(session, intervals=runtime.settings.stall_alert_intervals, now=utcnow())
        if changes.stalled or changes.recovered:
            logger.info("stall alerts: %s raised, %s cleared", changes.stalled, changes.recovered)

    @staticmethod
    def _send(runtime: Runtime, app: Any) -> None:
        with session_scope(runtime.sessions) as session:
            interrupted = sending.record_interrupted(session, now=utcnow())
            dispatches = outbox.dispatch(session, now=utcnow())
        if interrupted:
            logger.warning(
                "%s notification(s) were interrupted by a stopped worker; recorded on their jobs", interrupted
            )
        if dispatches:
            with app.producer_or_acquire() as producer:
                for dispatch in dispatches:
                    send_notification_task(
                        dispatch.target_id, dispatch.lease_token, dispatch.expires_in, producer=producer
                    )

    @staticmethod
    def _purge(runtime: Runtime) -> None:
        with session_scope(runtime.sessions) as session:
            outbox.purge_finished(session, now=utcnow())
            forget_old_deliveries(session, utcnow())
