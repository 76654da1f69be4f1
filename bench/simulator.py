"""How many requests a second the simulator answers, so we know it is never the bottleneck.

Run from the repository root:  python -m bench.simulator [--seconds 3] [--threads 50 --latency-ms 100]

The simulator runs in its own process pinned to one core (CPU 0); the clients run in this process,
pinned to the other cores when there are any. Each client measurement uses one keep-alive connection.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue

import requests

from teckochecker.clients.openai_batches import OpenAIBatchClient
from teckochecker.simulator import SimulatorControl, SimulatorServer
from teckochecker.simulator.state import SimulatorState

API_KEY = "sk-bench-0123456789abcdef0123456789"
BATCH_ID = "batch_bench"


def _serve(port_queue: Queue, latency_ms: float) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    server = SimulatorServer(("127.0.0.1", 0), SimulatorState(latency_ms=latency_ms))
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _pin_client() -> None:
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if len(cores) > 1:
        os.sched_setaffinity(0, cores - {0})


def _rate(call: Callable[[], object], seconds: float) -> float:
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            call()
        done += 50
    return done / (time.perf_counter() - started)


def raw_http_client(base_url: str, seconds: float) -> float:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def call() -> None:
        connection.request("GET", f"/v1/batches/{BATCH_ID}", headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200

    try:
        return _rate(call, seconds)
    finally:
        connection.close()


def requests_session(base_url: str, seconds: float) -> float:
    session = requests.Session()
    url = f"{base_url}/v1/batches/{BATCH_ID}"
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def call() -> None:
        session.get(url, headers=headers, timeout=5).raise_for_status()

    try:
        return _rate(call, seconds)
    finally:
        session.close()


def teckochecker_client(base_url: str, seconds: float) -> float:
    client = OpenAIBatchClient(API_KEY, base_url + "/v1")
    return _rate(lambda: client.get_batch(BATCH_ID), seconds)


def concurrent_with_latency(base_url: str, seconds: float, threads: int) -> float:
    """Many keep-alive clients at once against a simulator that answers each request after a latency."""
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        client = OpenAIBatchClient(API_KEY, base_url + "/v1")
        while time.perf_counter() < deadline:
            client.get_batch(BATCH_ID)
            counts[index] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(index,)) for index in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def _start_server(latency_ms: float) -> tuple[multiprocessing.Process, str]:
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    process = context.Process(target=_serve, args=(port_queue, latency_ms), daemon=True)
    process.start()
    base_url = f"http://127.0.0.1:{port_queue.get(timeout=30)}"
    control = SimulatorControl(base_url)
    control.add_api_key(API_KEY)
    control.create_batch(batch_id=BATCH_ID, final_status="completed", duration=0)
    control.close()
    return process, base_url


def _server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of the simulator process (Linux only)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(label: str, pid: int, measure: Callable[[], float], note: str = "") -> None:
    cpu_before = _server_cpu_seconds(pid)
    started = time.perf_counter()
    rate = measure()
    cpu_after = _server_cpu_seconds(pid)
    line = f"  {label:<42}{rate:8.0f} req/s"
    if cpu_before is not None and cpu_after is not None:
        busy = (cpu_after - cpu_before) / (time.perf_counter() - started)
        line += f"   simulator core {busy:4.0%} busy"
        if busy > 0.05:
            line += f", {rate / busy:6.0f} req/s per core-second"
    print(line + note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--threads", type=int, default=50, help="clients in the concurrent measurement")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulated latency, concurrent measurement")
    args = parser.parse_args()
    _pin_client()

    process, base_url = _start_server(latency_ms=0)
    try:
        print(f"simulator on one core, GET /v1/batches/{{id}}, {args.seconds:g} s each")
        _report("http.client, one keep-alive connection", process.pid, lambda: raw_http_client(base_url, args.seconds))
        _report("requests.Session, keep-alive", process.pid, lambda: requests_session(base_url, args.seconds))
        _report("OpenAIBatchClient.get_batch", process.pid, lambda: teckochecker_client(base_url, args.seconds))
    finally:
        process.terminate()
        process.join()

    process, base_url = _start_server(latency_ms=args.latency_ms)
    try:
        ideal = args.threads * 1000 / args.latency_ms
        _report(
            f"{args.threads} clients, {args.latency_ms:g} ms latency",
            process.pid,
            lambda: concurrent_with_latency(base_url, args.seconds, args.threads),
            f"  (ideal {ideal:.0f})",
        )
    finally:
        process.terminate()
        process.join()


if __name__ == "__main__":
    main()
