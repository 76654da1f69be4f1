"""`teckochecker api`: serve the REST API with gunicorn."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

import click
from gunicorn.app.base import BaseApplication

from commands.context import AppContext, pass_app
from teckochecker.addresses import is_loopback
from teckochecker.config import Settings
from teckochecker.logs import configure_logging

if TYPE_CHECKING:
    from flask import Flask

DEFAULT_WORKERS = 2
# Each worker process serves requests on a pool of threads (a request mostly waits on the database), with
# api.server.ApiWorker's limits on slow clients. Measured (docs/BENCHMARKS.md): with 2 x 64 threads, 100 clients
# that send half a request leave /api/health answering in milliseconds; 2 such clients stalled sync workers.
WORKER_CLASS = "api.server.ApiWorker"
THREADS_PER_WORKER = 64
KEEPALIVE_SECONDS = 5


def bind_address(host: str, port: int) -> str:
    """host:port as gunicorn reads it; IPv6 addresses need brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class ApiServer(BaseApplication):
    """gunicorn with its options given in code; it reads neither the command line nor a config file."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Called in each worker after the fork, so every worker opens its own database connections. Imported
        # here so that the other CLI commands do not pay for importing Flask and flask-smorest.
        from api import create_app

        configure_logging(self.settings)
        return create_app(self.settings)


@click.command("api")
@click.option("--host", help="Address to listen on (default API_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default API_PORT).")
@click.option(
    "--workers", type=click.IntRange(min=1), default=DEFAULT_WORKERS, show_default=True, help="Worker processes."
)
@pass_app
def api(app: AppContext, host: str | None, port: int | None, workers: int) -> None:
    """Serve the REST API (Swagger UI at /docs, ReDoc at /redoc)."""
    settings = app.settings
    host = host or settings.api_host
    port = port or settings.api_port
    if settings.api_token is None:
        if not is_loopback(host):
            raise click.ClickException(
                f"Refusing to listen on {host}: API_TOKEN is not set, so anyone who can reach this address could "
                "read and change every job and secret. Set API_TOKEN in .env "
                "(`python scripts/init_db.py --create-env` generates one) or listen on 127.0.0.1."
            )
        click.echo("Warning: API_TOKEN is not set, so the API asks for no token; listening on loopback only.", err=True)
    address = bind_address(host, port)
    _prepare_multiprocess_metrics()
    click.echo(f"TeckoChecker API on http://{address} (documentation at /docs)")
    ApiServer(
        settings,
        {
            "bind": address,
            "workers": workers,
            "worker_class": WORKER_CLASS,
            "threads": THREADS_PER_WORKER,
            "keepalive": KEEPALIVE_SECONDS,
            "proc_name": "teckochecker-api",
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            "child_exit": _forget_worker_metrics,
            # No control socket: nothing uses it, and containers run with a read-only home directory.
            "control_socket_disable": True,
        },
    ).run()


def _prepare_multiprocess_metrics() -> None:
    """Give gunicorn's workers a shared folder for their metrics, before any of them imports prometheus_client."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        folder = tempfile.mkdtemp(prefix="teckochecker-api-metrics-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def _forget_worker_metrics(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
