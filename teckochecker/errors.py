"""Errors a user can act on. Adapters turn them into exit codes (CLI) or HTTP statuses (API)."""

from __future__ import annotations


class TeckoError(Exception):
    """Base of every error caused by input or state the user controls."""


class ConfigError(TeckoError):
    """A setting is missing or malformed; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class ValidationError(TeckoError):
    """Input refused; `field` names what was wrong so the API can point at it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class NotFoundError(TeckoError):
    """The named secret or job does not exist."""


class ConflictError(TeckoError):
    """The request clashes with the current state (a duplicate name, a secret in use, a wrong status)."""


class VaultError(TeckoError):
    """A secret cannot be encrypted or decrypted with the configured SECRET_KEY."""
