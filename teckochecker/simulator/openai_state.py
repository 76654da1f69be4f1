"""What the simulator remembers of the OpenAI Batch API: API keys and batches, and what it does with them."""

from __future__ import annotations

import bisect
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from teckochecker.simulator.timeline import SimulatorInputError, Step, check_status, flip_steps, spread, steps_reached

if TYPE_CHECKING:
    from teckochecker.simulator.state import SimSettings

BATCH_STATUSES = (
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
)
BATCH_TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
# The road a real batch takes to each status; a generated timeline spreads it evenly over the duration.
_BATCH_ROADS = {
    "validating": ("validating",),
    "in_progress": ("validating", "in_progress"),
    "finalizing": ("validating", "in_progress", "finalizing"),
    "completed": ("validating", "in_progress", "finalizing", "completed"),
    "failed": ("validating", "failed"),
    "expired": ("validating", "in_progress", "expired"),
    "cancelling": ("validating", "in_progress", "cancelling"),
    "cancelled": ("validating", "in_progress", "cancelling", "cancelled"),
}
_BATCH_TIMESTAMPS = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}
BATCH_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)
BATCH_LIFETIME_SECONDS = 24 * 3600
SIMULATED_MODEL = "gpt-4o-mini-2024-07-18"


@dataclass
class SimBatch:
    id: str
    created: float
    steps: list[Step]
    endpoint: str
    input_file_id: str
    completion_window: str
    request_total: int
    failed_requests: int
    owner_key: str | None
    metadata: dict[str, str] | None

    def status(self, now: float) -> str:
        return steps_reached(self.steps, now - self.created)[-1].status

    def flip(self, status: str, now: float) -> None:
        self.steps = flip_steps(self.steps, status, now - self.created)

    def _done(self, reached: list[Step], elapsed: float) -> int:
        """Requests processed so far: they advance while in progress, fully if the batch goes on to finalize."""
        status = reached[-1].status
        if status in ("finalizing", "completed"):
            return self.request_total
        positions = [index for index, step in enumerate(self.steps) if step.status == "in_progress"]
        if not positions or self.steps[positions[0]] not in reached:
            return 0
        started = self.steps[positions[0]]
        following = self.steps[positions[0] + 1] if positions[0] + 1 < len(self.steps) else None
        if following is None:
            return 0
        share = 1.0 if following.status == "finalizing" else 0.5
        span = following.at - started.at
        progress = 1.0 if span <= 0 else min(1.0, (elapsed - started.at) / span)
        return int(self.request_total * share * progress)

    def render(self, now: float) -> dict[str, Any]:
        """The batch exactly as OpenAI's `GET /v1/batches/{id}` shows it."""
        elapsed = now - self.created
        reached = steps_reached(self.steps, elapsed)
        status = reached[-1].status
        stamps: dict[str, int | None] = dict.fromkeys(_BATCH_TIMESTAMPS.values())
        for step in reached:
            if step.status in _BATCH_TIMESTAMPS:
                stamps[_BATCH_TIMESTAMPS[step.status]] = int(self.created + step.at)
        started = any(step.status == "in_progress" for step in reached)
        done = self._done(reached, elapsed)
        failed = done * self.failed_requests // self.request_total if self.request_total else 0
        completed = done - failed
        terminal = status in BATCH_TERMINAL_STATUSES
        digest = hashlib.sha256(self.id.encode()).hexdigest()[:24]
        created_at = int(self.created)
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": SIMULATED_MODEL,
            "errors": _validation_errors() if status == "failed" else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": status,
            "output_file_id": f"file-out{digest}" if terminal and completed else None,
            "error_file_id": f"file-err{digest}" if terminal and failed else None,
            "created_at": created_at,
            "in_progress_at": stamps["in_progress_at"],
            "expires_at": created_at + BATCH_LIFETIME_SECONDS,
            "finalizing_at": stamps["finalizing_at"],
            "completed_at": stamps["completed_at"],
            "failed_at": stamps["failed_at"],
            "expired_at": stamps["expired_at"],
            "cancelling_at": stamps["cancelling_at"],
            "cancelled_at": stamps["cancelled_at"],
            "request_counts": {
                "total": self.request_total if started else 0,
                "completed": completed,
                "failed": failed,
            },
            "usage": _usage(completed),
            "metadata": self.metadata,
        }


def _validation_errors() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "code": "invalid_json_line",
                "message": "This line is not parseable as valid JSON.",
                "param": None,
                "line": 1,
            }
        ],
    }


