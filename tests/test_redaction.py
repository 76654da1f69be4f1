"""Redaction of text from outside services: stored secrets, slices of them, and key shapes."""

from __future__ import annotations

from teckochecker.redaction import REDACTED, Redactor, StoredSecretsRedactor

CANARY = "kbc-LEAKCANARY-7f3a9c2e5d1b"
OPENAI_KEY = "sk-proj-abcdefghijklmnop0123456789"


def test_every_stored_secret_is_redacted_not_only_the_key_of_the_call() -> None:
    redactor = Redactor([CANARY, OPENAI_KEY])
    text = f"bad request: token {CANARY} and key {OPENAI_KEY} are not accepted"
    assert redactor.redact(text) == f"bad request: token {REDACTED} and key {REDACTED} are not accepted"


def test_a_prefix_or_slice_of_a_stored_secret_is_redacted() -> None:
    redactor = Redactor([CANARY])
    assert redactor.redact("token kbc-LEAKCAN is invalid") == f"token {REDACTED} is invalid"
    assert redactor.redact("token=kbc-LEAKCANxyz") == f"token={REDACTED}xyz"
    assert redactor.redact("ends with ...ANARY-7f3a9c2e") == f"ends with ...{REDACTED}"


def test_the_key_of_the_call_is_redacted_with_its_slices() -> None:
    assert Redactor().redact("bad key secretvalue-123456, retry", "secretvalue-1234567") == f"bad key {REDACTED}, retry"


def test_key_shapes_are_redacted_even_when_not_stored() -> None:
    text = "keys sk-live-0123456789abcdef, 1234-56789-AbCdEfGhIjKlMnOp and whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert Redactor().redact(text) == f"keys {REDACTED}, {REDACTED} and {REDACTED}"


def test_ordinary_text_is_left_alone() -> None:
    text = "Rate limit reached for requests (429). Please try again in 3 seconds; batch_abc123 is in_progress."
    assert Redactor([CANARY, OPENAI_KEY, "json://hooks.example.com/notify"]).redact(text) == text


def test_a_url_secret_does_not_redact_every_link() -> None:
    redactor = Redactor(["https://user:hunter2hunter2@hooks.example.com/abc"])
    assert redactor.redact("could not reach https://api.openai.com/v1") == "could not reach https://api.openai.com/v1"
    assert REDACTED in redactor.redact("login user:hunter2hunter2 refused")


def test_stored_secrets_are_reloaded_and_a_failed_load_still_redacts_the_call() -> None:
    stored = [CANARY]

    def load() -> list[str]:
        if not stored:
            raise RuntimeError("database down")
        return list(stored)

    redactor = StoredSecretsRedactor(load, max_age=0)
    assert redactor.redact(f"echo {CANARY}") == f"echo {REDACTED}"
    stored.clear()
    assert redactor.redact(f"echo {CANARY} and my-own-key-0123456789", "my-own-key-0123456789") == (
        f"echo {REDACTED} and {REDACTED}"
    )
