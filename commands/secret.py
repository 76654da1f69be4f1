"""`teckochecker secret …`: encrypted API keys and tokens."""

from __future__ import annotations

import json
import sys

import click

from commands.context import AppContext, pass_app
from commands.tables import render_table, success, when
from teckochecker.models import Secret, SecretType
from teckochecker.notifications.events import NotificationKind
from teckochecker.presenters import secret_view
from teckochecker.services import secrets as secret_service
from teckochecker.services.verification import verify_stored_secret


@click.group("secret")
def secret_group() -> None:
    """Manage encrypted OpenAI keys, Keboola tokens, webhook signing secrets and notification targets."""


EVENTS_HELP = (
    "For a notification target: the events it hears of, comma-separated, or all (default): "
    + ", ".join(NotificationKind)
    + "."
)


def _read_value(value: str | None) -> str:
    if value is not None:
        return value
    stdin = sys.stdin
    if stdin.isatty():
        return click.prompt("Enter secret value", hide_input=True)
    # Piped input: `echo "$KEY" | teckochecker secret add …` keeps the key out of shell history.
    return stdin.read()


@secret_group.command("add")
@click.option("--name", required=True, help="A unique name, used by jobs to refer to the secret.")
@click.option("--type", "secret_type", required=True, type=click.Choice([t.value for t in SecretType]))
@click.option(
    "--value",
    help="The key, token, signing secret (whsec_…) or Apprise URL. Omit it to be prompted (hidden) or to read "
    "standard input.",
)
@click.option("--events", help=EVENTS_HELP)
@pass_app
def add_secret(app: AppContext, name: str, secret_type: str, value: str | None, events: str | None) -> None:
    """Store a new secret, encrypted with SECRET_KEY."""
    vault = app.vault()
    plaintext = _read_value(value)
    with app.session() as session:
        secret = secret_service.add_secret(session, vault, name=name, type=secret_type, value=plaintext, events=events)
    success(f"Secret '{secret.name}' added successfully (ID: {secret.id})")


@secret_group.command("update")
@click.argument("name")
@click.option(
    "--value",
    help="The new value. Omit it (and --events) to be prompted (hidden) or to read standard input.",
)
@click.option("--events", help=EVENTS_HELP)
@pass_app
def update_secret(app: AppContext, name: str, value: str | None, events: str | None) -> None:
    """Replace a secret's value (jobs pick it up at their next call), or a notification target's events."""
    vault = app.vault()
    with app.session() as session:
        secret = secret_service.get_secret_by_name(session, name)
        if events is not None:
            secret_service.set_notification_events(session, secret, events)
        if value is not None or events is None:
            secret_service.replace_secret_value(session, vault, secret, _read_value(value))
    success(f"Secret '{name}' updated")


@secret_group.command("verify")
@click.argument("name")
@click.option(
    "--stack",
    help="Keboola stack URL to check a token against (default: the stack of a job using it, "
    "else https://connection.keboola.com).",
)
@pass_app
def verify_secret(app: AppContext, name: str, stack: str | None) -> None:
    """Ask OpenAI or Keboola whether a stored secret is accepted (signing secrets and notification targets: check
    their form). Exit 0 valid, 1 invalid or unreachable."""
    vault = app.vault()
    with app.session() as session:
        secret = secret_service.get_secret_by_name(session, name)
        result = verify_stored_secret(session, vault, app.settings, secret, stack=stack)
    if not result.ok:
        raise click.ClickException(f"Secret '{name}' is {result.verdict}: {result.message}")
    success(f"Secret '{name}' is valid: {result.message}")


@secret_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def list_secrets(app: AppContext, as_json: bool) -> None:
    """List stored secrets (names and types; values are never shown)."""
    with app.session() as session:
        secrets = secret_service.list_secrets(session)
    if as_json:
        click.echo(json.dumps([secret_view(secret) for secret in secrets], indent=2))
        return
    if not secrets:
        click.echo("No secrets stored yet. Add one with: teckochecker secret add --name NAME --type openai")
        return
    rows = [[str(s.id), s.name, _type_label(s), when(s.created_at)] for s in secrets]
    click.echo(render_table("Stored Secrets", rows, headers=["ID", "Name", "Type", "Created At"]))


def _type_label(secret: Secret) -> str:
    events = secret_service.notification_events(secret)
    return f"{secret.type} ({', '.join(events)})" if events else secret.type


@secret_group.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete_secret(app: AppContext, name: str, force: bool) -> None:
    """Delete a secret that no job uses."""
    with app.session() as session:
        secret = secret_service.get_secret_by_name(session, name)
        if not force:
            click.confirm(f"Are you sure you want to delete secret '{secret.name}'?", abort=True)
        secret_service.delete_secret(session, secret)
    success(f"Secret '{name}' deleted")


@secret_group.command("rotate-key")
@pass_app
def rotate_key(app: AppContext) -> None:
    """Re-encrypt every secret with the first key in SECRET_KEY.

    To rotate: put a new key first in SECRET_KEY, keeping the old one after a comma; run this command;
    then remove the old key.
    """
    vault = app.vault()
    with app.session() as session:
        count = secret_service.rotate_key(session, vault)
    success(f"Re-encrypted {count} secret(s) with the first key in SECRET_KEY")
    if len(app.settings.secret_keys) > 1:
        click.echo("You can now remove the older keys from SECRET_KEY.")
