"""Settings: the only module that reads the environment.

Values come from the process environment first, then from `.env` in the working directory, then the
defaults below. Everything else receives a `Settings` object, so tests and tools inject their own.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from teckochecker.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
DEFAULT_DATABASE_URL = "sqlite:///./teckochecker.db"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: str | None = None
    default_poll_interval: int = 120
    min_poll_interval: int = 30
    max_poll_interval: int = 3600
    max_retries: int = 3
    retry_delay: int = 60
    max_batches_per_job: int = 100
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_token: str | None = None
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_format: str = "text"
    log_file: str | None = None
    redis_url: str | None = None
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    keboola_allowed_hosts: tuple[str, ...] = ()
    allow_insecure_endpoints: bool = False
    flower_basic_auth: str | None = None
    worker_heartbeat_file: str = "/tmp/teckochecker-worker.heartbeat"
    worker_consumer_timeout: int = 60
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    openai_max_requests_per_minute: int | None = None
    public_url: str | None = None
    default_notify: tuple[str, ...] = ()
    stall_alert_intervals: int = 3
    env_file: str | None = field(default=None, compare=False)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values replaced (tests and tools use this instead of the environment)."""
        return replace(self, **changes)

    @property
    def mode(self) -> str:
        """The embedded default (no broker server) or server mode, with the database in use."""
        database = "SQLite" if self.database_url.startswith("sqlite") else "PostgreSQL"
        if self.redis_url:
            return f"server ({database}, Redis)"
        return f"embedded ({database}, embedded broker)"

    @property
    def secret_keys(self) -> list[str]:
        """SECRET_KEY split into its keys: the first encrypts, all decrypt."""
        if not self.secret_key:
            return []
        return [key.strip() for key in self.secret_key.split(",") if key.strip()]


