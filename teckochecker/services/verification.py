"""Checks that a stored secret still works, with the cheapest call that proves what TeckoChecker needs.

An OpenAI key must be able to read batches (`GET /batches?limit=1`); a Keboola token must be accepted
by its stack's Storage API (`GET /v2/storage/tokens/verify`). A webhook signing secret and a notification
target cannot be asked about without a webhook or a message: their form is checked. No message ever holds
the secret.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from teckochecker.clients.errors import PermanentError, ServiceError, TransientError
from teckochecker.clients.keboola_hosts import KeboolaHosts, UnsafeEndpointError
from teckochecker.clients.keboola_queue import KeboolaQueueClient
from teckochecker.clients.openai_batches import OpenAIBatchClient
from teckochecker.config import Settings
from teckochecker.errors import ValidationError
from teckochecker.models import PollingJob, Secret, SecretType
from teckochecker.notifications.delivery import apprise_url_problem, service_name
from teckochecker.redaction import Redactor
from teckochecker.services.validation import keboola_hosts
from teckochecker.services.webhooks import signing_secret_problem
from teckochecker.vault import Vault

VERIFY_CONNECT_TIMEOUT = 5.0
VERIFY_READ_TIMEOUT = 15.0
# Statuses that mean "the service answered and refused this secret", as opposed to "could not tell".
_REFUSED_STATUSES = frozenset({401, 403})


class Verdict(enum.StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class VerificationResult:
    verdict: Verdict
    message: str

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.VALID


def verify_secret(
    secret_type: SecretType | str,
    value: str,
    *,
    openai_base_url: str,
    keboola_hosts: KeboolaHosts,
    stack_url: str | None = None,
    connect_timeout: float = VERIFY_CONNECT_TIMEOUT,
    read_timeout: float = VERIFY_READ_TIMEOUT,
) -> VerificationResult:
    """Ask the service whether it accepts `value`.

    `stack_url` and `keboola_hosts` are required for a Keboola token (tokens belong to one stack, and the
    token is sent only to a trusted host). Invalid means the service refused the secret (401/403); unreachable
    means the answer did not tell (no connection, timeout, 429, 5xx, an unexpected status).
    """
    try:
        kind = SecretType(str(secret_type).strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in SecretType)
        raise ValidationError("type", f"must be one of {allowed}, got {secret_type!r}") from None
    if kind is SecretType.OPENAI:
        return _verify_openai(value, openai_base_url, (connect_timeout, read_timeout))
    if kind is SecretType.OPENAI_WEBHOOK:
        return _check_signing_secret(value)
    if kind is SecretType.NOTIFICATION:
        return _check_notification_url(value)
    if not stack_url:
        raise ValidationError("stack", "a Keboola token belongs to one stack: give the stack URL to check it against")
    try:
        stack_url = keboola_hosts.stack_url(stack_url)
    except UnsafeEndpointError as error:
        raise ValidationError("stack", error.message) from None
    return _verify_keboola(value, stack_url, keboola_hosts, (connect_timeout, read_timeout))


def _verify_openai(key: str, base_url: str, timeouts: tuple[float, float]) -> VerificationResult:
    client = OpenAIBatchClient(key, base_url, connect_timeout=timeouts[0], read_timeout=timeouts[1])
    try:
        client.verify_key()
    except ServiceError as exc:
        return _failure(exc, key, where=client.base_url)
    return VerificationResult(Verdict.VALID, f"OpenAI accepted the key: it can read batches at {client.base_url}")


def _verify_keboola(
    token: str, stack_url: str, hosts: KeboolaHosts, timeouts: tuple[float, float]
) -> VerificationResult:
    client = KeboolaQueueClient(token, stack_url, hosts=hosts, connect_timeout=timeouts[0], read_timeout=timeouts[1])
    try:
        info = client.verify_token()
    except ServiceError as exc:
        return _failure(exc, token, where=client.stack_url)
    owner = f"project {info.project_name!r} (id {info.project_id})" if info.project_name else "its project"
    description = f" {info.description!r}" if info.description else ""
    return VerificationResult(
        Verdict.VALID, f"Keboola accepted the token{description} (id {info.id}) for {owner} at {client.stack_url}"
    )


def _check_signing_secret(value: str) -> VerificationResult:
    # OpenAI offers no call that checks a signing secret; only a webhook it signs can prove it.
    problem = signing_secret_problem(value)
    if problem:
        return VerificationResult(Verdict.INVALID, problem)
    return VerificationResult(
        Verdict.VALID,
        "it is a well-formed signing secret. OpenAI cannot be asked whether it is the right one: "
        "`teckochecker webhook info` shows when a validly signed webhook last arrived",
    )


def _check_notification_url(value: str) -> VerificationResult:
    # Checked without sending anything: `teckochecker notify test NAME` sends a real message.
    problem = apprise_url_problem(value)
    if problem:
        return VerificationResult(Verdict.INVALID, problem)
    return VerificationResult(
        Verdict.VALID,
        f"Apprise can send to it ({service_name(value)}); `teckochecker notify test NAME` sends a test message",
    )


def _failure(exc: ServiceError, secret: str, *, where: str) -> VerificationResult:
    # The clients already keep secrets out of their errors; redacting again costs nothing.
    reason = Redactor().redact(str(exc), secret)
    if isinstance(exc, PermanentError) and exc.status in _REFUSED_STATUSES:
        return VerificationResult(Verdict.INVALID, f"{exc.service} refused it: {reason}")
    if isinstance(exc, TransientError):
        return VerificationResult(Verdict.UNREACHABLE, f"could not check it at {where} now: {reason}")
    return VerificationResult(Verdict.UNREACHABLE, f"could not check it at {where}: {reason}")


DEFAULT_KEBOOLA_STACK = "https://connection.keboola.com"
# Secrets that belong to one service URL, so a verification may name it (a Keboola token: its stack).
STACK_BOUND_TYPES = frozenset({SecretType.KEBOOLA})


def default_stack_for(session: Session, secret: Secret) -> str:
    """Where to check a Keboola token when no stack is given: the stack of a job using it, else the US stack."""
    stack = session.scalar(
        select(PollingJob.keboola_stack_url)
        .where(PollingJob.keboola_secret_id == secret.id)
        .order_by(PollingJob.id.desc())
        .limit(1)
    )
    return stack or DEFAULT_KEBOOLA_STACK


def verify_stored_secret(
    session: Session, vault: Vault, settings: Settings, secret: Secret, *, stack: str | None = None
) -> VerificationResult:
    """Verify a stored secret: a Keboola token on `stack` (validated like a job's stack URL), else the stack of a
    job using it, else the US stack. The plaintext lives only for the call."""
    stack_url = None
    if secret.type in STACK_BOUND_TYPES:
        stack_url = stack or default_stack_for(session, secret)
    value = vault.decrypt(secret.encrypted_value, secret_name=secret.name)
    return verify_secret(
        secret.type,
        value,
        openai_base_url=settings.openai_base_url,
        keboola_hosts=keboola_hosts(settings),
        stack_url=stack_url,
    )
