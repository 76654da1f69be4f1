"""run_in_parallel: the caller and the shared helper threads work through one list, with real threads."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from teckochecker.engine import fanout
from teckochecker.logs import ContextFilter, log_context


def _worker_over(items: list[int]):
    lock, seen, threads = threading.Lock(), [], set()

    def work() -> None:
        while True:
            with lock:
                if not items:
                    return
                seen.append(items.pop())
                threads.add(threading.get_ident())
            threading.Event().wait(0.05)

    return work, seen, threads


def test_every_item_is_done_once_by_several_threads_at_once() -> None:
    work, seen, threads = _worker_over(list(range(40)))
    fanout.run_in_parallel(work, 8)
    assert sorted(seen) == list(range(40))
    assert len(threads) > 1


def test_a_failure_in_a_helper_reaches_the_caller_after_the_others_finish() -> None:
    finished = threading.Event()

    def work() -> None:
        if threading.current_thread() is threading.main_thread():
            threading.Event().wait(0.2)
            finished.set()
            return
        raise RuntimeError("helper failed")

    with pytest.raises(RuntimeError, match="helper failed"):
        fanout.run_in_parallel(work, 2)
    assert finished.is_set()


def test_a_busy_pool_does_not_hold_the_caller_who_does_the_work_alone(monkeypatch) -> None:
    busy, release = ThreadPoolExecutor(1), threading.Event()
    busy.submit(release.wait)
    monkeypatch.setattr(fanout, "_pool", busy)
    monkeypatch.setattr(fanout, "_pool_pid", os.getpid())
    work, seen, threads = _worker_over(list(range(5)))
    try:
        fanout.run_in_parallel(work, 4)
        assert sorted(seen) == list(range(5)) and threads == {threading.get_ident()}
    finally:
        release.set()
        busy.shutdown()


def test_helpers_log_with_the_callers_context() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("tests.fanout")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    items, lock = list(range(20)), threading.Lock()

    def ask() -> None:
        # Helpers that have not started when the caller runs out of items are cancelled, so each item takes a
        # while: long enough for the helpers to start and log some of them.
        while True:
            with lock:
                if not items:
                    return
                items.pop()
            logger.info("asked")
            threading.Event().wait(0.05)

    try:
        with log_context(task_id="t-1"):
            fanout.run_in_parallel(ask, 3)
    finally:
        logger.removeHandler(handler)
    assert len(records) == 20 and {record.task_id for record in records} == {"t-1"}
    assert len({record.thread for record in records}) > 1
