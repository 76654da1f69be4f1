"""The OpenAI batch client against the simulator over real sockets: parsing, progress, and every failure class."""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from email.utils import formatdate

import pytest

from teckochecker.clients.errors import PermanentError, ServiceError, TransientError
from teckochecker.clients.openai_batches import OpenAIBatchClient
from teckochecker.simulator import RunningSimulator, start_simulator


def client_for(simulator: RunningSimulator, key: str, **timeouts: float) -> OpenAIBatchClient:
    return OpenAIBatchClient(key, simulator.openai_base_url, **timeouts)


def failure_of(client: OpenAIBatchClient, batch_id: str = "batch_test") -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        client.get_batch(batch_id)
    return caught.value


def test_a_completed_batch_is_read_in_full(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(
        batch_id="batch_done", final_status="completed", duration=0, request_total=40, failed_requests=3
    )

    batch = client_for(simulator, api_key).get_batch("batch_done")

    assert batch.id == "batch_done"
    assert batch.status == "completed"
    assert batch.is_terminal
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (40, 37, 3)
    assert batch.output_file_id and batch.output_file_id.startswith("file-")
    assert batch.error_file_id and batch.error_file_id.startswith("file-")
    assert batch.errors == ()
    assert batch.created_at is not None and batch.completed_at is not None and batch.finalizing_at is not None
    assert batch.expires_at == batch.created_at + 24 * 3600
    assert batch.failed_at is None and batch.cancelled_at is None


def test_a_batch_moves_through_its_statuses_with_advancing_counts(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_moving", final_status="completed", duration=0.9)
    client = client_for(simulator, api_key)

    seen: list[str] = []
    progress: list[int] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        batch = client.get_batch("batch_moving")
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        progress.append(batch.request_counts.completed)
        if batch.is_terminal:
            break
        time.sleep(0.05)

    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert progress == sorted(progress)
    assert any(0 < done < 100 for done in progress), "counts should advance while in progress"
    assert progress[-1] == 100


def test_a_failed_batch_carries_openais_errors(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_bad_input", final_status="failed", duration=0)

    batch = client_for(simulator, api_key).get_batch("batch_bad_input")

    assert batch.status == "failed" and batch.is_terminal
    assert batch.failed_at is not None
    assert [(error.code, error.line) for error in batch.errors] == [("invalid_json_line", 1)]
    assert batch.output_file_id is None


@pytest.mark.parametrize(("status", "terminal"), [("in_progress", False), ("expired", True), ("cancelled", True)])
def test_flipped_batches_report_the_new_status(
    simulator: RunningSimulator, api_key: str, status: str, terminal: bool
) -> None:
    simulator.control.create_batch(batch_id="batch_flip", script=[{"status": "validating", "at": 0}])
    simulator.control.set_batch_status("batch_flip", status)

    batch = client_for(simulator, api_key).get_batch("batch_flip")

    assert batch.status == status
    assert batch.is_terminal is terminal


def test_an_unknown_key_is_a_permanent_error_with_openais_code(simulator: RunningSimulator) -> None:
    simulator.control.create_batch(batch_id="batch_test", duration=0)

    error = failure_of(client_for(simulator, "sk-not-registered-0123456789abcdef"))

    assert isinstance(error, PermanentError)
    assert (error.status, error.code) == (401, "invalid_api_key")
    assert "Incorrect API key provided" in error.message
    assert "sk-" not in str(error), "not even OpenAI's masked echo of the key is kept"


def test_an_unknown_batch_is_a_permanent_404(simulator: RunningSimulator, api_key: str) -> None:
    error = failure_of(client_for(simulator, api_key), "batch_missing")

    assert isinstance(error, PermanentError)
    assert (error.status, error.code) == (404, "batch_not_found")
    assert "batch_missing" in error.message


def test_a_batch_of_another_key_is_not_found(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.add_api_key("sk-other-project-key-00000000000")
    simulator.control.create_batch(batch_id="batch_theirs", owner_key="sk-other-project-key-00000000000")

    error = failure_of(client_for(simulator, api_key), "batch_theirs")

    assert (error.status, error.code) == (404, "batch_not_found")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry_after": 3, "retry_after_ms": 1500}, 1.5),
        ({"retry_after": 7}, 7.0),
        ({"retry_after_ms": 250}, 0.25),
        ({}, None),
    ],
)
def test_rate_limits_are_transient_and_carry_the_requested_wait(
    simulator: RunningSimulator, api_key: str, headers: dict[str, float], expected: float | None
) -> None:
    simulator.control.create_batch(batch_id="batch_test", duration=0)
    simulator.control.add_fault("/v1/batches/*", status=429, count=1, **headers)
    client = client_for(simulator, api_key)

    error = failure_of(client)

    assert isinstance(error, TransientError)
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert error.retry_after == expected
    assert client.get_batch("batch_test").status == "completed", "the fault fired once only"


def test_retry_after_as_an_http_date_becomes_seconds_from_now(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.add_fault(
        "/v1/batches/*", status=429, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)}
    )

    error = failure_of(client_for(simulator, api_key))

    assert isinstance(error, TransientError)
    assert error.retry_after is not None and 25 <= error.retry_after <= 31


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503])
def test_server_side_statuses_are_transient(simulator: RunningSimulator, api_key: str, status: int) -> None:
    simulator.control.add_fault("/v1/batches/*", status=status)

    error = failure_of(client_for(simulator, api_key))

    assert isinstance(error, TransientError)
    assert error.status == status
    assert error.message


