"""Local stand-ins for notification services, on real sockets: a JSON webhook receiver (Apprise's json://)
that can answer errors first, and an SMTP server (aiosmtpd) for mailto://."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class JsonReceiver:
    """Records every POST; the path's first `fail_first[path]` requests are answered 500.

    `url` gives the receiver as an Apprise json:// URL; `http_url` as the plain address (for webhooks)."""

    port: int = 0
    fail_first: dict[str, int] = field(default_factory=dict)
    # (path, status, payload, headers), in arrival order
    received: list[tuple[str, int, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def http_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str) -> list[dict[str, Any]]:
        """The payloads answered 200 on `path`."""
        return [payload for where, status, payload, _ in list(self.received) if where == path and status == 200]

    def attempts(self, path: str) -> int:
        return sum(1 for where, *_ in list(self.received) if where == path)


@contextmanager
def json_receiver(**fail_first: int) -> Iterator[JsonReceiver]:
    """`fail_first` maps a path (with its leading /) to how many requests answer 500 before the first 200."""
    receiver = JsonReceiver(fail_first={f"/{path.lstrip('/')}": count for path, count in fail_first.items()})
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                failing = receiver.fail_first.get(self.path, 0)
                status = 500 if failing else 200
                if failing:
                    receiver.fail_first[self.path] = failing - 1
                receiver.received.append((self.path, status, json.loads(body or b"{}"), dict(self.headers.items())))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class MailBox:
    port: int
    messages: list[Message] = field(default_factory=list)

    def url(self, to: str = "ops@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?to={to}&from=teckochecker@example.com&user=mailer&pass=mail-s3cret"


@contextmanager
def smtp_server() -> Iterator[MailBox]:
    """An SMTP server on a free loopback port that accepts any login and keeps every message."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = MailBox(port)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append(message_from_bytes(envelope.original_content or envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, auth_require_tls=False,
                            authenticator=lambda *args: _accept())  # fmt: skip
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def _accept() -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)
