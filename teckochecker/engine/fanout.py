"""Run one piece of work in several threads at once: the calling thread and helpers from a pool the process shares.

A check asks OpenAI about a group's batches one GET each. One after another, a group of 8 at 2–10 s per answer
takes over a minute, and the last job of the group waits for the seven before it. The helpers let a group keep
several requests in flight. Their threads live as long as the process, so each keeps its pooled HTTP connections
(the HTTP sessions are per thread) instead of opening new ones for every group.

The calling thread always works too, so a saturated pool only slows a group down to one request at a time,
never stops it; helpers that have not started when the caller is done are cancelled, not waited for.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

# Helper threads per process, shared by every group the process checks at once.
HELPER_THREADS = 128

_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def _helpers() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        # A forked child inherits the pool object but none of its threads.
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(HELPER_THREADS, thread_name_prefix="teckochecker-fanout")
            _pool_pid = os.getpid()
        return _pool


def run_in_parallel(work: Callable[[], None], threads: int) -> None:
    """Run `work` in `threads` threads at once (the caller's among them) and return when all are done.

    `work` must take its items from shared, locked state until none are left, so any number of copies may run.
    The first exception any copy raised is raised here, after the copies that had started have finished.
    """
    helpers = [_helpers().submit(contextvars.copy_context().run, work) for _ in range(max(threads, 1) - 1)]
    failure: BaseException | None = None
    try:
        work()
    except BaseException as error:  # re-raised below, once no helper still uses the shared state
        failure = error
    for helper in helpers:
        failure = failure or _outcome(helper)
    if failure is not None:
        raise failure


def _outcome(helper: Future[None]) -> BaseException | None:
    if helper.cancel():
        return None
    return helper.exception()
