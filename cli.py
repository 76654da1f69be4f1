"""The `teckochecker` command line. `python teckochecker.py …` and `python cli.py …` run the same thing."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from commands.api import api
from commands.context import AppContext
from commands.db import db_group
from commands.demo import demo
from commands.doctor import doctor
from commands.engine import beat, worker
from commands.flower import flower
from commands.job import job_group
from commands.notify import notify_group
from commands.probe import probe_group
from commands.secret import secret_group
from commands.service import start, status, stop
from commands.simulate import simulate
from commands.token import token_group
from commands.watch import watch
from commands.webhook import webhook_group
from teckochecker.errors import TeckoError

MISSING_TABLE_MARKERS = ("no such table", "does not exist", "undefinedtable")


def _database_message(app: AppContext | None, error: SQLAlchemyError) -> str:
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    where = ""
    if app is not None:
        from teckochecker.db import redact_url

        where = f" ({redact_url(app.settings.database_url)})"
    if any(marker in detail.lower() for marker in MISSING_TABLE_MARKERS):
        return f"The database{where} is not initialised: {detail}. Run `teckochecker db init` first."
    return f"Database error{where}: {detail}"


class TeckoGroup(click.Group):
    """Turns errors a user can act on into one line on stderr and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TeckoError as exc:
            raise click.ClickException(str(exc)) from None
        except SQLAlchemyError as exc:
            raise click.ClickException(_database_message(ctx.find_object(AppContext), exc)) from None


@click.group(cls=TeckoGroup)
@click.version_option(package_name="teckochecker", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """TeckoChecker: watch OpenAI batches and start a Keboola job when they finish."""
    if ctx.obj is None:
        ctx.obj = AppContext()
    ctx.call_on_close(ctx.obj.close)


job_group.add_command(watch)
for command in (
    secret_group,
    job_group,
    db_group,
    doctor,
    start,
    stop,
    status,
    api,
    worker,
    beat,
    flower,
    simulate,
    demo,
    probe_group,
    token_group,
    webhook_group,
    notify_group,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
