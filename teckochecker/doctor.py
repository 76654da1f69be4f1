"""Set-up checks behind `teckochecker doctor` and scripts/verify_setup.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from teckochecker.config import Settings
from teckochecker.db import make_engine, make_session_factory, redact_url, session_scope
from teckochecker.errors import TeckoError
from teckochecker.schema import current_revision, head_revisions
from teckochecker.services.secrets import list_secrets, undecryptable_secrets
from teckochecker.vault import Vault


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_env_file(env_file: Path) -> Check:
    if env_file.is_file():
        return Check(".env file", True, f"found at {env_file.resolve()}")
    return Check(
        ".env file",
        True,
        "not found: settings come from the environment and defaults "
        "(`python scripts/init_db.py --create-env` writes one)",
        warning=True,
    )


def _check_secret_key(settings: Settings) -> tuple[Check, Vault | None]:
    try:
        vault = Vault(settings.secret_key)
    except TeckoError as exc:
        return Check("SECRET_KEY", False, str(exc)), None
    count = len(settings.secret_keys)
    return Check("SECRET_KEY", True, "valid Fernet key" if count == 1 else f"{count} valid Fernet keys"), vault


def _check_broker(settings: Settings) -> Check:
    if not settings.redis_url:
        return Check("Broker", True, "embedded (no REDIS_URL set): no broker server needed")
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Check("Broker", False, f"Redis at {redact_url(settings.redis_url)} does not answer: {exc}")
    finally:
        client.close()
    return Check("Broker", True, f"Redis at {redact_url(settings.redis_url)} answers")


def _check_database(settings: Settings, vault: Vault | None) -> list[Check]:
    where = redact_url(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        try:
            revision = current_revision(engine)
        except SQLAlchemyError as exc:
            return [Check("Database", False, f"{where}: {_first_line(exc)}")]
        checks = [Check("Database", True, f"connected to {where}")]
        heads = head_revisions()
        if revision not in heads:
            found = revision or "an empty database"
            checks.append(
                Check("Migrations", False, f"at {found}, head is {', '.join(heads)}: run `teckochecker db init`")
            )
            return checks
        checks.append(Check("Migrations", True, f"at head ({revision})"))
        if vault is not None:
            with session_scope(make_session_factory(engine)) as session:
                total = len(list_secrets(session))
                failing = undecryptable_secrets(session, vault)
            if failing:
                checks.append(
                    Check("Stored secrets", False, "cannot be decrypted with SECRET_KEY: " + ", ".join(failing))
                )
            else:
                checks.append(Check("Stored secrets", True, f"all {total} decrypt with SECRET_KEY"))
        return checks
    finally:
        engine.dispose()


def run_checks(settings: Settings, env_file: Path) -> list[Check]:
    key_check, vault = _check_secret_key(settings)
    mode = Check("Mode", True, settings.mode)
    return [mode, _check_env_file(env_file), key_check, *_check_database(settings, vault), _check_broker(settings)]
