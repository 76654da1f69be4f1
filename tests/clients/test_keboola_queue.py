"""The Keboola Job Queue client against the simulator over real sockets."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from teckochecker.clients.errors import PermanentError, ServiceError, TransientError
from teckochecker.clients.keboola_hosts import KeboolaHosts, UnsafeEndpointError
from teckochecker.clients.keboola_queue import KeboolaQueueClient, batch_variables, parse_job, queue_url_for
from teckochecker.simulator import RunningSimulator, start_simulator

COMPONENT = "kds-team.app-custom-python"
# The simulator listens on loopback over http, which only ALLOW_INSECURE_ENDPOINTS trusts.
SIMULATOR_HOSTS = KeboolaHosts(allow_insecure=True)


@pytest.mark.parametrize(
    ("stack", "queue"),
    [
        ("https://connection.eu-central-1.keboola.com", "https://queue.eu-central-1.keboola.com"),
        ("https://connection.keboola.com/", "https://queue.keboola.com"),
        ("https://connection.north-europe.azure.keboola.com", "https://queue.north-europe.azure.keboola.com"),
        ("https://Connection.keboola.com:8443", "https://queue.keboola.com:8443"),
        ("http://127.0.0.1:8900", "http://127.0.0.1:8900"),
        ("https://kbc.example.com", "https://kbc.example.com"),
    ],
)
def test_the_queue_url_comes_from_the_stack_url(stack: str, queue: str) -> None:
    assert queue_url_for(stack) == queue


def test_batch_variables_are_strings_holding_json_lists_and_counts() -> None:
    variables = batch_variables(["batch_a", "batch_b"], ["batch_c"])

    values = {item["name"]: item["value"] for item in variables}
    assert all(isinstance(value, str) for value in values.values())
    assert json.loads(values["batch_ids_completed"]) == ["batch_a", "batch_b"]
    assert json.loads(values["batch_ids_failed"]) == ["batch_c"]
    assert (values["batch_count_total"], values["batch_count_completed"], values["batch_count_failed"]) == (
        "3",
        "2",
        "1",
    )


def test_starting_a_job_sends_keboolas_body_with_the_token(simulator: RunningSimulator, token: str) -> None:
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS)
    variables = batch_variables(["batch_a"], [])

    job_id = client.start_job(COMPONENT, "123456", variables)

    [received] = simulator.control.keboola_jobs()
    assert received["id"] == job_id
    assert received["token"] == token
    assert received["body"] == {
        "component": COMPONENT,
        "config": "123456",
        "mode": "run",
        "variableValuesData": {"values": variables},
    }


def test_a_job_is_followed_until_it_finishes(simulator: RunningSimulator, token: str) -> None:
    simulator.control.configure(job_duration=0.6)
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS)
    job_id = client.start_job(COMPONENT, "1", batch_variables(["batch_a"], []))

    seen: list[str] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        if job.is_finished:
            break
        time.sleep(0.05)

    assert seen == ["created", "processing", "success"]
    assert job.variables["batch_ids_completed"] == '["batch_a"]'
    assert job.project_id == simulator.control.keboola_jobs()[0]["project_id"]


@pytest.mark.parametrize(
    ("project", "read"),
    [({"id": 4242}, "4242"), ({"id": "17"}, "17"), ({"id": "1/../x"}, None), ({"id": None}, None), ("7", None)],
)
def test_a_jobs_project_is_read_only_when_it_is_a_number(project: object, read: str | None) -> None:
    assert parse_job({"id": "123", "status": "success", "project": project}).project_id == read


def test_a_job_flipped_to_error_is_finished_with_that_status(simulator: RunningSimulator, token: str) -> None:
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS)
    job_id = client.start_job(COMPONENT, "1", [])

    simulator.control.set_job_status(job_id, "error")
    job = client.get_job(job_id)

    assert (job.status, job.is_finished) == ("error", True)


def test_search_finds_recent_jobs_of_one_configuration_with_their_variables(
    simulator: RunningSimulator, token: str
) -> None:
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS)
    client.start_job(COMPONENT, "old", [])
    time.sleep(1.1)
    since = datetime.now(UTC)
    wanted = client.start_job(COMPONENT, "42", batch_variables(["batch_a"], ["batch_b"]))
    client.start_job(COMPONENT, "other-config", [])
    client.start_job("keboola.other-component", "42", [])

    found = client.search_jobs(COMPONENT, "42", since - timedelta(milliseconds=1))

    assert [job.id for job in found] == [wanted]
    assert found[0].config == "42"
    assert found[0].created_time is not None and found[0].created_time >= since - timedelta(seconds=1)
    assert json.loads(found[0].variables["batch_ids_failed"]) == ["batch_b"]
    assert client.search_jobs(COMPONENT, "old", since + timedelta(seconds=1)) == []


def test_search_reads_every_page(simulator: RunningSimulator, token: str) -> None:
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS)
    started = {client.start_job(COMPONENT, "7", []) for _ in range(205)}

    found = client.search_jobs(COMPONENT, "7", datetime.now(UTC) - timedelta(minutes=1))

    assert {job.id for job in found} == started
    assert [int(job.id) for job in found] == sorted((int(job.id) for job in found), reverse=True)
    assert simulator.control.counters()["requests"]["GET /search/jobs"] == 3


def test_search_lags_like_keboolas_index(simulator: RunningSimulator, token: str) -> None:
    simulator.control.configure(search_delay=0.5)
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS)
    since = datetime.now(UTC) - timedelta(seconds=1)
    job_id = client.start_job(COMPONENT, "9", [])

    assert client.search_jobs(COMPONENT, "9", since) == []
    time.sleep(0.6)
    assert [job.id for job in client.search_jobs(COMPONENT, "9", since)] == [job_id]


def test_a_job_whose_answer_was_lost_is_found_by_search(simulator: RunningSimulator, token: str) -> None:
    simulator.control.add_fault("/jobs", method="POST", delay=1, count=1)
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS, read_timeout=0.3)
    since = datetime.now(UTC) - timedelta(seconds=1)

    with pytest.raises(TransientError):
        client.start_job(COMPONENT, "55", batch_variables(["batch_x"], []))
    time.sleep(0.8)

    [found] = client.search_jobs(COMPONENT, "55", since)
    assert json.loads(found.variables["batch_ids_completed"]) == ["batch_x"]


def test_verify_token_says_who_the_token_is(simulator: RunningSimulator, token: str) -> None:
    simulator.control.add_token("9999-project-two-token", project_id="2", description="reporting")

    info = KeboolaQueueClient("9999-project-two-token", simulator.stack_url, hosts=SIMULATOR_HOSTS).verify_token()

    assert (info.description, info.project_id, info.project_name) == ("reporting", "2", "Simulated project 2")


def test_an_unknown_token_is_refused_everywhere_and_starts_nothing(simulator: RunningSimulator) -> None:
    client = KeboolaQueueClient("0000-unknown-token", simulator.stack_url, hosts=SIMULATOR_HOSTS)

    with pytest.raises(PermanentError) as on_verify:
        client.verify_token()
    with pytest.raises(PermanentError) as on_start:
        client.start_job(COMPONENT, "1", [])

    assert (on_verify.value.status, on_verify.value.code) == (401, "storage.tokenInvalid")
    assert (on_start.value.status, on_start.value.code) == (401, "401")
    assert on_start.value.message == "Invalid access token"
    assert simulator.control.keboola_jobs() == []


def test_a_job_of_another_project_or_unknown_id_is_not_found(simulator: RunningSimulator, token: str) -> None:
    simulator.control.add_token("2222-other-project", project_id="2")
    job_id = KeboolaQueueClient("2222-other-project", simulator.stack_url, hosts=SIMULATOR_HOSTS).start_job(
        COMPONENT, "1", []
    )
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS)

    for missing in (job_id, "123"):
        with pytest.raises(PermanentError) as caught:
            client.get_job(missing)
        assert caught.value.status == 404
        assert missing in caught.value.message


def test_a_refused_job_is_permanent_with_keboolas_message(simulator: RunningSimulator, token: str) -> None:
    with pytest.raises(PermanentError) as caught:
        KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS).start_job("", "1", [])

    assert caught.value.status == 400
    assert "component" in caught.value.message


@pytest.mark.parametrize(("status", "retry_after"), [(429, 12.0), (500, None), (503, 30.0)])
def test_throttling_and_outages_are_transient(
    simulator: RunningSimulator, token: str, status: int, retry_after: float | None
) -> None:
    simulator.control.add_fault("/jobs", method="POST", status=status, retry_after=retry_after, count=1)
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS)

    with pytest.raises(TransientError) as caught:
        client.start_job(COMPONENT, "1", [])

    assert (caught.value.status, caught.value.retry_after) == (status, retry_after)
    assert caught.value.message
    assert client.start_job(COMPONENT, "1", [])


def test_a_redirect_is_refused_and_the_token_goes_nowhere_else(simulator: RunningSimulator, token: str) -> None:
    with start_simulator() as elsewhere:
        simulator.control.add_fault("/jobs", status=307, headers={"Location": elsewhere.base_url + "/jobs"})

        with pytest.raises(PermanentError) as caught:
            KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS).start_job(COMPONENT, "1", [])

        assert caught.value.status == 307
        assert elsewhere.control.counters()["total"] == 0


def test_the_token_never_appears_in_errors_logs_or_reprs(
    simulator: RunningSimulator, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = KeboolaQueueClient(token, simulator.stack_url, hosts=SIMULATOR_HOSTS, read_timeout=0.3)
    errors: list[ServiceError] = []

    client.get_job(client.start_job(COMPONENT, "1", []))
    client.verify_token()
    simulator.control.add_fault("/jobs*", status=400, count=1, message=f"token {token} refused", code=token)
    simulator.control.add_fault("/jobs*", status=503, count=1)
    simulator.control.add_fault("/jobs*", drop=True, count=1)
    simulator.control.add_fault("/jobs*", delay=1, count=1)
    for _ in range(4):
        with pytest.raises(ServiceError) as caught:
            client.start_job(COMPONENT, "1", [])
        errors.append(caught.value)
    with pytest.raises(ServiceError) as caught:
        KeboolaQueueClient(token + "-wrong", simulator.stack_url, hosts=SIMULATOR_HOSTS).verify_token()
    errors.append(caught.value)

    texts = [str(error) for error in errors] + [repr(error) for error in errors] + [repr(client)]
    texts += [record.getMessage() for record in caplog.records]
    assert not [text for text in texts if token in text]


def test_a_token_is_never_sent_to_an_untrusted_host(connection_recorder) -> None:
    # urllib3 reads this URL's host as 127.0.0.1 (it stops at the backslash); urlsplit reads it as a
    # keboola.com host. The client judges the host the way urllib3 will connect to it.
    stack = f"https://127.0.0.1:{connection_recorder.port}\\.keboola.com"
    client = KeboolaQueueClient("1234-secret-token", stack, hosts=KeboolaHosts())

    with pytest.raises(UnsafeEndpointError, match="backslashes"):
        client.verify_token()
    with pytest.raises(UnsafeEndpointError):
        client.start_job(COMPONENT, "1", [])
    assert connection_recorder.first_lines == []
