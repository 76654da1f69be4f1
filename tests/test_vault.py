import pytest

from teckochecker.errors import ConfigError, VaultError
from teckochecker.vault import Vault, generate_key


def test_round_trip_and_the_ciphertext_hides_the_value() -> None:
    vault = Vault(generate_key())
    token = vault.encrypt("sk-live-123")
    assert "sk-live-123" not in token
    assert vault.decrypt(token, secret_name="openai-prod") == "sk-live-123"


def test_missing_key_explains_how_to_create_one() -> None:
    with pytest.raises(ConfigError) as caught:
        Vault(None)
    assert "init_db.py --create-env" in str(caught.value)
    assert "Fernet.generate_key()" in str(caught.value)


def test_wrong_key_names_the_secret_without_a_traceback_worthy_error() -> None:
    token = Vault(generate_key()).encrypt("sk-live-123")
    with pytest.raises(VaultError) as caught:
        Vault(generate_key()).decrypt(token, secret_name="openai-prod")
    assert "'openai-prod'" in str(caught.value)
    assert "sk-live-123" not in str(caught.value)


def test_old_keys_still_decrypt_and_rotation_moves_to_the_first_key() -> None:
    old, new = generate_key(), generate_key()
    token = Vault(old).encrypt("kbc-token")
    both = Vault(f"{new},{old}")
    assert both.decrypt(token, secret_name="k") == "kbc-token"
    rotated = both.reencrypt(token, secret_name="k")
    assert Vault(new).decrypt(rotated, secret_name="k") == "kbc-token"
    with pytest.raises(VaultError):
        Vault(old).decrypt(rotated, secret_name="k")


def test_repr_hides_keys() -> None:
    key = generate_key()
    assert key not in repr(Vault(key))
