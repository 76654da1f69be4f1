"""A file the worker touches every few seconds: a liveness signal that costs nothing to read.

A Celery ping per probe costs seconds of CPU and fails for every worker at once when the broker
blinks; a stale heartbeat file means this worker's consumer has stopped running its timers.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from celery import bootsteps

from teckochecker.config import load_settings

HEARTBEAT_EVERY_SECONDS = 10.0


class HeartbeatFile(bootsteps.StartStopStep):
    """Consumer step: touches WORKER_HEARTBEAT_FILE on the consumer's own timer."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.path = Path(load_settings().worker_heartbeat_file)
        self.timer_entry: Any = None

    def _touch(self) -> None:
        with contextlib.suppress(OSError):
            self.path.touch()

    def start(self, consumer: Any) -> None:
        self._touch()
        self.timer_entry = consumer.timer.call_repeatedly(HEARTBEAT_EVERY_SECONDS, self._touch)

    def stop(self, consumer: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        self.path.unlink(missing_ok=True)
