"""Secrets: encrypted API keys and tokens. Plaintext leaves this module only through `reveal_secret`."""

from __future__ import annotations

from sqlalchemy import func, or_, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from teckochecker.errors import ConflictError, NotFoundError, ValidationError, VaultError
from teckochecker.models import MAX_ID, JobNotification, PollingJob, Secret, SecretType
from teckochecker.notifications.delivery import apprise_url_problem
from teckochecker.notifications.events import parse_events, stored_events
from teckochecker.services.validation import shortened, validate_name
from teckochecker.services.webhooks import signing_secret_problem
from teckochecker.vault import Vault

JOBS_NAMED_IN_A_MESSAGE = 10
# Real keys and tokens are a few hundred characters at most; anything longer is a paste gone wrong.
SECRET_VALUE_MAX_LENGTH = 4096


def parse_secret_type(field: str, value: str | None) -> SecretType:
    try:
        return SecretType((value or "").strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in SecretType)
        raise ValidationError(field, f"must be one of {allowed}, got {value!r}") from None


# These are sent in HTTP headers (or are keys of a header's signature), which carry ASCII only.
_HEADER_SECRET_TYPES = frozenset({SecretType.OPENAI, SecretType.KEBOOLA, SecretType.OPENAI_WEBHOOK})


def validate_secret_value(value: str | None, secret_type: SecretType) -> str:
    """A key or token as it will be used: one line of printable text, surrounding space stripped."""
    plaintext = (value or "").strip()
    if not plaintext:
        raise ValidationError("value", "the secret value must not be empty")
    if len(plaintext) > SECRET_VALUE_MAX_LENGTH:
        raise ValidationError(
            "value", f"the secret value must be at most {SECRET_VALUE_MAX_LENGTH} characters, got {len(plaintext)}"
        )
    if not plaintext.isprintable():
        # A NUL, newline or other control character would corrupt the HTTP header the value is sent in.
        raise ValidationError("value", "the secret value must not contain control characters or line breaks")
    if secret_type in _HEADER_SECRET_TYPES and not plaintext.isascii():
        raise ValidationError(
            "value", f"an {secret_type.value} key or token is plain ASCII text; check what was pasted"
        )
    problem = None
    if secret_type is SecretType.OPENAI_WEBHOOK:
        problem = signing_secret_problem(plaintext)
    elif secret_type is SecretType.NOTIFICATION:
        problem = apprise_url_problem(plaintext)
    if problem:
        raise ValidationError("value", problem)
    return plaintext


def _notification_events(secret_type: SecretType, events: str | list[str] | None) -> str | None:
    if events is None:
        return None
    if secret_type is not SecretType.NOTIFICATION:
        raise ValidationError("events", "only a notification target chooses events")
    return stored_events(parse_events("events", events))


def notification_events(secret: Secret) -> list[str] | None:
    """A notification target's chosen events (None: all); None for other secrets."""
    if secret.type != SecretType.NOTIFICATION or secret.notification_events is None:
        return None
    return secret.notification_events.split(",")


def set_notification_events(session: Session, secret: Secret, events: str | list[str]) -> Secret:
    """Choose which events a notification target hears of (`all` for every one)."""
    secret.notification_events = _notification_events(SecretType(secret.type), events)
    session.flush()
    return secret


def add_secret(
    session: Session, vault: Vault, *, name: str, type: str, value: str, events: str | list[str] | None = None
) -> Secret:
    """Store a secret; a notification target may choose its `events` (default: all)."""
    name = validate_name("name", name, what="a secret's name")
    secret_type = parse_secret_type("type", type)
    chosen = _notification_events(secret_type, events)
    plaintext = validate_secret_value(value, secret_type)
    if session.scalar(select(Secret.id).where(Secret.name == name)) is not None:
        raise ConflictError(f"A secret named '{name}' already exists")
    secret = Secret(
        name=name, type=secret_type.value, encrypted_value=vault.encrypt(plaintext), notification_events=chosen
    )
    session.add(secret)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Another writer took the name between our check and our insert.
        raise ConflictError(f"A secret named '{name}' already exists") from None
    return secret


def replace_secret_value(session: Session, vault: Vault, secret: Secret, value: str) -> Secret:
    """Store a new value for an existing secret (a rotated OpenAI key, a new Keboola token)."""
    plaintext = validate_secret_value(value, SecretType(secret.type))
    secret.encrypted_value = vault.encrypt(plaintext)
    session.flush()
    return secret


def list_secrets(session: Session) -> list[Secret]:
    return list(session.scalars(select(Secret).order_by(Secret.id)))


