"""Keeps secrets out of text that came from an outside service, before it is stored or logged.

A service's error body can echo more than the key of the call: another stored key, a prefix of one, or a
token pasted into a field. So text is redacted three ways: every stored secret value wherever it appears,
any run of FRAGMENT_LENGTH or more characters that also occurs inside a stored secret (a prefix or a slice
of one), and anything shaped like an OpenAI key, a Keboola token or a webhook signing secret.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
# Shorter shared runs are too likely to be ordinary words; the audit's canary prefix `kbc-LEAKCAN` is 11.
FRAGMENT_LENGTH = 10
KEY_SHAPES = re.compile(
    r"sk-[A-Za-z0-9_-]{8,}"  # OpenAI keys: sk-…, sk-proj-…, sk-svcacct-…
    r"|\b\d+-\d+-[A-Za-z0-9]{8,}"  # Keboola Storage API tokens: <project>-<token id>-<random part>
    r"|whsec_[A-Za-z0-9+/=_-]{8,}"  # Standard Webhooks signing secrets
)


class Redacts(Protocol):
    def redact(self, text: str, *also: str) -> str: ...


class Redactor:
    """Redacts a fixed set of secret values, slices of them, and key shapes. Holds plaintext only in memory."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        self._fragments = _fragments_of(self._secrets)

    def redact(self, text: str, *also: str) -> str:
        """`text` with every secret (those given at creation, and `also`) and key shape replaced by REDACTED."""
        secrets = sorted({*self._secrets, *(secret for secret in also if secret)}, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        extra = _fragments_of(also) if also else frozenset()
        text = _cover_fragments(text, self._fragments | extra)
        return KEY_SHAPES.sub(REDACTED, text)


def _fragments_of(secrets: Iterable[str]) -> frozenset[str]:
    fragments = set()
    for secret in secrets:
        for start in range(len(secret) - FRAGMENT_LENGTH + 1):
            fragment = secret[start : start + FRAGMENT_LENGTH]
            # A URL's scheme separator (an Apprise URL is a secret) is not secret, and is in every link.
            if "://" not in fragment:
                fragments.add(fragment)
    return frozenset(fragments)


def _cover_fragments(text: str, fragments: frozenset[str]) -> str:
    """Replace every stretch of `text` made of windows found in `fragments` by one REDACTED."""
    if not fragments or len(text) < FRAGMENT_LENGTH:
        return text
    covered = [False] * len(text)
    for start in range(len(text) - FRAGMENT_LENGTH + 1):
        if text[start : start + FRAGMENT_LENGTH] in fragments:
            covered[start : start + FRAGMENT_LENGTH] = [True] * FRAGMENT_LENGTH
    if not any(covered):
        return text
    pieces = []
    for position, character in enumerate(text):
        if not covered[position]:
            pieces.append(character)
        elif position == 0 or not covered[position - 1]:
            pieces.append(REDACTED)
    return "".join(pieces)


class StoredSecretsRedactor:
    """A Redactor over every stored secret, reloaded at most every `max_age` seconds (secrets are added and
    rotated by other processes). `load` returns the plaintexts; it is called only when text needs redacting."""

    def __init__(self, load: Callable[[], Iterable[str]], *, max_age: float = 30.0) -> None:
        self._load = load
        self._max_age = max_age
        self._lock = threading.Lock()
        self._redactor: Redactor | None = None
        self._loaded_at = 0.0

    def redact(self, text: str, *also: str) -> str:
        return self._current().redact(text, *also)

    def _current(self) -> Redactor:
        with self._lock:
            if self._redactor is None or time.monotonic() - self._loaded_at > self._max_age:
                try:
                    self._redactor = Redactor(self._load())
                except Exception as error:
                    # The error being redacted must still be recorded: keep what we knew (the key of the
                    # call and the key shapes are redacted whatever happens) and try again next time.
                    logger.warning("could not load the stored secrets to redact with: %s", type(error).__name__)
                    self._redactor = self._redactor or Redactor()
                self._loaded_at = time.monotonic()
            return self._redactor
