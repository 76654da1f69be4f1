"""Helpers shared by the deployment tests: the repository's deploy/ folder and a dry parse of CLI arguments."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import click
import pytest

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"


def cli_usage_error(arguments: Sequence[str]) -> str | None:
    """None when `teckochecker ARGUMENTS` names a real command whose options and values parse; else why not.

    Nothing is run: click only parses (unknown commands and options, bad values and missing arguments fail).
    """
    from cli import main

    context = click.Context(main, info_name="teckochecker")
    command: click.Command = main
    name = "teckochecker"
    rest = list(arguments)
    try:
        while isinstance(command, click.Group):
            if not rest:
                return f"{' '.join(arguments)!r} names no command"
            name, *rest = rest
            subcommand = command.get_command(context, name)
            if subcommand is None:
                return f"no command {name!r} in {' '.join(arguments)!r}"
            if isinstance(subcommand, click.Group):
                context = click.Context(subcommand, info_name=name, parent=context)
            command = subcommand
        with command.make_context(name, rest, parent=context):
            pass
    except click.ClickException as exc:
        return f"{' '.join(arguments)!r}: {exc.format_message()}"
    return None


@pytest.fixture
def usage_error() -> Callable[[Sequence[str]], str | None]:
    return cli_usage_error
