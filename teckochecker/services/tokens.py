"""API tokens: API_TOKEN (a `write` token) and named tokens with a role, stored as SHA-256 hashes.

A token is 256 random bits, so one fast hash is enough: there is nothing to guess, and a stolen table gives
no token back. The plaintext exists once, in the value `create_token` returns.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.errors import ConflictError, NotFoundError, ValidationError
from teckochecker.models import ApiToken, TokenRole
from teckochecker.services.validation import validate_name

TOKEN_PREFIX = "tck_"
TOKEN_RANDOM_BYTES = 32
# The principal name of API_TOKEN, which has no row of its own.
API_TOKEN_NAME = "API_TOKEN"
# A presented token longer than this cannot be ours; refuse it before hashing arbitrary input.
PRESENTED_TOKEN_MAX_LENGTH = 512


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name, role and row id (None for API_TOKEN), never the token."""

    name: str
    role: TokenRole
    token_id: int | None = None

    @property
    def can_write(self) -> bool:
        return self.role is TokenRole.WRITE


# Who acts when no token is configured at all (the loopback-only mode): the API and dashboard are open.
OPEN_ACCESS = Principal(name="anyone (no token configured)", role=TokenRole.WRITE)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_role(field: str, value: str | None) -> TokenRole:
    try:
        return TokenRole((value or "").strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in TokenRole)
        raise ValidationError(field, f"must be one of {allowed}, got {value!r}") from None


def create_token(session: Session, *, name: str, role: str) -> tuple[ApiToken, str]:
    """A new named token and its plaintext, which is never stored and cannot be shown again."""
    name = validate_name("name", name, what="a token's name")
    if name == API_TOKEN_NAME:
        raise ValidationError("name", f"{API_TOKEN_NAME} is the name of the token set in the environment")
    token_role = parse_role("role", role)
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)
    token = ApiToken(name=name, role=token_role.value, token_hash=hash_token(plaintext))
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise ConflictError(f"A token named '{name}' already exists")
    session.add(token)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ConflictError(f"A token named '{name}' already exists") from None
    return token, plaintext


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, name: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.name == name.strip()))
    if token is None:
        raise NotFoundError(f"Token '{name}' not found. `teckochecker token list` shows the tokens")
    session.delete(token)
    session.flush()
    return token


def authentication_required(session: Session, settings: Settings) -> bool:
    """Tokens are asked for once API_TOKEN is set or any named token exists."""
    return settings.api_token is not None or bool(session.scalar(select(exists().where(ApiToken.id.isnot(None)))))


def authenticate(session: Session, settings: Settings, presented: str) -> Principal | None:
    """The principal a presented token belongs to, or None. Comparisons take constant time."""
    presented = presented.strip()
    if not presented or len(presented) > PRESENTED_TOKEN_MAX_LENGTH:
        return None
    if settings.api_token is not None and hmac.compare_digest(presented.encode(), settings.api_token.encode()):
        return Principal(API_TOKEN_NAME, TokenRole.WRITE)
    digest = hash_token(presented)
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return Principal(token.name, TokenRole(token.role), token.id)


def current_principal(session: Session, settings: Settings, token_id: int | None, name: str) -> Principal | None:
    """The principal a signed-in session names, if its token still exists: revoking a token ends its sessions."""
    if token_id is None:
        return Principal(API_TOKEN_NAME, TokenRole.WRITE) if name == API_TOKEN_NAME and settings.api_token else None
    token = session.get(ApiToken, token_id)
    if token is None or token.name != name:
        return None
    return Principal(token.name, TokenRole(token.role), token.id)
