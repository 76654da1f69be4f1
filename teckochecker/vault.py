"""Encryption of stored secrets with Fernet (AES-128-CBC + HMAC-SHA256) keyed by SECRET_KEY.

SECRET_KEY may hold several comma-separated keys: the first encrypts, every key decrypts, so a key can
be rotated without downtime (add the new key first, run `secret rotate-key`, then drop the old key).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from teckochecker.errors import ConfigError, VaultError

KEY_HELP = (
    "SECRET_KEY must be a valid Fernet key (44 characters, URL-safe base64), or several separated by commas. "
    "Generate one with: "
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


def generate_key() -> str:
    return Fernet.generate_key().decode()


def check_fernet_keys(secret_key: str) -> list[Fernet]:
    """Parse SECRET_KEY into Fernet instances, refusing anything that is not a Fernet key."""
    keys = [key.strip() for key in secret_key.split(",") if key.strip()]
    if not keys:
        raise ConfigError("SECRET_KEY", f"is empty. {KEY_HELP}")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            # The key itself is never echoed: it is as sensitive as the secrets it protects.
            where = f"key {position} of {len(keys)}" if len(keys) > 1 else "the key"
            raise ConfigError("SECRET_KEY", f"{where} is not a valid Fernet key. {KEY_HELP}") from None
    return fernets


class Vault:
    """Encrypts and decrypts secret values. Holds keys, never plaintext."""

    def __init__(self, secret_key: str | None) -> None:
        if not secret_key:
            raise ConfigError(
                "SECRET_KEY",
                "is not set. Run `python scripts/init_db.py --create-env` to create .env with a new key. " + KEY_HELP,
            )
        self._fernet = MultiFernet(check_fernet_keys(secret_key))

    def __repr__(self) -> str:
        return "Vault(<keys hidden>)"

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str, *, secret_name: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise VaultError(
                f"Secret '{secret_name}' cannot be decrypted with any key in SECRET_KEY. "
                "SECRET_KEY must include the key the secret was stored with; "
                "otherwise delete the secret and add it again."
            ) from None

    def reencrypt(self, token: str, *, secret_name: str) -> str:
        """Re-encrypt a stored value with the first key (used by key rotation)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise VaultError(
                f"Secret '{secret_name}' cannot be decrypted with any key in SECRET_KEY, so it cannot be "
                "re-encrypted. Add the key it was stored with to SECRET_KEY (after the new key) and retry."
            ) from None
