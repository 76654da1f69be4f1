import pytest

from teckochecker.clients.keboola_hosts import UnsafeEndpointError
from teckochecker.config import Settings
from teckochecker.errors import ValidationError
from teckochecker.services.validation import (
    keboola_hosts,
    validate_batch_ids,
    validate_poll_interval,
    validate_stack_url,
)

SECURE = Settings()
INSECURE = Settings(allow_insecure_endpoints=True)
WITH_ALLOWED_HOST = Settings(keboola_allowed_hosts=("kbc.internal.example", "connection.kbc.internal.example"))


@pytest.mark.parametrize(
    ("url", "settings", "expected"),
    [
        ("https://connection.eu-central-1.keboola.com/", SECURE, "https://connection.eu-central-1.keboola.com"),
        ("https://connection.keboola.com", SECURE, "https://connection.keboola.com"),
        ("https://kbc.internal.example", WITH_ALLOWED_HOST, "https://kbc.internal.example"),
        ("http://127.0.0.1:8900", INSECURE, "http://127.0.0.1:8900"),
        ("http://localhost:8900", INSECURE, "http://localhost:8900"),
        ("http://[::1]:8900", INSECURE, "http://[::1]:8900"),
        ("https://CONNECTION.Keboola.com:443/", SECURE, "https://connection.keboola.com"),
        ("https://queue.kbc.internal.example", WITH_ALLOWED_HOST, "https://queue.kbc.internal.example"),
        ("https://xn--connction-e4a.keboola.com", SECURE, "https://xn--connction-e4a.keboola.com"),
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
        ("https://user:pw@connection.keboola.com", SECURE, "a user name"),
        # urllib3 (what requests connects with) stops the host at the backslash: evil.com would get the token.
        ("https://evil.com\\.keboola.com", SECURE, "backslashes"),
        ("https://evil.com\\@connection.keboola.com", SECURE, "backslashes"),
        ("https://connection.keboola.com%2f@evil.com", SECURE, "a user name"),
        ("https://evil.com#.keboola.com", SECURE, "a fragment"),
        ("https://evil.com?.keboola.com", SECURE, "a query"),
        ("https://a b.keboola.com", SECURE, "spaces"),
        ("https://a\x00.keboola.com", SECURE, "control"),
        ("https://a\t.keboola.com", SECURE, "control"),
        ("https://connéction.keboola.com", SECURE, "non-ASCII"),
        ("https://connection.keboola.com.", SECURE, "not a DNS name"),
        ("https://a_b.keboola.com", SECURE, "not a DNS name"),
        ("https://-a.keboola.com", SECURE, "not a DNS name"),
        ("https://[::1].keboola.com", SECURE, "not a valid URL"),
        ("https://connection.keboola.com:8443", SECURE, "port 8443 is not allowed"),
        ("https://connection.keboola.com:0", SECURE, "port"),
        ("https://queue.keboola.com.evil.example", SECURE, "not a Keboola stack"),
        ("https://" + "a" * 2050 + ".keboola.com", SECURE, "at most 2048"),
        ("ftp://connection.keboola.com", SECURE, "not a URL like"),
        ("", SECURE, "must not be empty"),
    ],
)
def test_refused_stack_urls_say_why(url, settings, reason) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_stack_url("keboola_stack_url", url, settings)
    assert caught.value.field == "keboola_stack_url"
    assert reason in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.com\\.keboola.com/v2/storage/tokens/verify",
        "https://evil.example/jobs",
        "http://connection.keboola.com/jobs",
        "https://127.0.0.1:9/jobs",
    ],
)
def test_a_request_url_to_an_untrusted_host_is_refused(url) -> None:
    with pytest.raises(UnsafeEndpointError):
        keboola_hosts(SECURE).check_request_url(url)


def test_a_request_url_to_a_trusted_host_passes() -> None:
    keboola_hosts(SECURE).check_request_url("https://queue.eu-central-1.keboola.com/search/jobs")
    keboola_hosts(WITH_ALLOWED_HOST).check_request_url("https://queue.kbc.internal.example/jobs/1")
    keboola_hosts(INSECURE).check_request_url("http://127.0.0.1:8900/jobs")


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