def _integer(key: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(key, f"must be a whole number, got {raw!r}") from None


def _positive_integer(key: str, raw: str) -> int:
    value = _integer(key, raw)
    if value < 1:
        raise ConfigError(key, f"must be at least 1, got {value}")
    return value


def _non_negative_integer(key: str, raw: str) -> int:
    value = _integer(key, raw)
    if value < 0:
        raise ConfigError(key, f"must be 0 or more, got {value}")
    return value


def _port(key: str, raw: str) -> int:
    value = _integer(key, raw)
    if not 1 <= value <= 65535:
        raise ConfigError(key, f"must be a TCP port between 1 and 65535, got {value}")
    return value


def _boolean(key: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(key, f"must be true or false, got {raw!r}")


def _json_string_list(key: str, raw: str) -> tuple[str, ...]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            key, f'must be a JSON list of strings such as ["http://localhost:3000"] ({exc.msg})'
        ) from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(key, 'must be a JSON list of strings such as ["http://localhost:3000"]')
    return tuple(value)


def _comma_list(key: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in raw.split(",") if item.strip())


def _choice(choices: tuple[str, ...], normalise: Callable[[str], str]) -> Callable[[str, str], str]:
    def parse(key: str, raw: str) -> str:
        value = normalise(raw.strip())
        if value not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _text(key: str, raw: str) -> str | None:
    return raw.strip() or None


def _url(key: str, raw: str) -> str:
    value = raw.strip()
    if "://" not in value:
        raise ConfigError(key, f"must be a URL with a scheme, got {value!r}")
    return value.rstrip("/")


def _basic_auth(key: str, raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    pairs = [pair.strip() for pair in value.split(",")]
    if any(":" not in pair or pair.startswith(":") or pair.endswith(":") for pair in pairs):
        raise ConfigError(key, "must be user:password (several separated by commas)")
    return ",".join(pairs)


def _public_url(key: str, raw: str) -> str | None:
    """The externally reachable base of the API (webhook and job links): a plain http(s) URL, no credentials."""
    value = raw.strip().rstrip("/")
    if not value:
        return None
    if not value.isascii() or re.search(r"[\\\s\x00-\x1f\x7f@?#]", value):
        raise ConfigError(key, "must be a plain URL such as https://teckochecker.example.com, without spaces, a user "
                          "name, a query or a fragment")  # fmt: skip
    try:
        parsed = parse_url(value)
    except LocationParseError:
        raise ConfigError(key, f"is not a valid URL: {value!r}") from None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise ConfigError(key, f"must start with https:// (or http://) and name a host, got {value!r}")
    return value


def _names(key: str, raw: str) -> tuple[str, ...]:
    """Comma-separated names, as given (secret names are case-sensitive)."""
    return tuple(dict.fromkeys(item.strip() for item in raw.split(",") if item.strip()))


def _secret_key(key: str, raw: str) -> str | None:
    # Imported here so that config stays importable without cryptography for tooling that only reads settings.
    from teckochecker.vault import check_fernet_keys

    value = raw.strip()
    if not value:
        return None
    check_fernet_keys(value)
    return value


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "DATABASE_URL": _url,
    "SECRET_KEY": _secret_key,
    "DEFAULT_POLL_INTERVAL": _positive_integer,
    "MIN_POLL_INTERVAL": _positive_integer,
    "MAX_POLL_INTERVAL": _positive_integer,
    "MAX_RETRIES": _non_negative_integer,
    "RETRY_DELAY": _positive_integer,
    "MAX_BATCHES_PER_JOB": _positive_integer,
    "API_HOST": lambda key, raw: raw.strip(),
    "API_PORT": _port,
    "API_TOKEN": _text,
    "CORS_ORIGINS": _json_string_list,
    "LOG_LEVEL": _choice(LOG_LEVELS, str.upper),
    "LOG_FORMAT": _choice(LOG_FORMATS, str.lower),
    "LOG_FILE": _text,
    "REDIS_URL": lambda key, raw: _url(key, raw) if raw.strip() else None,
    "OPENAI_BASE_URL": _url,
    "KEBOOLA_ALLOWED_HOSTS": _comma_list,
    "ALLOW_INSECURE_ENDPOINTS": _boolean,
    "FLOWER_BASIC_AUTH": _basic_auth,
    "WORKER_HEARTBEAT_FILE": lambda key, raw: raw.strip(),
    "WORKER_CONSUMER_TIMEOUT": _non_negative_integer,
    "METRICS_PORT": lambda key, raw: _port(key, raw) if raw.strip() else None,
    "METRICS_HOST": lambda key, raw: raw.strip() or "127.0.0.1",
    "OPENAI_MAX_REQUESTS_PER_MINUTE": lambda key, raw: _positive_integer(key, raw) if raw.strip() else None,
    "PUBLIC_URL": _public_url,
    "DEFAULT_NOTIFY": _names,
    "STALL_ALERT_INTERVALS": _non_negative_integer,
}

ENVIRONMENT_KEYS: tuple[str, ...] = tuple(_PARSERS)


def _check_consistency(settings: Settings) -> None:
    if settings.min_poll_interval > settings.max_poll_interval:
        raise ConfigError(
            "MIN_POLL_INTERVAL",
            f"({settings.min_poll_interval}) must not exceed MAX_POLL_INTERVAL ({settings.max_poll_interval})",
        )
    if not settings.min_poll_interval <= settings.default_poll_interval <= settings.max_poll_interval:
        raise ConfigError(
            "DEFAULT_POLL_INTERVAL",
            f"({settings.default_poll_interval}) must lie between MIN_POLL_INTERVAL "
            f"({settings.min_poll_interval}) and MAX_POLL_INTERVAL ({settings.max_poll_interval})",
        )


def _check_openai_base_url(settings: Settings) -> None:
    """OPENAI_BASE_URL receives every OpenAI key: https, and read alike by every URL parser."""
    url = settings.openai_base_url
    if not url.isascii() or re.search(r"[\\\s\x00-\x1f\x7f@?#]", url):
        raise ConfigError(
            "OPENAI_BASE_URL",
            "must be a plain URL such as https://api.openai.com/v1, without spaces, backslashes, a user name, a "
            "query or a fragment",
        )
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise ConfigError("OPENAI_BASE_URL", "is not a valid URL") from None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise ConfigError("OPENAI_BASE_URL", "must be an https:// URL such as https://api.openai.com/v1")
    if parsed.scheme == "http" and not settings.allow_insecure_endpoints:
        raise ConfigError(
            "OPENAI_BASE_URL",
            "must use https, since it receives your OpenAI keys (http needs ALLOW_INSECURE_ENDPOINTS)",
        )


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Read settings from `environ` (default: the process environment), then `env_file`, then defaults."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, str | None] = {}
    env_path = Path(env_file) if env_file else None
    if env_path is not None and env_path.is_file():
        file_values = dotenv_values(env_path)

    values: dict[str, Any] = {}
    attribute_names = {f.name for f in fields(Settings)}
    for key, parse in _PARSERS.items():
        raw = environ.get(key)
        if raw is None:
            raw = file_values.get(key)
        if raw is None:
            continue
        attribute = key.lower()
        assert attribute in attribute_names, attribute
        values[attribute] = parse(key, raw)

    settings = Settings(**values, env_file=str(env_path) if env_path and env_path.is_file() else None)
    _check_consistency(settings)
    _check_openai_base_url(settings)
    return settings
