"""`verify_secret` against the simulator: valid, invalid and unreachable, never echoing the secret."""

from __future__ import annotations

import pytest

from teckochecker.clients.keboola_hosts import KeboolaHosts
from teckochecker.errors import ValidationError
from teckochecker.models import SecretType
from teckochecker.services.verification import Verdict, VerificationResult, verify_secret
from teckochecker.simulator import RunningSimulator, start_simulator
from tests.conftest import SIMULATOR_API_KEY, SIMULATOR_TOKEN, register_test_credentials

API_KEY = SIMULATOR_API_KEY
TOKEN = SIMULATOR_TOKEN


@pytest.fixture
def simulator(simulator: RunningSimulator) -> RunningSimulator:
    return register_test_credentials(simulator)


# The simulator is a loopback http host, trusted only with ALLOW_INSECURE_ENDPOINTS.
SIMULATOR_HOSTS = KeboolaHosts(allow_insecure=True)


def verify_openai(simulator: RunningSimulator, key: str, **kwargs: float) -> VerificationResult:
    return verify_secret(
        SecretType.OPENAI, key, openai_base_url=simulator.openai_base_url, keboola_hosts=SIMULATOR_HOSTS, **kwargs
    )


def verify_keboola(simulator: RunningSimulator, token: str, **kwargs: float) -> VerificationResult:
    return verify_secret(
        "keboola",
        token,
        openai_base_url="unused",
        keboola_hosts=SIMULATOR_HOSTS,
        stack_url=simulator.stack_url,
        **kwargs,
    )


def test_a_working_openai_key_is_valid(simulator: RunningSimulator) -> None:
    result = verify_openai(simulator, API_KEY)

    assert result.verdict is Verdict.VALID and result.ok
    assert "can read batches" in result.message
    assert simulator.control.counters()["requests"] == {"GET /v1/batches": 1}


def test_a_refused_openai_key_is_invalid_with_openais_reason(simulator: RunningSimulator) -> None:
    key = "sk-revoked-key-9f8e7d6c5b4a39281706"

    result = verify_openai(simulator, key)

    assert result.verdict is Verdict.INVALID and not result.ok
    assert "invalid_api_key" in result.message and "Incorrect API key" in result.message
    assert key not in result.message and key[-4:] not in result.message


def test_a_key_without_batch_permission_is_invalid(simulator: RunningSimulator) -> None:
    simulator.control.add_fault(
        "/v1/batches", status=403, message="You have insufficient permissions. Missing scopes: api.batch.read."
    )

    result = verify_openai(simulator, API_KEY)

    assert result.verdict is Verdict.INVALID
    assert "api.batch.read" in result.message


@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 429, "retry_after": 5}, {"drop": True}])
def test_an_openai_outage_is_unreachable_not_invalid(simulator: RunningSimulator, fault: dict) -> None:
    simulator.control.add_fault("/v1/*", **fault)

    result = verify_openai(simulator, API_KEY)

    assert result.verdict is Verdict.UNREACHABLE
    assert "could not check it" in result.message


def test_a_slow_service_is_unreachable_within_the_timeout(simulator: RunningSimulator) -> None:
    simulator.control.add_fault("/v1/*", delay=2)

    result = verify_openai(simulator, API_KEY, read_timeout=0.3)

    assert result.verdict is Verdict.UNREACHABLE


def test_nothing_listening_is_unreachable() -> None:
    with start_simulator() as gone:
        base_url = gone.openai_base_url

    result = verify_secret(
        "openai", API_KEY, openai_base_url=base_url, keboola_hosts=SIMULATOR_HOSTS, connect_timeout=1
    )

    assert result.verdict is Verdict.UNREACHABLE
    assert API_KEY not in result.message


def test_a_working_keboola_token_is_valid_and_says_whose_it_is(simulator: RunningSimulator) -> None:
    result = verify_keboola(simulator, TOKEN)

    assert result.verdict is Verdict.VALID
    assert "teckochecker" in result.message and "77" in result.message
    assert TOKEN not in result.message


def test_a_refused_keboola_token_is_invalid(simulator: RunningSimulator) -> None:
    result = verify_keboola(simulator, "5555-00000-notAKnownToken")

    assert result.verdict is Verdict.INVALID
    assert "Invalid access token" in result.message
    assert "notAKnownToken" not in result.message


def test_a_keboola_outage_is_unreachable(simulator: RunningSimulator) -> None:
    simulator.control.add_fault("/v2/storage/*", status=500)

    assert verify_keboola(simulator, TOKEN).verdict is Verdict.UNREACHABLE


def test_a_secret_echoed_by_the_service_is_still_kept_out(simulator: RunningSimulator) -> None:
    simulator.control.add_fault("/v2/storage/*", status=401, message=f"token {TOKEN} is expired")

    result = verify_keboola(simulator, TOKEN)

    assert result.verdict is Verdict.INVALID
    assert TOKEN not in result.message and "expired" in result.message


def test_a_keboola_token_needs_a_stack() -> None:
    with pytest.raises(ValidationError) as caught:
        verify_secret(
            "keboola", TOKEN, openai_base_url="https://api.openai.com/v1", keboola_hosts=KeboolaHosts(), stack_url=None
        )

    assert caught.value.field == "stack"


def test_a_keboola_token_is_never_checked_against_an_untrusted_stack(connection_recorder) -> None:
    stack = f"https://127.0.0.1:{connection_recorder.port}\\.keboola.com"
    with pytest.raises(ValidationError, match="backslashes") as caught:
        verify_secret("keboola", TOKEN, openai_base_url="unused", keboola_hosts=KeboolaHosts(), stack_url=stack)

    assert caught.value.field == "stack"
    assert connection_recorder.first_lines == []


def test_an_unknown_secret_type_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        verify_secret("github", "x", openai_base_url="https://api.openai.com/v1", keboola_hosts=KeboolaHosts())

    assert caught.value.field == "type"
