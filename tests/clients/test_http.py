"""The shared HTTP plumbing: proxies and CA bundles come from the environment, ~/.netrc never does."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from teckochecker.clients.openai_batches import OpenAIBatchClient
from teckochecker.simulator import RunningSimulator


def _in_a_new_thread(call: Callable[[], Any]) -> Any:
    # Sessions are kept per thread and host: a new thread reads the environment afresh.
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except Exception as error:  # handed to the test thread
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    """A forward proxy that answers every request itself with a batch and records the request lines."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.requestline)
            body = json.dumps({"id": "batch_proxied", "status": "in_progress", "request_counts": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_proxy_from_the_environment_is_used(proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy_url, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = OpenAIBatchClient("sk-through-the-proxy", "http://openai.behind-a-proxy.test/v1")
    batch = _in_a_new_thread(lambda: client.get_batch("batch_proxied"))
    assert batch.status == "in_progress"
    assert seen == ["GET http://openai.behind-a-proxy.test/v1/batches/batch_proxied HTTP/1.1"]


def test_no_proxy_hosts_are_reached_directly(
    simulator: RunningSimulator, api_key: str, proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_url, seen = proxy
    simulator.control.create_batch(batch_id="batch_direct", duration=0)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = OpenAIBatchClient(api_key, simulator.openai_base_url)
    assert _in_a_new_thread(lambda: client.get_batch("batch_direct")).status == "completed"
    assert seen == []


def test_a_netrc_entry_never_replaces_the_api_key(
    simulator: RunningSimulator, api_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-api-key\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    simulator.control.create_batch(batch_id="batch_netrc", duration=0)
    client = OpenAIBatchClient(api_key, simulator.openai_base_url)
    assert _in_a_new_thread(lambda: client.get_batch("batch_netrc")).status == "completed"
