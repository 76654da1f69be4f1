"""How many slow clients each gunicorn configuration survives, and its /api/health throughput.

Run by hand from the repository root (not a test):

    python bench/api_slow_clients.py
    python bench/api_slow_clients.py --configs sync,ours --counts 1,2,50,200 --duration 10

Configurations, each with 2 worker processes on a throw-away SQLite database:
- `sync`: gunicorn's default sync worker (what `teckochecker api` ran before);
- `gthread`: gunicorn's stock threaded worker, 64 threads per process;
- `ours`: exactly what `teckochecker api` runs now (api.server.ApiWorker, 64 threads, keep-alive 5 s).

For each configuration and each count N it opens N slow connections, each sending part of a request (half
stop inside the request line, half inside the headers; half of them then trickle one byte every 0.5 s, the
others go quiet), or N silent connections (connected, nothing sent), waits 1 s, then asks GET /api/health up
to three times with a 1 s timeout. It then closes them and waits until the server answers again. The last
column asks 12 s into `--late` slow clients: whether the server frees what they hold while they stay open.
"lingering": 20 clients send a whole request with `Connection: close`, then neither read nor close. Throughput
is GET /api/health from `--clients` threads with keep-alive sessions for `--duration` seconds; the client
shares the machine's cores with the server, so compare the ratio to `sync`, not the absolute figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402

CONFIGS = ("sync", "gthread", "ours")
HEALTH_TIMEOUT = 1.0
RECOVERY_SECONDS = 90


def serve(config: str, port: int, database_url: str) -> None:
    """The server process: `teckochecker api`'s own gunicorn options, with the worker class swapped for `config`."""
    from commands.api import (
        KEEPALIVE_SECONDS,
        THREADS_PER_WORKER,
        WORKER_CLASS,
        ApiServer,
        _forget_worker_metrics,
        _prepare_multiprocess_metrics,
    )
    from teckochecker.config import Settings

    worker = {
        "sync": {"worker_class": "sync"},
        "gthread": {"worker_class": "gthread", "threads": THREADS_PER_WORKER},
        "ours": {"worker_class": WORKER_CLASS, "threads": THREADS_PER_WORKER, "keepalive": KEEPALIVE_SECONDS},
    }[config]
    _prepare_multiprocess_metrics()
    options = {
        "bind": f"127.0.0.1:{port}",
        "workers": 2,
        "loglevel": "warning",
        "child_exit": _forget_worker_metrics,
        "control_socket_disable": True,
        **worker,
    }
    ApiServer(Settings(database_url=database_url), options).run()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health_within(base: str, timeout: float) -> float | None:
    started = time.monotonic()
    try:
        requests.get(f"{base}/api/health", timeout=timeout).raise_for_status()
    except requests.RequestException:
        return None
    return time.monotonic() - started


@contextlib.contextmanager
def running(config: str, database_url: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", config, "--port", str(port), "--database-url", database_url]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while health_within(base, 2) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{config}: the server did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=40)


@contextlib.contextmanager
def slow_clients(base: str, count: int, *, silent: bool) -> Iterator[None]:
    host, port = base.removeprefix("http://").split(":")
    sockets, stop = [], threading.Event()
    for number in range(count):
        with contextlib.suppress(OSError):
            client = socket.create_connection((host, int(port)), timeout=5)
            sockets.append(client)
            if not silent:
                client.sendall(b"GET /api/jobs?q=" if number % 2 else b"GET /api/jobs HTTP/1.1\r\nX-Slow: ")

    def trickle() -> None:
        while not stop.wait(0.5):
            for client in sockets[: len(sockets) // 2]:
                with contextlib.suppress(OSError):
                    client.send(b"a")

    trickler = threading.Thread(target=trickle, daemon=True)
    if not silent:
        trickler.start()
    try:
        yield
    finally:
        stop.set()
        if not silent:
            trickler.join()
        for client in sockets:
            client.close()


def survives(base: str, count: int, *, silent: bool, after: float = 1) -> float | None:
    """The health check's answer time `after` seconds into `count` slow clients, or None if three 1 s attempts
    failed."""
    with slow_clients(base, count, silent=silent):
        time.sleep(after)
        for _ in range(3):
            elapsed = health_within(base, HEALTH_TIMEOUT)
            if elapsed is not None:
                break
    deadline = time.monotonic() + RECOVERY_SECONDS
    while health_within(base, 2) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return elapsed


def answer_time_with_lingering_clients(base: str, count: int) -> float | None:
    """The health check's answer time right after `count` clients sent a whole request with `Connection: close`
    and then neither read the answer nor closed the connection."""
    host, port = base.removeprefix("http://").split(":")
    clients = [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]
    try:
        for client in clients:
            client.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.2)
        return health_within(base, 60)
    finally:
        for client in clients:
            client.close()


def throughput(base: str, clients: int, duration: float) -> float:
    counts = [0] * clients
    stop = time.monotonic() + duration

    def load(index: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                if session.get(f"{base}/api/health", timeout=10).status_code == 200:
                    counts[index] += 1

    threads = [threading.Thread(target=load, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--counts", default="1,2,10,50,100,200")
    parser.add_argument("--late", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--serve", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port, arguments.database_url)
        return

    from teckochecker.schema import upgrade_to_head

    counts = [int(count) for count in arguments.counts.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as folder:
        database_url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade_to_head(database_url)
        os.environ["DATABASE_URL"] = database_url
        columns = [f"{n} slow" for n in counts] + ["200 silent", f"{arguments.late} slow, after 12 s", "20 lingering"]
        print("| configuration | health req/s | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 2) + "|")
        for config in arguments.configs.split(","):
            with running(config, database_url) as base:
                rate = throughput(base, arguments.clients, arguments.duration)
                cells = []
                for count in counts:
                    elapsed = survives(base, count, silent=False)
                    cells.append("timeout" if elapsed is None else f"{elapsed * 1000:.0f} ms")
                silent = survives(base, 200, silent=True)
                late = survives(base, arguments.late, silent=False, after=12)
                lingering = answer_time_with_lingering_clients(base, 20)
                cells += ["timeout" if elapsed is None else f"{elapsed * 1000:.0f} ms" for elapsed in (silent, late)]
                cells.append("timeout" if lingering is None else f"{lingering * 1000:.0f} ms")
            print(f"| {config} | {rate:.0f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
