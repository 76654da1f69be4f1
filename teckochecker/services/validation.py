"""Input rules shared by every adapter. Each refusal names the field and says why."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from teckochecker.config import Settings
from teckochecker.errors import ValidationError

NAME_MAX_LENGTH = 255
BATCH_ID_PATTERN = re.compile(r"^batch_[A-Za-z0-9_-]+$")
KEBOOLA_DOMAIN = "keboola.com"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
STACK_URL_MAX_LENGTH = 2048


def validate_name(field: str, value: str | None, *, what: str) -> str:
    name = (value or "").strip()
    if not name:
        raise ValidationError(field, f"{what} must not be empty")
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError(field, f"{what} must be at most {NAME_MAX_LENGTH} characters, got {len(name)}")
    if any(not character.isprintable() for character in name):
        raise ValidationError(field, f"{what} must not contain control characters")
    return name


def validate_batch_ids(field: str, values: Iterable[str], *, maximum: int) -> list[str]:
    batch_ids = [value.strip() for value in values]
    if not batch_ids:
        raise ValidationError(field, "at least one batch id is required")
    if len(batch_ids) > maximum:
        raise ValidationError(field, f"a job holds at most {maximum} batches, got {len(batch_ids)}")
    seen: set[str] = set()
    for batch_id in batch_ids:
        if len(batch_id) > NAME_MAX_LENGTH or not BATCH_ID_PATTERN.match(batch_id):
            raise ValidationError(
                field,
                f"{batch_id!r} is not an OpenAI batch id: expected 'batch_' followed by letters, digits, '_' or '-'",
            )
        if batch_id in seen:
            raise ValidationError(field, f"batch id {batch_id!r} is listed twice")
        seen.add(batch_id)
    return batch_ids


def validate_poll_interval(field: str, value: int | None, settings: Settings) -> int:
    interval = settings.default_poll_interval if value is None else value
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise ValidationError(field, f"must be a whole number of seconds, got {interval!r}")
    if not settings.min_poll_interval <= interval <= settings.max_poll_interval:
        raise ValidationError(
            field,
            f"must be between {settings.min_poll_interval} and {settings.max_poll_interval} seconds, got {interval}",
        )
    return interval


def validate_keboola_id(field: str, value: str | None, *, what: str) -> str:
    identifier = (value or "").strip()
    if not identifier:
        raise ValidationError(field, f"{what} must not be empty")
    if len(identifier) > NAME_MAX_LENGTH or any(c.isspace() or not c.isprintable() for c in identifier):
        raise ValidationError(field, f"{what} must be at most {NAME_MAX_LENGTH} characters without spaces")
    return identifier


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (brackets allowed): addresses only this machine can reach."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_stack_url(field: str, value: str | None, settings: Settings) -> str:
    """A Keboola stack URL: it receives a Storage API token, so only trusted hosts are accepted."""
    url = (value or "").strip().rstrip("/")
    if not url:
        raise ValidationError(field, "the Keboola stack URL must not be empty")
    if len(url) > STACK_URL_MAX_LENGTH:
        raise ValidationError(field, f"must be at most {STACK_URL_MAX_LENGTH} characters, got {len(url)}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(field, f"{url!r} is not a valid URL ({exc})") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise ValidationError(field, f"{url!r} is not a URL like https://connection.keboola.com")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValidationError(
            field,
            "give only the stack's address, like https://connection.eu-central-1.keboola.com, without a path",
        )
    insecure_allowed = settings.allow_insecure_endpoints
    if parts.scheme == "http" and not insecure_allowed:
        raise ValidationError(
            field,
            "must use https, since it receives a Keboola token (http needs ALLOW_INSECURE_ENDPOINTS=true)",
        )
    if is_loopback(host):
        if not insecure_allowed:
            raise ValidationError(field, f"loopback host {host!r} is accepted only with ALLOW_INSECURE_ENDPOINTS=true")
    elif not (host == KEBOOLA_DOMAIN or host.endswith("." + KEBOOLA_DOMAIN) or host in settings.keboola_allowed_hosts):
        raise ValidationError(
            field,
            f"host {host!r} is not a Keboola stack: it must end in .{KEBOOLA_DOMAIN} or be listed in "
            "KEBOOLA_ALLOWED_HOSTS",
        )
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host:
        netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
    return f"{parts.scheme}://{netloc}"
