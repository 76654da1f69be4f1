"""How long to wait before asking a service again."""

from __future__ import annotations

import random

# Every wait handed to the broker stays far below the Redis visibility timeout (see celeryconfig); a
# longer wait is written into the job's next_check_at instead.
MAX_BROKER_WAIT_SECONDS = 300.0


def retry_wait(attempt: int, base_seconds: float, retry_after: float | None) -> float:
    """The server's Retry-After when it gave one; else exponential backoff with full jitter in its upper half."""
    if retry_after is not None:
        return max(0.0, retry_after)
    ceiling = base_seconds * (2**attempt)
    return random.uniform(ceiling / 2, ceiling)