def _usage(completed_requests: int) -> dict[str, Any]:
    input_tokens = completed_requests * 50
    output_tokens = completed_requests * 20
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def check_script(script: Any) -> list[Step]:
    """A timeline given as [{"status", "at"}, …] with `at` in seconds after creation, in order."""
    if not isinstance(script, list) or not script:
        raise SimulatorInputError('script must be a non-empty list of {"status", "at"} steps')
    steps: list[Step] = []
    for item in script:
        if not isinstance(item, dict):
            raise SimulatorInputError('each script step is an object {"status", "at"}')
        status = check_status(item.get("status"), BATCH_STATUSES, "batch status")
        at = item.get("at", 0)
        if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
            raise SimulatorInputError(f"step 'at' must be seconds of 0 or more, got {at!r}")
        if steps and at < steps[-1].at:
            raise SimulatorInputError("script steps must be in time order")
        steps.append(Step(status, float(at)))
    if steps[0].at > 0:
        steps.insert(0, Step("validating", 0.0))
    return steps


class OpenAIState:
    """The OpenAI side of SimulatorState (a mixin): its lock guards these, and reset() empties them."""

    _lock: threading.Lock
    settings: SimSettings
    api_keys: set[str]
    batches: dict[str, SimBatch]
    # For listing without scanning every batch: each batch's place in creation order, and each owner's places
    # (ascending). A key sees its own batches and those without an owner.
    _places: dict[str, int]
    _places_by_owner: dict[str | None, list[int]]
    _in_order: list[SimBatch]

    def _reset_openai(self) -> None:
        self.api_keys = set()
        self.batches = {}
        self._places = {}
        self._places_by_owner = {}
        self._in_order = []

    def add_api_key(self, key: str) -> None:
        with self._lock:
            self.api_keys.add(key)

    def knows_key(self, key: str) -> bool:
        return key in self.api_keys

    def create_batch(
        self,
        *,
        batch_id: str | None = None,
        steps: list[Step] | None = None,
        endpoint: str = "/v1/chat/completions",
        input_file_id: str | None = None,
        completion_window: str = "24h",
        request_total: int | None = None,
        failed_requests: int = 0,
        owner_key: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            batch_id = batch_id or f"batch_{secrets.token_hex(16)}"
            if batch_id in self.batches:
                raise SimulatorInputError(f"batch {batch_id} already exists")
            total = self.settings.batch_request_total if request_total is None else request_total
            if failed_requests > total:
                raise SimulatorInputError("failed_requests must not exceed request_total")
            batch = SimBatch(
                id=batch_id,
                created=now,
                steps=steps or spread(_BATCH_ROADS[self.settings.batch_final_status], self.settings.batch_duration),
                endpoint=endpoint,
                input_file_id=input_file_id or f"file-{secrets.token_hex(12)}",
                completion_window=completion_window,
                request_total=total,
                failed_requests=failed_requests,
                owner_key=owner_key,
                metadata=metadata,
            )
            self.batches[batch_id] = batch
            self._places[batch_id] = len(self._in_order)
            self._places_by_owner.setdefault(owner_key, []).append(len(self._in_order))
            self._in_order.append(batch)
            return batch.render(now)

    def batch_road(self, final_status: str, duration: float) -> list[Step]:
        return spread(_BATCH_ROADS[check_status(final_status, BATCH_STATUSES, "batch status")], duration)

    def visible_batch(self, batch_id: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.owner_key not in (None, key):
                return None
            return batch.render(time.time())

    def list_batches(self, key: str, *, limit: int, after: str | None) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, from just after the batch `after`; returns the page and whether more follow.

        Costs O(limit · log n), so a list over hundreds of thousands of batches stays as fast as OpenAI's.
        """
        now = time.time()
        with self._lock:
            end = len(self._in_order)
            if after is not None:
                place = self._places.get(after)
                if place is None or self._in_order[place].owner_key not in (None, key):
                    return [], False
                end = place
            owners = [self._places_by_owner.get(owner, []) for owner in {None, key}]
            # Walk each owner's places backwards from below `end`, always taking the newest of the heads.
            cursors = [bisect.bisect_left(places, end) - 1 for places in owners]
            page: list[SimBatch] = []
            while len(page) <= limit:
                heads = [(owners[i][c], i) for i, c in enumerate(cursors) if c >= 0]
                if not heads:
                    break
                place, owner = max(heads)
                page.append(self._in_order[place])
                cursors[owner] -= 1
            return [batch.render(now) for batch in page[:limit]], len(page) > limit

    def flip_batch(self, batch_id: str, status: str) -> dict[str, Any] | None:
        check_status(status, BATCH_STATUSES, "batch status")
        now = time.time()
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            batch.flip(status, now)
            return batch.render(now)

    def cancel_batch(self, batch_id: str, key: str) -> tuple[str, dict[str, Any] | None]:
        """("ok", batch) once cancelling; ("not_found", None); or ("refused", batch) for a batch past cancelling."""
        now = time.time()
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.owner_key not in (None, key):
                return "not_found", None
            status = batch.status(now)
            if status in ("validating", "in_progress"):
                batch.flip("cancelling", now)
                elapsed = now - batch.created
                batch.steps.append(Step("cancelled", elapsed + self.settings.cancel_duration))
            elif status != "cancelling":
                return "refused", batch.render(now)
            return "ok", batch.render(now)
