"""The simulator's HTTP server: stdlib, threaded, HTTP/1.1 keep-alive, one write per reply."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote

from teckochecker.simulator.app import SimulatorApp
from teckochecker.simulator.control import SimulatorControl
from teckochecker.simulator.routing import Reply, SimRequest
from teckochecker.simulator.state import SimulatorState

IDLE_TIMEOUT = 300.0
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


class _Headers(dict[str, str]):
    """Request headers by lower-cased name; get() ignores case like email.message.Message does."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in one write, and without Nagle a keep-alive client never waits on a
    # delayed ACK between requests.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT
    server: SimulatorServer

    def parse_request(self) -> bool:
        """The stdlib parses headers with the email package, which costs more than all the rest of a
        request here; these are plain HTTP/1.x headers, so a line split is enough."""
        self.command = None
        self.request_version = "HTTP/1.0"
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request line {self.requestline!r}")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE or len(headers) > MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("iso-8859-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if self.request_version == "HTTP/1.1" else connection == "keep-alive"
        self.close_connection = not keep_alive
        return True

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(Reply(400, {"error": "invalid Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        request = SimRequest(
            method=self.command,
            path=unquote(path),
            query=parse_qs(query, keep_blank_values=True) if query else {},
            headers=self.headers,  # type: ignore[arg-type]
            body=body,
            base_url=f"http://{self.headers.get('Host') or self.server.authority}",
        )
        reply = self.server.app.handle(request)
        if reply is None:
            self._drop()
        else:
            self._send(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _send(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        lines = [
            f"HTTP/1.1 {reply.status} {_PHRASES.get(reply.status, 'Unknown')}",
            f"Date: {formatdate(usegmt=True)}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            *(f"{name}: {value}" for name, value in reply.headers.items()),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        except OSError:
            # The client gave up (its timeout was shorter than an injected delay).
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a log line per request would cost more than the request itself."""


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: SimulatorState | None = None) -> None:
        self.state = state or SimulatorState()
        self.app = SimulatorApp(self.state)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def authority(self) -> str:
        """host:port to reach the server locally (a wildcard bind is reached through loopback)."""
        host, port = self.server_address[:2]
        host = str(host)
        if host in _WILDCARD_HOSTS:
            host = "127.0.0.1"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.authority}"

    def process_request(self, request: Any, client_address: Any) -> None:
        self.state.count_connection()
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client hanging up mid-request is part of the job, not an error
        super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop serving and close every open connection, so clients see the server go away."""
        self.shutdown()
        self.server_close()
        self.state.webhooks.stop()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class RunningSimulator:
    """A simulator serving from a background thread; use as a context manager or call stop()."""

    def __init__(self, server: SimulatorServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.base_url = server.base_url
        self.openai_base_url = self.base_url + "/v1"
        self.stack_url = self.base_url
        self.control = SimulatorControl(self.base_url)

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=5)
        self.control.close()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def start_simulator(host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0.0) -> RunningSimulator:
    """Serve the simulator from a background thread; port 0 picks a free port (see `.base_url`)."""
    server = SimulatorServer((host, port), SimulatorState(latency_ms=latency_ms))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="teckochecker-simulator", daemon=True
    )
    thread.start()
    return RunningSimulator(server, thread)
