"""The chaos suite's faults, seen over HTTP: failures after the work was done, faults that fire at random
(seeded, so a run can be replayed), random delays, and faults that add up."""

from __future__ import annotations

import time

import pytest
import requests

from teckochecker.simulator import RunningSimulator, SimulatorError

JOB = {"component": "kds-team.app-custom-python", "config": "ambiguous", "mode": "run"}


def _create_job(simulator: RunningSimulator, token: str, *, timeout: float = 5) -> requests.Response:
    return requests.post(
        simulator.stack_url + "/jobs", headers={"X-StorageApi-Token": token}, json=JOB, timeout=timeout
    )


def test_a_502_after_creating_leaves_the_job_in_keboola(simulator: RunningSimulator, token: str) -> None:
    simulator.control.add_fault("/jobs", method="POST", status=502, after=True, count=1)
    assert _create_job(simulator, token).status_code == 502
    assert [job["body"]["config"] for job in simulator.control.keboola_jobs()] == ["ambiguous"]
    assert _create_job(simulator, token).status_code == 201, "count=1: the next create is answered"


def test_a_connection_closed_after_creating_leaves_the_job_in_keboola(simulator: RunningSimulator, token: str) -> None:
    simulator.control.add_fault("/jobs", method="POST", drop=True, after=True, count=1)
    with pytest.raises(requests.ConnectionError):
        _create_job(simulator, token)
    assert len(simulator.control.keboola_jobs()) == 1


def test_an_answer_later_than_the_client_waits_leaves_the_job_in_keboola(
    simulator: RunningSimulator, token: str
) -> None:
    simulator.control.add_fault("/jobs", method="POST", status=504, delay=1.5, after=True, count=1)
    with pytest.raises(requests.Timeout):
        _create_job(simulator, token, timeout=0.5)
    # The job was created before the wait began.
    assert len(simulator.control.keboola_jobs()) == 1


def _fired_pattern(simulator: RunningSimulator, api_key: str, requests_made: int) -> list[int]:
    statuses = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {api_key}"
        for _ in range(requests_made):
            statuses.append(session.get(simulator.openai_base_url + "/batches/batch_seeded", timeout=5).status_code)
    return statuses


def test_a_fault_fires_on_its_share_of_requests_and_the_seed_replays_it(
    simulator: RunningSimulator, api_key: str
) -> None:
    def run() -> list[int]:
        simulator.control.reset()
        simulator.control.add_api_key(api_key)
        simulator.control.configure(fault_seed=7)
        simulator.control.create_batch(batch_id="batch_seeded", duration=0)
        simulator.control.add_fault("/v1/batches/*", method="GET", status=503, probability=0.3)
        return _fired_pattern(simulator, api_key, 400)

    first = run()
    assert set(first) == {200, 503}
    assert 80 <= first.count(503) <= 160
    [fault] = simulator.control.counters()["faults"]
    assert fault["fired"] == first.count(503), "only the requests it failed count as fired"
    assert run() == first, "the same seed fails the same requests"


def test_a_random_delay_stays_between_its_bounds(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.create_batch(batch_id="batch_slow", duration=0)
    simulator.control.add_fault("/v1/batches/*", method="GET", delay=0.1, delay_max=0.3)
    took = []
    for _ in range(6):
        started = time.monotonic()
        response = requests.get(
            simulator.openai_base_url + "/batches/batch_slow", headers={"Authorization": f"Bearer {api_key}"}
        )
        took.append(time.monotonic() - started)
        assert response.status_code == 200
    assert min(took) >= 0.1 and max(took) < 0.3 + 0.25
    assert max(took) - min(took) > 0.01, "the delays vary"


def test_a_delay_and_an_error_on_one_path_both_apply(simulator: RunningSimulator, api_key: str) -> None:
    simulator.control.add_fault("/v1/batches/*", method="GET", delay=0.3)
    simulator.control.add_fault("/v1/batches/*", method="GET", status=429, retry_after=2)
    started = time.monotonic()
    response = requests.get(
        simulator.openai_base_url + "/batches/batch_any", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "2"
    assert time.monotonic() - started >= 0.3
    assert [fault["fired"] for fault in simulator.control.counters()["faults"]] == [1, 1]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"status": 503, "probability": 0}, "'probability' must be a number above 0 and at most 1"),
        ({"status": 503, "probability": 1.5}, "'probability' must be a number above 0 and at most 1"),
        ({"delay": 2, "delay_max": 1}, "'delay_max' must be at least 'delay'"),
        ({"status": 502, "after": "yes"}, "'after' must be true or false"),
    ],
)
def test_bad_faults_are_refused_with_the_reason(simulator: RunningSimulator, fault: dict, message: str) -> None:
    with pytest.raises(SimulatorError, match=message):
        simulator.control.add_fault("/jobs", **fault)
    assert simulator.control.counters()["faults"] == []
