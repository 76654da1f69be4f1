"""Named API tokens: shown once, stored as SHA-256 only, checked in constant time, revoked by name."""

import hashlib

import pytest
from sqlalchemy import select

from teckochecker.errors import ConflictError, NotFoundError, ValidationError
from teckochecker.models import ApiToken, TokenRole
from teckochecker.services import tokens as service


def test_a_created_token_is_stored_only_as_its_hash_and_authenticates(session, settings) -> None:
    token, plaintext = service.create_token(session, name="grafana", role="read")
    session.commit()
    assert plaintext.startswith(service.TOKEN_PREFIX) and len(plaintext) > 40
    stored = session.scalars(select(ApiToken)).one()
    assert stored.token_hash == hashlib.sha256(plaintext.encode()).hexdigest() and plaintext not in repr(stored)
    principal = service.authenticate(session, settings, plaintext)
    assert principal == service.Principal("grafana", TokenRole.READ, token.id) and not principal.can_write
    assert service.authenticate(session, settings, plaintext + "x") is None
    assert service.authenticate(session, settings, stored.token_hash) is None  # the hash is not a token
    assert service.authenticate(session, settings, "x" * 10_000) is None


def test_api_token_is_a_write_token_and_tokens_become_required(session, settings) -> None:
    assert not service.authentication_required(session, settings)
    with_api_token = settings.with_overrides(api_token="the-api-token")
    assert service.authentication_required(session, with_api_token)
    assert service.authenticate(session, with_api_token, " the-api-token ") == service.Principal(
        "API_TOKEN", TokenRole.WRITE
    )
    service.create_token(session, name="ci", role="write")
    assert service.authentication_required(session, settings)


def test_names_are_unique_and_roles_checked(session) -> None:
    service.create_token(session, name="ci", role="write")
    with pytest.raises(ConflictError):
        service.create_token(session, name="ci", role="read")
    with pytest.raises(ValidationError) as wrong_role:
        service.create_token(session, name="admin", role="owner")
    assert wrong_role.value.field == "role"
    with pytest.raises(ValidationError):
        service.create_token(session, name="API_TOKEN", role="read")


def test_revoking_removes_the_token_and_its_sessions(session, settings) -> None:
    token, plaintext = service.create_token(session, name="temporary", role="write")
    assert service.current_principal(session, settings, token.id, "temporary") is not None
    assert service.current_principal(session, settings, token.id, "someone-else") is None
    service.revoke_token(session, "temporary")
    assert service.authenticate(session, settings, plaintext) is None
    assert service.current_principal(session, settings, token.id, "temporary") is None
    assert [t.name for t in service.list_tokens(session)] == []
    with pytest.raises(NotFoundError):
        service.revoke_token(session, "temporary")


def test_a_session_of_api_token_ends_when_api_token_is_unset(session, settings) -> None:
    with_api_token = settings.with_overrides(api_token="t")
    assert service.current_principal(session, with_api_token, None, "API_TOKEN") is not None
    assert service.current_principal(session, settings, None, "API_TOKEN") is None
