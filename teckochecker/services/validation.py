"""Input rules shared by every adapter. Each refusal names the field and says why."""

from __future__ import annotations

import re
from collections.abc import Iterable

from teckochecker.clients.keboola_hosts import KeboolaHosts, UnsafeEndpointError
from teckochecker.config import Settings
from teckochecker.errors import ValidationError

NAME_MAX_LENGTH = 255
# Longer than any id, page or interval can be; Python's int() refuses over 4,300 digits with a ValueError.
WHOLE_NUMBER_MAX_DIGITS = 30
BATCH_ID_PATTERN = re.compile(r"^batch_[A-Za-z0-9_-]+$")


def validate_name(field: str, value: str | None, *, what: str) -> str:
    name = (value or "").strip()
    if not name:
        raise ValidationError(field, f"{what} must not be empty")
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError(field, f"{what} must be at most {NAME_MAX_LENGTH} characters, got {len(name)}")
    if any(not character.isprintable() for character in name):
        raise ValidationError(field, f"{what} must not contain control characters")
    return name


def whole_number(text: str) -> int | None:
    """A plain decimal number as a person types it, or None ("²" and "١" are digits to Python, not to us)."""
    text = text.strip()
    if not text or len(text) > WHOLE_NUMBER_MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def shortened(text: str, length: int = 60) -> str:
    """Text echoed back in an error, cut so that a pasted page does not become a page of error."""
    return text if len(text) <= length else f"{text[: length - 1]}… ({len(text)} characters)"


def secret_reference(text: str) -> int | str:
    """A secret as a person names it: a plain number is its id, anything else is its name."""
    number = whole_number(text)
    return text if number is None else number


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


def keboola_hosts(settings: Settings) -> KeboolaHosts:
    """The hosts this installation trusts with Keboola tokens."""
    return KeboolaHosts(frozenset(settings.keboola_allowed_hosts), settings.allow_insecure_endpoints)


def validate_stack_url(field: str, value: str | None, settings: Settings) -> str:
    """A Keboola stack URL: it receives a Storage API token, so only trusted hosts are accepted."""
    try:
        return keboola_hosts(settings).stack_url(value)
    except UnsafeEndpointError as error:
        raise ValidationError(field, error.message) from None
