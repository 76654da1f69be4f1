"""`teckochecker db …`: create, reset and inspect the database schema."""

from __future__ import annotations

import click

from commands.context import AppContext, pass_app
from commands.tables import render_table, success
from teckochecker import schema
from teckochecker.db import redact_url
from teckochecker.envfile import write_env_file


@click.group("db")
def db_group() -> None:
    """Database set-up and inspection."""


@db_group.command("init")
@click.option("--create-env", is_flag=True, help="Write .env with a new SECRET_KEY and API_TOKEN first.")
@click.option("--force", is_flag=True, help="With --create-env: replace an existing .env (its keys are lost).")
@pass_app
def init_db(app: AppContext, create_env: bool, force: bool) -> None:
    """Create or upgrade the database schema to the latest revision."""
    if create_env:
        if write_env_file(app.env_file, force=force):
            success(f"Created {app.env_file} with a new SECRET_KEY and API_TOKEN")
        else:
            click.echo(f"• {app.env_file} already exists and was left unchanged (--force replaces it)")
        app.reload_settings()
    url = app.settings.database_url
    schema.upgrade_to_head(url)
    success(f"Database {redact_url(url)} is ready (revision {', '.join(schema.head_revisions())})")


@db_group.command("reset")
@click.option("--force", "--yes", "force", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def reset_db(app: AppContext, force: bool) -> None:
    """Drop every table and recreate the schema. Deletes all data."""
    url = app.settings.database_url
    if not force:
        click.confirm(f"This deletes ALL secrets, jobs and history in {redact_url(url)}. Continue?", abort=True)
    schema.reset(url)
    success(f"Database {redact_url(url)} was reset")


@db_group.command("schema")
@pass_app
def show_schema(app: AppContext) -> None:
    """Print the schema as the live database reports it."""
    tables = schema.describe(app.engine)
    if not tables:
        click.echo(f"{redact_url(app.settings.database_url)} has no tables. Run `teckochecker db init`.")
        return
    for table in tables:
        rows = [
            [
                column.name,
                column.type,
                "yes" if column.nullable else "no",
                "PK" if column.primary_key else "",
                column.default or "",
            ]
            for column in table.columns
        ]
        click.echo(render_table(table.name, rows, headers=["Column", "Type", "Null", "Key", "Default"]))
        for index in table.indexes:
            click.echo(f"  index       {index}")
        for foreign_key in table.foreign_keys:
            click.echo(f"  foreign key {foreign_key}")
        click.echo()
