"""What every command shares: settings loaded once, one engine, a unit of work per command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from teckochecker.config import Settings, load_settings
from teckochecker.db import make_engine, make_session_factory, session_scope
from teckochecker.vault import Vault


class AppContext:
    """Created once per CLI invocation; tests pass their own `settings` instead of the environment."""

    def __init__(self, settings: Settings | None = None, env_file: Path | None = None) -> None:
        self._settings = settings
        self.env_file = env_file or Path.cwd() / ".env"

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(env_file=self.env_file)
        return self._settings

    def reload_settings(self) -> Settings:
        """Read the environment and .env again (after `--create-env` wrote a new .env)."""
        self._settings = None
        self.__dict__.pop("engine", None)
        return self.settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(make_session_factory(self.engine)) as session:
            yield session

    def vault(self) -> Vault:
        return Vault(self.settings.secret_key)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


pass_app = click.make_pass_decorator(AppContext)
