"""`teckochecker doctor`: is this installation set up correctly?"""

from __future__ import annotations

import click

from commands.context import AppContext, pass_app
from commands.tables import render_table
from teckochecker.doctor import run_checks


@click.command("doctor")
@pass_app
def doctor(app: AppContext) -> None:
    """Check .env, SECRET_KEY, the database, migrations, stored secrets and the broker."""
    checks = run_checks(app.settings, app.env_file)
    rows = [
        ["⚠ warn" if check.warning else ("✓ ok" if check.ok else "✗ FAIL"), check.name, check.detail]
        for check in checks
    ]
    click.echo(render_table("Setup Checks", rows, headers=["Result", "Check", "Detail"]))
    failed = [check.name for check in checks if not check.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    click.echo("All checks passed.")
