"""`teckochecker simulate`: serve the OpenAI + Keboola simulator in the foreground until Ctrl-C."""

from __future__ import annotations

import click

from teckochecker.simulator import start_simulator


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8900, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Answer every API request after this many milliseconds (concurrent requests wait in parallel).",
)
@click.option("--openai-key", "openai_keys", multiple=True, help="An OpenAI API key to accept (repeatable).")
@click.option("--keboola-token", "keboola_tokens", multiple=True, help="A Keboola token to accept (repeatable).")
def simulate(
    host: str, port: int, latency_ms: float, openai_keys: tuple[str, ...], keboola_tokens: tuple[str, ...]
) -> None:
    """Run a local stand-in for the OpenAI Batch API and the Keboola Job Queue (see docs/SIMULATOR.md)."""
    try:
        simulator = start_simulator(host, port, latency_ms=latency_ms)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    for key in openai_keys:
        simulator.control.add_api_key(key)
    for token in keboola_tokens:
        simulator.control.add_token(token)
    click.echo("TeckoChecker simulator is running.")
    click.echo(f"  OpenAI base URL:    {simulator.openai_base_url}   (OPENAI_BASE_URL)")
    click.echo(f"  Keboola stack URL:  {simulator.stack_url}   (needs ALLOW_INSECURE_ENDPOINTS=true)")
    click.echo(f"  Control API:        {simulator.base_url}/_sim/")
    accepted = len(openai_keys), len(keboola_tokens)
    click.echo(
        f"  Accepting {accepted[0]} OpenAI key(s) and {accepted[1]} Keboola token(s); add more via the control API."
    )
    click.echo("Press Ctrl-C to stop.")
    try:
        simulator.thread.join()
    except KeyboardInterrupt:
        click.echo("Stopping.")
    finally:
        simulator.stop()
