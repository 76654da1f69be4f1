"""The HTTP plumbing both clients share: pooled sessions, explicit timeouts, failure classification.

One `requests.Session` per process, thread and host: a Session is not safe to share between threads,
Celery thread pools run many checks at once, and a forked worker must not reuse its parent's sockets.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from teckochecker.clients.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
TRANSIENT_STATUSES = frozenset({408, 409, 429})
MESSAGE_MAX_LENGTH = 500

# Reads a decoded error body into (message, code); each service shapes its errors differently.
ErrorReader = Callable[[Any], tuple[str | None, str | None]]

_local = threading.local()


def _forget_sessions_after_fork() -> None:
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_sessions_after_fork)


def session_for(url: str) -> requests.Session:
    """The calling thread's pooled session for the scheme and host of `url`."""
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc.lower())
    sessions: dict[tuple[str, str], requests.Session] | None = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    session = sessions.get(key)
    if session is None:
        session = requests.Session()
        # The environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE) is read once here, not on every
        # request as requests does by default: that lookup was a measurable part of a check's CPU. Nor is
        # ~/.netrc consulted: its credentials would replace the Authorization header we send.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(url)
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        # No hidden retries: the caller's retry policy (with backoff and Retry-After) is the only one.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
        session.mount(f"{parts.scheme}://", adapter)
        sessions[key] = session
    return session


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms`, else `retry-after` (seconds or an HTTP date)."""
    milliseconds = _seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _seconds(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return max(0.0, number) if number is not None and math.isfinite(number) else None


def request_json(
    method: str,
    url: str,
    *,
    service: str,
    redact: Callable[[str], str],
    headers: Mapping[str, str],
    timeouts: tuple[float, float],
    read_error: ErrorReader,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
) -> Any:
    """Send one request and return the decoded JSON of a 2xx answer; raise a classified error otherwise.

    Every piece of the answer that goes into an error message passes through `redact` first.
    """
    host = urlsplit(url).netloc
    started = time.monotonic()
    try:
        response = session_for(url).request(
            method,
            url,
            headers=dict(headers),
            params=params,
            json=json_body,
            timeout=timeouts,
            # A redirect could carry the token to another host (requests keeps custom headers such as
            # X-StorageApi-Token across hosts), so none is followed.
            allow_redirects=False,
        )
    except requests.ConnectTimeout:
        raise TransientError(service, f"could not connect to {host} within {timeouts[0]:g} s") from None
    except requests.Timeout:
        raise TransientError(service, f"{host} sent no answer within {timeouts[1]:g} s") from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        reason = redact(_root_cause(exc))
        raise TransientError(service, f"connection to {host} failed: {reason}") from None
    except requests.RequestException as exc:
        raise PermanentError(service, f"request to {host} could not be sent: {redact(str(exc))}") from None

    elapsed_ms = (time.monotonic() - started) * 1000
    logger.debug("%s %s %s -> %s in %.0f ms", service, method, response.url, response.status_code, elapsed_ms)
    status = response.status_code
    if 200 <= status < 300:
        try:
            return response.json()
        except ValueError:
            raise TransientError(service, f"{host} answered HTTP {status} with a body that is not JSON") from None
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        raise PermanentError(
            service, f"{host} redirected to {redact(location)}; check the configured URL", status=status
        )

    message, code = _read_error_body(response, read_error)
    message = redact(message or f"{status} {response.reason}")[:MESSAGE_MAX_LENGTH]
    code = redact(code) if code else None
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientError(
            service, message, status=status, code=code, retry_after=parse_retry_after(response.headers)
        )
    raise PermanentError(service, message, status=status, code=code)


def _read_error_body(response: requests.Response, read_error: ErrorReader) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return None, None
    return read_error(body)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason (e.g. "[Errno 111] Connection refused") rather than urllib3's long wrapper text."""
    cause = exc
    for _ in range(10):
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = cause.__cause__ or next((arg for arg in cause.args if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        cause = inner
    return str(cause) or type(cause).__name__
