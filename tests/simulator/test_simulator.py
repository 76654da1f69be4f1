"""The simulator as a client sees it over HTTP: API shapes, timelines, faults, latency and the control API."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from teckochecker.simulator import RunningSimulator, SimulatorError


def openai_get(simulator: RunningSimulator, key: str, path: str, **params: Any) -> requests.Response:
    return requests.get(
        simulator.openai_base_url + path, headers={"Authorization": f"Bearer {key}"}, params=params, timeout=5
    )


def openai_post(simulator: RunningSimulator, key: str, path: str, body: Any = None) -> requests.Response:
    return requests.post(
        simulator.openai_base_url + path, headers={"Authorization": f"Bearer {key}"}, json=body, timeout=5
    )


def keboola(simulator: RunningSimulator, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method, simulator.stack_url + path, headers={"X-StorageApi-Token": token}, timeout=5, **kwargs
    )


def test_the_list_pages_newest_first_with_cursors(simulator: RunningSimulator, api_key: str) -> None:
    for n in range(5):
        simulator.control.create_batch(batch_id=f"batch_{n}", duration=0)

    first = openai_get(simulator, api_key, "/batches", limit=2).json()
    second = openai_get(simulator, api_key, "/batches", limit=2, after=first["last_id"]).json()
    last = openai_get(simulator, api_key, "/batches", limit=2, after=second["last_id"]).json()

    assert first["object"] == "list"
    assert [b["id"] for b in first["data"]] == ["batch_4", "batch_3"]
    assert (first["first_id"], first["last_id"], first["has_more"]) == ("batch_4", "batch_3", True)
    assert [b["id"] for b in second["data"]] == ["batch_2", "batch_1"] and second["has_more"] is True
    assert [b["id"] for b in last["data"]] == ["batch_0"] and last["has_more"] is False
    assert len(openai_get(simulator, api_key, "/batches").json()["data"]) == 5


def test_a_key_lists_its_own_batches_and_unowned_ones_in_bulk_created_order(
    simulator: RunningSimulator, api_key: str
) -> None:
    simulator.control.add_api_key("sk-other-project-key-000000000")
    created = simulator.control.create_batches(
        [{"id": f"batch_b{n}", "owner_key": api_key if n % 3 else None, "duration": 0} for n in range(6)]
        + [{"id": f"batch_x{n}", "owner_key": "sk-other-project-key-000000000"} for n in range(3)]
        + [{"id": "batch_b6", "owner_key": api_key}]
    )
    assert created == 10

    seen, after = [], None
    while True:
        page = openai_get(simulator, api_key, "/batches", limit=3, **({"after": after} if after else {})).json()
        seen += [batch["id"] for batch in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == [f"batch_b{n}" for n in (6, 5, 4, 3, 2, 1, 0)]
    # Another key's batch is no cursor for this key: OpenAI shows it nothing.
    assert openai_get(simulator, api_key, "/batches", after="batch_x1").json()["data"] == []


def test_a_bad_bulk_description_stops_there_and_says_where(simulator: RunningSimulator) -> None:
    with pytest.raises(SimulatorError, match=r"batches\[1\].*already exists \(1 created\)"):
        simulator.control.create_batches([{"id": "batch_once"}, {"id": "batch_once"}])


@pytest.mark.parametrize("limit", [0, 101, "x"])
def test_a_bad_list_limit_is_refused_like_openai_does(simulator: RunningSimulator, api_key: str, limit: Any) -> None:
    response = openai_get(simulator, api_key, "/batches", limit=limit)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_creating_a_batch_starts_it_validating(simulator: RunningSimulator, api_key: str) -> None:
    response = openai_post(
        simulator,
        api_key,
        "/batches",
        {"input_file_id": "file-abc", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    )

    assert response.status_code == 200
    batch = response.json()
    assert (batch["status"], batch["input_file_id"], batch["object"]) == ("validating", "file-abc", "batch")
    assert openai_get(simulator, api_key, f"/batches/{batch['id']}").json()["id"] == batch["id"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
        ({"input_file_id": "file-a", "endpoint": "/v1/nope", "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": "file-a", "endpoint": "/v1/embeddings", "completion_window": "1h"}, "completion_window"),
    ],
)
def test_an_invalid_batch_is_refused_with_the_offending_parameter(
    simulator: RunningSimulator, api_key: str, body: dict[str, str], param: str
) -> None:
    response = openai_post(simulator, api_key, "/batches", body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


def test_cancelling_goes_through_cancelling_to_cancelled(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.configure(cancel_duration=0.3)
    simulator.control.create_batch(batch_id="batch_c", final_status="completed", duration=60)

    cancelling = openai_post(simulator, api_key, "/batches/batch_c/cancel").json()
    time.sleep(0.4)
    cancelled = openai_get(simulator, api_key, "/batches/batch_c").json()

    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] is not None
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] is not None


def test_a_finished_batch_cannot_be_cancelled(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_done", duration=0)

    response = openai_post(simulator, api_key, "/batches/batch_done/cancel")

    assert response.status_code == 400
    assert "completed" in response.json()["error"]["message"]


def test_openai_authentication_errors(simulator: RunningSimulator, api_key: str) -> None:
    missing = requests.get(simulator.openai_base_url + "/models", timeout=5)
    wrong = openai_get(simulator, "sk-wrong-000000000000000000000000", "/models")
    right = openai_get(simulator, api_key, "/models", limit=1)

    assert missing.status_code == 401 and missing.json()["error"]["code"] is None
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-000000000000000000000000" not in wrong.text, "OpenAI only echoes a masked key"
    assert right.status_code == 200 and right.json()["object"] == "list"


def test_unknown_routes_answer_in_each_apis_shape(simulator: RunningSimulator, api_key: str, token: str) -> None:
    openai = openai_get(simulator, api_key, "/files")
    queue = keboola(simulator, token, "GET", "/nowhere")

    assert openai.status_code == 404 and openai.json()["error"]["message"] == "Invalid URL (GET /v1/files)"
    assert queue.status_code == 404 and queue.json()["status"] == "error"


def test_keboola_jobs_have_the_queue_shape_and_timeline(simulator: RunningSimulator, token: str) -> None:
    simulator.control.configure(job_duration=0.4, job_final_status="warning")
    body = {"component": "c.x", "config": "1", "mode": "run", "variableValuesData": {"values": []}}

    created = keboola(simulator, token, "POST", "/jobs", json=body)
    time.sleep(0.5)
    finished = keboola(simulator, token, "GET", f"/jobs/{created.json()['id']}").json()

    assert created.status_code == 201
    assert created.json()["status"] == "created" and created.json()["isFinished"] is False
    assert created.json()["url"] == f"{simulator.stack_url}/jobs/{created.json()['id']}"
    assert (finished["status"], finished["isFinished"]) == ("warning", True)
    assert finished["startTime"] and finished["endTime"] and finished["durationSeconds"] is not None


def test_keboola_refuses_malformed_variables(simulator: RunningSimulator, token: str) -> None:
    body = {"component": "c.x", "config": "1", "variableValuesData": {"values": [{"name": "n", "value": 1}]}}

    response = keboola(simulator, token, "POST", "/jobs", json=body)

    assert response.status_code == 400
    assert set(response.json()) == {"error", "code", "status", "exceptionId"}
    assert simulator.control.keboola_jobs() == []


def test_keboola_authentication_errors(simulator: RunningSimulator) -> None:
    no_token = requests.get(simulator.stack_url + "/v2/storage/tokens/verify", timeout=5)
    bad_token = keboola(simulator, "nope", "GET", "/v2/storage/tokens/verify")
    bad_queue = keboola(simulator, "nope", "GET", "/search/jobs")

    assert (no_token.status_code, no_token.json()["code"]) == (401, "storage.tokenMissing")
    assert (bad_token.status_code, bad_token.json()["code"]) == (401, "storage.tokenInvalid")
    assert (bad_queue.status_code, bad_queue.json()["code"]) == (401, 401)


def test_a_fault_fires_its_count_then_stops(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_f", duration=0)
    simulator.control.add_fault("/v1/batches/*", method="GET", status=503, count=2)

    statuses = [openai_get(simulator, api_key, "/batches/batch_f").status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    [fault] = simulator.control.counters()["faults"]
    assert fault["fired"] == 2


def test_a_fault_matches_only_its_method_and_path(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_f", duration=0)
    simulator.control.add_fault("/v1/batches/*/cancel", method="POST", status=500)

    assert openai_get(simulator, api_key, "/batches/batch_f").status_code == 200
    assert openai_get(simulator, api_key, "/batches").status_code == 200
    failed = openai_post(simulator, api_key, "/batches/batch_f/cancel")
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"


def test_retry_after_headers_are_sent_as_asked(simulator: RunningSimulator, api_key: str, token: str) -> None:
    simulator.control.add_fault("/v1/*", status=429, retry_after=2, retry_after_ms=1500)
    simulator.control.add_fault("/jobs/*", status=429, retry_after=4)

    openai = openai_get(simulator, api_key, "/batches/batch_x")
    queue = keboola(simulator, token, "GET", "/jobs/1")

    assert (openai.headers["retry-after"], openai.headers["retry-after-ms"]) == ("2", "1500")
    assert openai.json()["error"]["code"] == "rate_limit_exceeded"
    assert queue.headers["retry-after"] == "4" and queue.json()["code"] == 429


def test_latency_delays_each_request_without_serialising_them(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.configure(latency_ms=300)
    durations: list[float] = []

    def timed_request() -> None:
        started = time.monotonic()
        assert openai_get(simulator, api_key, "/models").status_code == 200
        durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=timed_request) for _ in range(10)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert min(durations) >= 0.3
    assert time.monotonic() - started < 1.2, "ten 300 ms requests ran in parallel"


def test_control_calls_are_neither_delayed_faulted_nor_counted(simulator: RunningSimulator) -> None:
    simulator.control.configure(latency_ms=2000)
    simulator.control.add_fault("/_sim/*", status=500)

    started = time.monotonic()
    counters = simulator.control.counters()

    assert time.monotonic() - started < 1
    assert counters["total"] == 0


def test_reset_forgets_everything_but_server_defaults(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_r", duration=0)
    simulator.control.configure(batch_duration=1)
    openai_get(simulator, api_key, "/batches/batch_r")

    simulator.control.reset()

    assert openai_get(simulator, api_key, "/batches/batch_r").json()["error"]["code"] == "invalid_api_key"
    assert simulator.control.configure()["batch_duration"] == 5.0
    assert simulator.control.counters()["requests"] == {"GET /v1/batches/{batch_id}": 1}


def test_the_control_api_refuses_nonsense(simulator: RunningSimulator) -> None:
    with pytest.raises(SimulatorError, match="not a batch status"):
        simulator.control.create_batch(final_status="done")
    with pytest.raises(SimulatorError, match="not a batch id"):
        simulator.control.create_batch(batch_id="nope/../x")
    with pytest.raises(SimulatorError, match="needs a 'status'"):
        simulator.control.add_fault("/v1/*")
    with pytest.raises(SimulatorError, match="unknown setting"):
        simulator.control.configure(speed=11)
    with pytest.raises(SimulatorError, match="no batch"):
        simulator.control.set_batch_status("batch_missing", "completed")


def test_a_script_sets_the_exact_timeline(simulator: RunningSimulator, api_key: str) -> None:
    batch = simulator.control.create_batch(
        batch_id="batch_s",
        script=[{"status": "in_progress", "at": 0.2}, {"status": "expired", "at": 0.4}],
        request_total=10,
    )
    time.sleep(0.45)
    expired = openai_get(simulator, api_key, "/batches/batch_s").json()

    assert batch["status"] == "validating"
    assert expired["status"] == "expired" and expired["in_progress_at"] is not None
    assert expired["expired_at"] is not None
    assert expired["request_counts"]["total"] == 10 and expired["request_counts"]["completed"] < 10


def test_the_simulate_command_prints_its_urls_and_stops_on_ctrl_c() -> None:
    # A terminal delivers Ctrl-C as SIGINT; a CI shell may have set it to "ignore" for background jobs.
    runner = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from commands.simulate import simulate; simulate()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", runner, "--port", "0", "--openai-key", "sk-demo-key-1234567890"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        lines = [process.stdout.readline() for _ in range(3)] if process.stdout else []
        openai_url = lines[1].split()[3]
        stack_url = lines[2].split()[3]
        models = requests.get(
            openai_url + "/models", headers={"Authorization": "Bearer sk-demo-key-1234567890"}, timeout=5
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()

    assert openai_url.endswith("/v1") and openai_url.startswith(stack_url)
    assert models.status_code == 200
