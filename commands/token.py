"""`teckochecker token …`: named API tokens with a role, for the REST API and the dashboard."""

from __future__ import annotations

import json

import click

from commands.context import AppContext, pass_app
from commands.tables import render_table, success, when
from teckochecker.models import TokenRole
from teckochecker.services import tokens as token_service


@click.group("token")
def token_group() -> None:
    """Manage named API tokens: `read` sees everything, `write` also changes things."""


@token_group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice([role.value for role in TokenRole]), required=True, help="What it may do.")
@pass_app
def create_token(app: AppContext, name: str, role: str) -> None:
    """Create a token and print it once; only its hash is stored."""
    with app.session() as session:
        token, plaintext = token_service.create_token(session, name=name, role=role)
    success(f"Token '{token.name}' created with the {token.role} role. It is shown only now:")
    click.echo(plaintext)


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def list_tokens(app: AppContext, as_json: bool) -> None:
    """List named tokens (names and roles; tokens cannot be shown again)."""
    with app.session() as session:
        tokens = token_service.list_tokens(session)
    if as_json:
        views = [{"id": t.id, "name": t.name, "role": t.role, "created_at": t.created_at.isoformat()} for t in tokens]
        click.echo(json.dumps(views, indent=2))
        return
    if not tokens:
        click.echo("No named tokens yet. Create one with: teckochecker token create NAME --role read")
        return
    rows = [[str(t.id), t.name, t.role, when(t.created_at)] for t in tokens]
    click.echo(render_table("API Tokens", rows, headers=["ID", "Name", "Role", "Created At"]))


@token_group.command("revoke")
@click.argument("name")
@pass_app
def revoke_token(app: AppContext, name: str) -> None:
    """Delete a token: its requests are refused and its dashboard sessions end at once."""
    with app.session() as session:
        token_service.revoke_token(session, name)
    success(f"Token '{name}' revoked")
