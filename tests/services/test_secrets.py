import pytest
from sqlalchemy import select

from teckochecker.errors import ConflictError, NotFoundError, ValidationError, VaultError
from teckochecker.models import JobEvent, Secret, SecretType
from teckochecker.services import secrets as service
from teckochecker.services.jobs import JobDraft, create_job
from teckochecker.vault import Vault, generate_key


def test_add_strips_and_encrypts_the_value(session, vault) -> None:
    secret = service.add_secret(session, vault, name=" openai-prod ", type="openai", value="  sk-abc\n")
    session.commit()
    stored = session.scalar(select(Secret).where(Secret.id == secret.id))
    assert stored.name == "openai-prod"
    assert "sk-abc" not in stored.encrypted_value
    assert service.reveal_secret(session, vault, secret.id) == "sk-abc"
    assert "sk-abc" not in repr(stored)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "", "type": "openai", "value": "x"}, "name"),
        ({"name": "a" * 256, "type": "openai", "value": "x"}, "name"),
        ({"name": "n", "type": "anthropic", "value": "x"}, "type"),
        ({"name": "n", "type": "openai", "value": "   "}, "value"),
        ({"name": "n", "type": "openai", "value": "sk-a\x00b"}, "value"),
        ({"name": "n", "type": "keboola", "value": "123-abc\r\nX-Injected: 1"}, "value"),
        ({"name": "n", "type": "openai", "value": "sk-" + "a" * 4094}, "value"),
        ({"name": "n", "type": "openai", "value": "sk-ключ"}, "value"),
    ],
)
def test_invalid_input_names_the_field(session, vault, kwargs, field) -> None:
    with pytest.raises(ValidationError) as caught:
        service.add_secret(session, vault, **kwargs)
    assert caught.value.field == field


def test_a_value_of_the_cap_is_accepted(session, vault) -> None:
    value = "sk-" + "a" * (service.SECRET_VALUE_MAX_LENGTH - 3)
    secret = service.add_secret(session, vault, name="long", type="openai", value=value)
    assert service.reveal_secret(session, vault, secret.id) == value


def test_an_update_checks_the_new_value_like_a_new_secret(session, vault) -> None:
    secret = service.add_secret(session, vault, name="keboola-prod", type="keboola", value="123-abc")
    with pytest.raises(ValidationError, match="control characters"):
        service.replace_secret_value(session, vault, secret, "123\x07abc")
    assert service.reveal_secret(session, vault, secret.id) == "123-abc"


def test_duplicate_name_is_refused(session, vault) -> None:
    service.add_secret(session, vault, name="openai-prod", type="openai", value="a")
    with pytest.raises(ConflictError, match="already exists"):
        service.add_secret(session, vault, name="openai-prod", type="keboola", value="b")


def test_delete_refuses_a_secret_in_use_and_keeps_the_history(session, vault, settings) -> None:
    openai = service.add_secret(session, vault, name="openai-prod", type="openai", value="a")
    keboola = service.add_secret(session, vault, name="keboola-prod", type="keboola", value="b")
    job = create_job(
        session,
        settings,
        JobDraft(
            name="Nightly",
            batch_ids=["batch_1"],
            openai_secret="openai-prod",
            keboola_secret="keboola-prod",
            keboola_stack_url="https://connection.keboola.com",
            keboola_component_id="kds-team.app-custom-python",
            keboola_configuration_id="1",
        ),
    )
    session.commit()
    for secret in (openai, keboola):
        with pytest.raises(ConflictError) as caught:
            service.delete_secret(session, secret)
        assert f"{job.id} 'Nightly'" in str(caught.value)
    assert session.scalars(select(JobEvent).where(JobEvent.job_id == job.id)).all()


def test_delete_unused_secret(session, vault) -> None:
    secret = service.add_secret(session, vault, name="spare", type="keboola", value="b")
    service.delete_secret(session, secret)
    with pytest.raises(NotFoundError):
        service.get_secret_by_name(session, "spare")


def test_resolve_checks_the_type(session, vault) -> None:
    secret = service.add_secret(session, vault, name="kbc", type="keboola", value="b")
    assert service.resolve_secret(session, "keboola_secret", secret.id, SecretType.KEBOOLA) is secret
    with pytest.raises(ValidationError, match="is a keboola secret, but a openai secret is needed"):
        service.resolve_secret(session, "openai_secret", "kbc", SecretType.OPENAI)
    with pytest.raises(ValidationError, match="does not exist"):
        service.resolve_secret(session, "openai_secret", "missing", SecretType.OPENAI)


def test_rotation_reencrypts_everything_with_the_first_key(session) -> None:
    old = generate_key()
    service.add_secret(session, Vault(old), name="a", type="openai", value="value-a")
    service.add_secret(session, Vault(old), name="b", type="keboola", value="value-b")
    session.commit()
    new = generate_key()
    assert service.rotate_key(session, Vault(f"{new},{old}")) == 2
    session.commit()
    only_new = Vault(new)
    assert service.undecryptable_secrets(session, only_new) == []
    assert service.undecryptable_secrets(session, Vault(old)) == ["a", "b"]


def test_rotation_with_a_missing_key_changes_nothing_and_names_the_secret(session) -> None:
    old = generate_key()
    service.add_secret(session, Vault(old), name="a", type="openai", value="value-a")
    session.commit()
    with pytest.raises(VaultError, match="'a'"):
        service.rotate_key(session, Vault(generate_key()))
    session.rollback()
    assert service.undecryptable_secrets(session, Vault(old)) == []