@pytest.mark.parametrize("status", [400, 403, 422])
def test_other_client_errors_are_permanent(simulator: RunningSimulator, api_key: str, status: int) -> None:
    simulator.control.add_fault("/v1/batches/*", status=status, message="You may not do that.", code="forbidden_x")

    error = failure_of(client_for(simulator, api_key))

    assert isinstance(error, PermanentError)
    assert (error.status, error.code, error.message) == (status, "forbidden_x", "You may not do that.")


def test_an_answer_slower_than_the_read_timeout_is_transient(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_test", duration=0)
    simulator.control.add_fault("/v1/batches/*", delay=2, count=1)
    client = client_for(simulator, api_key, read_timeout=0.3)

    started = time.monotonic()
    error = failure_of(client)

    assert isinstance(error, TransientError)
    assert error.status is None and "0.3 s" in str(error)
    assert time.monotonic() - started < 1.5
    assert client.get_batch("batch_test").status == "completed"


def test_a_dropped_connection_is_transient_and_not_retried_behind_the_callers_back(
    simulator: RunningSimulator, api_key: str
) -> None:
    simulator.control.add_fault("/v1/batches/*", drop=True, count=1)

    error = failure_of(client_for(simulator, api_key))

    assert isinstance(error, TransientError)
    assert simulator.control.counters()["requests"] == {"GET /v1/batches/{batch_id}": 1}


def test_a_server_that_is_down_is_transient(api_key: str) -> None:
    simulator = start_simulator()
    simulator.control.add_api_key(api_key)
    simulator.control.create_batch(batch_id="batch_test", duration=0)
    client = client_for(simulator, api_key, connect_timeout=1)
    assert client.get_batch("batch_test").status == "completed"
    simulator.stop()

    error = failure_of(client)

    assert isinstance(error, TransientError)
    assert "refused" in str(error).lower() or "closed" in str(error).lower()


def test_one_connection_per_thread_is_kept_alive(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_test", duration=0)

    def poll_five_times() -> None:
        client = client_for(simulator, api_key)
        for _ in range(5):
            client.get_batch("batch_test")

    threads = [threading.Thread(target=poll_five_times) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    counters = simulator.control.counters()
    assert counters["total"] == 15
    assert counters["connections"] == 3


def test_the_key_never_appears_in_errors_logs_or_reprs(
    simulator: RunningSimulator, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    simulator.control.create_batch(batch_id="batch_test", duration=0)
    client = client_for(simulator, api_key, read_timeout=0.3)
    wrong_key = "sk-wrong-but-still-secret-abcdef0123456789"
    errors: list[ServiceError] = []

    client.get_batch("batch_test")
    errors.append(failure_of(client_for(simulator, wrong_key)))
    # Even a service that echoes the key in full does not get it into our messages.
    simulator.control.add_fault("/v1/batches/*", status=400, count=1, message=f"key {api_key} is odd", code=api_key)
    simulator.control.add_fault("/v1/batches/*", status=429, count=1, retry_after=1)
    simulator.control.add_fault("/v1/batches/*", status=503, count=1)
    simulator.control.add_fault("/v1/batches/*", drop=True, count=1)
    simulator.control.add_fault("/v1/batches/*", status=302, count=1, headers={"Location": f"http://x/{api_key}"})
    # Last: a delay adds to the faults before it, and the one above ends the search on its request.
    simulator.control.add_fault("/v1/batches/*", delay=1, count=1)
    for _ in range(6):
        errors.append(failure_of(client))

    assert [type(error) for error in errors] == [PermanentError, PermanentError] + [TransientError] * 3 + [
        PermanentError,
        TransientError,
    ]
    texts = [str(error) for error in errors] + [repr(error) for error in errors] + [repr(client)]
    texts += [pickle.loads(pickle.dumps(error)).message for error in errors]
    texts += [record.getMessage() for record in caplog.records]
    for secret in (api_key, wrong_key):
        assert not [text for text in texts if secret in text]
    assert caplog.records, "the client does log its requests"


def test_errors_survive_pickling_for_celery(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.add_fault("/v1/batches/*", status=429, retry_after=2)

    error = failure_of(client_for(simulator, api_key))
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is TransientError
    assert (copy.status, copy.code, copy.retry_after, str(copy)) == (429, "rate_limit_exceeded", 2.0, str(error))


def test_verify_key_accepts_a_good_key_and_refuses_a_bad_one(simulator: RunningSimulator, api_key: str) -> None:
    client_for(simulator, api_key).verify_key()

    with pytest.raises(PermanentError) as caught:
        client_for(simulator, "sk-bad-key-00000000000000000000").verify_key()
    assert caught.value.status == 401
    assert simulator.control.counters()["requests"] == {"GET /v1/batches": 2}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork, as Celery's prefork pool does")
def test_a_forked_worker_opens_its_own_connection(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_test", duration=0)
    client = client_for(simulator, api_key)
    client.get_batch("batch_test")
    before = simulator.control.counters()["connections"]

    child = os.fork()
    if child == 0:
        try:
            status = 0 if client.get_batch("batch_test").id == "batch_test" else 1
        except BaseException:
            status = 2
        os._exit(status)
    _, exit_status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(exit_status) == 0
    assert client.get_batch("batch_test").id == "batch_test", "the parent's connection is intact"
    assert simulator.control.counters()["connections"] == before + 1


def test_list_batches_pages_newest_first_with_a_cursor(simulator: RunningSimulator, api_key: str) -> None:
    for index in range(5):
        simulator.control.create_batch(batch_id=f"batch_page_{index}", final_status="completed", duration=60)
    client = client_for(simulator, api_key)

    first = client.list_batches(limit=2)
    second = client.list_batches(limit=2, after=first.last_id)
    last = client.list_batches(limit=2, after=second.last_id)

    assert [b.id for b in first.batches + second.batches + last.batches] == [f"batch_page_{i}" for i in (4, 3, 2, 1, 0)]
    assert (first.has_more, second.has_more, last.has_more) == (True, True, False)
    assert first.batches[0].status == "validating" and first.batches[0].created_at is not None
