"""`teckochecker flower`: Celery's Flower dashboard for the worker fleet."""

from __future__ import annotations

import click

from commands.context import AppContext, pass_app
from teckochecker.addresses import is_loopback


@click.command("flower")
@click.option(
    "--address", default=None, help="Address to listen on (default 127.0.0.1; others need FLOWER_BASIC_AUTH)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@pass_app
def flower(app: AppContext, address: str | None, port: int) -> None:
    """Start Flower (same as `celery -A worker flower`), with basic auth from FLOWER_BASIC_AUTH."""
    auth = app.settings.flower_basic_auth
    address = address or ("0.0.0.0" if auth else "127.0.0.1")
    if not auth and not is_loopback(address):
        raise click.ClickException(
            f"Refusing to serve Flower on {address} without FLOWER_BASIC_AUTH (user:password): it shows every "
            "task and can shut workers down. Set FLOWER_BASIC_AUTH or use --address 127.0.0.1."
        )
    from worker import app as celery_app

    argv = ["flower", f"--address={address}", f"--port={port}"]
    if auth:
        argv.append(f"--basic-auth={auth}")
    click.echo(f"Flower on http://{address}:{port}" + (" (basic auth)" if auth else " (loopback only, no auth)"))
    celery_app.start(argv)