def get_secret(session: Session, secret_id: int) -> Secret:
    secret = session.get(Secret, secret_id) if 1 <= secret_id <= MAX_ID else None
    if secret is None:
        raise NotFoundError(f"Secret {secret_id} not found")
    return secret


def get_secret_by_name(session: Session, name: str) -> Secret:
    secret = session.scalar(select(Secret).where(Secret.name == name.strip()))
    if secret is None:
        raise NotFoundError(f"Secret '{name}' not found. `teckochecker secret list` shows the stored secrets")
    return secret


def resolve_secret(session: Session, field: str, reference: int | str, expected: SecretType) -> Secret:
    """A secret given by id or by name, checked to be of the expected type."""
    if isinstance(reference, int) and not isinstance(reference, bool):
        secret = session.get(Secret, reference) if 1 <= reference <= MAX_ID else None
        label = f"secret {reference}"
    else:
        secret = session.scalar(select(Secret).where(Secret.name == str(reference).strip()))
        label = f"secret '{shortened(str(reference))}'"
    if secret is None:
        raise ValidationError(field, f"{label} does not exist")
    if secret.type != expected.value:
        raise ValidationError(field, f"{label} is a {secret.type} secret, but a {expected.value} secret is needed")
    return secret


def jobs_using(session: Session, secret: Secret) -> list[PollingJob]:
    subscribed = select(JobNotification.job_id).where(JobNotification.secret_id == secret.id)
    query = (
        select(PollingJob)
        .where(
            or_(
                PollingJob.openai_secret_id == secret.id,
                PollingJob.keboola_secret_id == secret.id,
                PollingJob.id.in_(subscribed),
            )
        )
        .order_by(PollingJob.id)
    )
    return list(session.scalars(query))


def usage_counts(session: Session) -> dict[int, int]:
    """How many jobs use each secret (as either of their two secrets, or as a notification target), in one
    aggregate query."""
    uses = union_all(
        select(PollingJob.openai_secret_id.label("secret_id"), PollingJob.id.label("job_id")),
        select(PollingJob.keboola_secret_id, PollingJob.id),
        select(JobNotification.secret_id, JobNotification.job_id),
    ).subquery()
    rows = session.execute(
        select(uses.c.secret_id, func.count(func.distinct(uses.c.job_id))).group_by(uses.c.secret_id)
    )
    return {secret_id: count for secret_id, count in rows}


def delete_secret(session: Session, secret: Secret) -> None:
    """Delete a secret no job uses. Jobs keep their history, so a secret in use is refused, never cascaded."""
    users = jobs_using(session, secret)
    if users:
        named = ", ".join(f"{job.id} '{job.name}'" for job in users[:JOBS_NAMED_IN_A_MESSAGE])
        more = f" and {len(users) - JOBS_NAMED_IN_A_MESSAGE} more" if len(users) > JOBS_NAMED_IN_A_MESSAGE else ""
        remedy = "Delete those jobs first"
        if secret.type == SecretType.NOTIFICATION:
            remedy = "Change their targets first (`teckochecker job update ID --notify NAME` or `--no-notify`)"
        raise ConflictError(f"Secret '{secret.name}' is used by {len(users)} job(s): {named}{more}. {remedy}")
    session.delete(secret)
    session.flush()


def reveal_secret(session: Session, vault: Vault, secret_id: int) -> str:
    """The plaintext of one secret, for the moment a worker calls the service it belongs to."""
    secret = get_secret(session, secret_id)
    return vault.decrypt(secret.encrypted_value, secret_name=secret.name)


def stored_secret_values(session: Session, vault: Vault) -> list[str]:
    """The plaintext of every secret that decrypts, for redacting text from outside services."""
    values = []
    for secret in list_secrets(session):
        try:
            values.append(vault.decrypt(secret.encrypted_value, secret_name=secret.name))
        except VaultError:
            continue
    return values


def rotate_key(session: Session, vault: Vault) -> int:
    """Re-encrypt every secret with SECRET_KEY's first key; all or nothing. Returns how many were rewritten."""
    secrets = list_secrets(session)
    reencrypted = [(secret, vault.reencrypt(secret.encrypted_value, secret_name=secret.name)) for secret in secrets]
    for secret, token in reencrypted:
        secret.encrypted_value = token
    session.flush()
    return len(reencrypted)


def undecryptable_secrets(session: Session, vault: Vault) -> list[str]:
    """Names of stored secrets that no key in SECRET_KEY can decrypt."""
    failing = []
    for secret in list_secrets(session):
        try:
            vault.decrypt(secret.encrypted_value, secret_name=secret.name)
        except VaultError:
            failing.append(secret.name)
    return failing
