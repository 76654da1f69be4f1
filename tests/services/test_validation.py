import pytest

from teckochecker.config import Settings
from teckochecker.errors import ValidationError
from teckochecker.services.validation import validate_batch_ids, validate_poll_interval, validate_stack_url

SECURE = Settings()
INSECURE = Settings(allow_insecure_endpoints=True)
WITH_ALLOWED_HOST = Settings(keboola_allowed_hosts=("kbc.internal.example",))


@pytest.mark.parametrize(
    ("url", "settings", "expected"),
    [
        ("https://connection.eu-central-1.keboola.com/", SECURE, "https://connection.eu-central-1.keboola.com"),
        ("https://connection.keboola.com", SECURE, "https://connection.keboola.com"),
        ("https://kbc.internal.example", WITH_ALLOWED_HOST, "https://kbc.internal.example"),
        ("http://127.0.0.1:8900", INSECURE, "http://127.0.0.1:8900"),
        ("http://localhost:8900", INSECURE, "http://localhost:8900"),
    ],
)
def test_accepted_stack_urls(url, settings, expected) -> None:
    assert validate_stack_url("keboola_stack_url", url, settings) == expected


@pytest.mark.parametrize(
    ("url", "settings", "reason"),
    [
        ("http://connection.keboola.com", SECURE, "must use https"),
        ("https://127.0.0.1:8900", SECURE, "ALLOW_INSECURE_ENDPOINTS"),
        ("https://localhost", SECURE, "ALLOW_INSECURE_ENDPOINTS"),
        ("https://keboola.com.evil.example", SECURE, "not a Keboola stack"),
        ("https://evilkeboola.com", SECURE, "not a Keboola stack"),
        ("https://connection.keboola.com/v2/storage", SECURE, "without a path"),
        ("https://user:pw@connection.keboola.com", SECURE, "without a path"),
        ("ftp://connection.keboola.com", SECURE, "not a URL like"),
        ("", SECURE, "must not be empty"),
    ],
)
def test_refused_stack_urls_say_why(url, settings, reason) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_stack_url("keboola_stack_url", url, settings)
    assert caught.value.field == "keboola_stack_url"
    assert reason in caught.value.message


def test_batch_ids() -> None:
    assert validate_batch_ids("batch_ids", ["batch_abc123", "batch_A-b_9"], maximum=100) == [
        "batch_abc123",
        "batch_A-b_9",
    ]
    for bad, reason in [
        (["abc123"], "not an OpenAI batch id"),
        (["batch_"], "not an OpenAI batch id"),
        (["batch_a b"], "not an OpenAI batch id"),
        (["batch_1", "batch_1"], "listed twice"),
        ([], "at least one"),
        ([f"batch_{i}" for i in range(3)], "at most 2"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            validate_batch_ids("batch_ids", bad, maximum=2)


def test_poll_interval_bounds_come_from_settings() -> None:
    settings = Settings(min_poll_interval=30, max_poll_interval=3600, default_poll_interval=120)
    assert validate_poll_interval("poll_interval_seconds", None, settings) == 120
    assert validate_poll_interval("poll_interval_seconds", 30, settings) == 30
    for bad in (29, 3601, 0):
        with pytest.raises(ValidationError, match="between 30 and 3600"):
            validate_poll_interval("poll_interval_seconds", bad, settings)
