"""`teckochecker webhook info`: what to register in OpenAI's dashboard, and whether webhooks arrive."""

from __future__ import annotations

import click

from commands.context import AppContext, pass_app
from commands.tables import when
from teckochecker.services import webhooks


@click.group("webhook")
def webhook_group() -> None:
    """OpenAI webhooks: a finished batch is checked within a second instead of at its next poll."""


@webhook_group.command("info")
@pass_app
def info(app: AppContext) -> None:
    """Print the URL and events to register in OpenAI's dashboard, the signing secrets, the last webhook."""
    with app.session() as session:
        status = webhooks.status(session)
    public_url = app.settings.public_url
    if public_url:
        click.echo(f"Webhook URL:     {public_url}{webhooks.WEBHOOK_PATH}")
        if public_url.startswith("http://"):
            click.echo("                 (OpenAI sends webhooks to https:// URLs only; put TLS in front of the API)")
    else:
        click.echo("Webhook URL:     unknown: PUBLIC_URL is not set.")
        click.echo("                 Set PUBLIC_URL to the address where OpenAI can reach this API, e.g.")
        click.echo(
            f"                 PUBLIC_URL=https://teckochecker.example.com (the URL is then …{webhooks.WEBHOOK_PATH})"
        )
    click.echo(f"Events:          {', '.join(webhooks.BATCH_EVENTS)}")
    if status.signing_secrets:
        click.echo(f"Signing secrets: {', '.join(status.signing_secrets)}")
    else:
        click.echo("Signing secrets: none stored, so the endpoint answers 404. After creating the webhook in OpenAI's")
        click.echo("                 dashboard, store its signing secret:")
        click.echo("                 teckochecker secret add --name openai-webhook --type openai_webhook")
    if status.last_received_at is not None:
        click.echo(f"Last webhook:    {when(status.last_received_at)} ({status.last_event_type})")
    else:
        click.echo("Last webhook:    none received yet")
