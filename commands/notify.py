"""`teckochecker notify test NAME`: send a test message to a notification target now."""

from __future__ import annotations

import click

from commands.context import AppContext, pass_app
from commands.tables import success
from teckochecker.notifications.sending import send_test
from teckochecker.redaction import Redactor
from teckochecker.services.secrets import stored_secret_values


@click.group("notify")
def notify_group() -> None:
    """Notification targets (Apprise URLs stored as `notification` secrets)."""


@notify_group.command("test")
@click.argument("name")
@pass_app
def test(app: AppContext, name: str) -> None:
    """Send a test message to the target NAME. Exit 0 when it was accepted, 1 with the (redacted) error."""
    vault = app.vault()
    with app.session() as session:
        service, result = send_test(session, vault, Redactor(stored_secret_values(session, vault)), name)
    if not result.ok:
        raise click.ClickException(f"Could not notify '{name}' ({service}): {result.error}")
    success(f"Test message sent to '{name}' ({service})")
