"""The gunicorn worker `teckochecker api` runs: gunicorn's threaded worker, hardened to face clients directly.

Compose and Kubernetes publish gunicorn itself, with no proxy in front to buffer slow clients. Stock gunicorn
lets a handful of them stop the API (docs/BENCHMARKS.md has the figures): a sync worker is held by one connection
that sends half a request, for its whole 30 s timeout; a gthread thread is held by it for ever. This worker:

- keeps a new connection in its poller, not in a thread, until the first bytes arrive (closed after the
  keep-alive timeout if none do);
- gives a request REQUEST_READ_SECONDS from its first byte to arrive whole (request line, headers, body),
  then treats the client as gone; a response that a client does not read is given up after SEND_SECONDS;
- closes a connection in the thread that served it, so a client that never acknowledges the close holds that
  thread for gunicorn's 2 s linger, not the loop that accepts every other connection;
- answers the errors gunicorn finds itself (414 URL too long, 431 headers too large, 400 malformed request) in
  the API's JSON error shape instead of an HTML page.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import time
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn, ThreadWorker

from api.errors import UNEXPECTED_ERROR, error_payload

REQUEST_READ_SECONDS = 10.0
SEND_SECONDS = 30.0


class DeadlineUnreader(SocketUnreader):
    """Reads a request from the client's socket until a deadline, then reads as if the client had closed."""

    deadline = 0.0

    def chunk(self, size_hint: int | None = None) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return b""
        self.sock.settimeout(remaining)
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            return b""
        finally:
            self.sock.settimeout(SEND_SECONDS)


class ClientConnection(TConn):
    """gunicorn's connection, reading each request against a deadline and closed once."""

    closed = False

    def init(self) -> None:
        super().init()  # gunicorn calls this before each request; the first call makes the parser
        if not isinstance(self.parser, RequestParser):
            return
        unreader = self.parser.unreader
        if not isinstance(unreader, DeadlineUnreader):  # the first request: nothing has been read yet
            unreader = self.parser.unreader = DeadlineUnreader(self.sock)
        unreader.deadline = time.monotonic() + REQUEST_READ_SECONDS

    def close(self, graceful: bool = False) -> None:
        if not self.closed:
            self.closed = True
            super().close(graceful)


class _ErrorPageCapture:
    """Stands in for the client's socket while gunicorn writes its HTML error page, to learn the status."""

    def __init__(self) -> None:
        self.written = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.written += data

    @property
    def status(self) -> int | None:
        status_line = self.written.split(b"\r\n", 1)[0].split()
        return int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None


class ApiWorker(ThreadWorker):
    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        connection = ClientConnection(self.cfg, client, address, listener.getsockname())
        # As gunicorn parks a connection whose first bytes are late; they arrive in on_pending_socket_readable.
        connection.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(connection)
        self.poller.register(
            connection.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, connection)
        )

    def handle(self, conn: ClientConnection) -> Any:
        keep = super().handle(conn)
        if keep is False:  # neither kept alive nor parked: gunicorn would close it in the main loop
            conn.close(graceful=True)
        return keep

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        capture = _ErrorPageCapture()
        super().handle_error(req, capture, addr, exc)  # gunicorn logs and chooses the status
        status = capture.status or 500
        body = json.dumps(error_payload(status, self._message(status))).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except OSError:
            self.log.debug("Failed to send error message.")

    def _message(self, status: int) -> str:
        if status == HTTPStatus.REQUEST_URI_TOO_LONG:
            return f"The request line is longer than {self.cfg.limit_request_line} bytes; shorten the URL."
        if status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
            return (
                f"The request headers are too large: at most {self.cfg.limit_request_fields} headers "
                f"of at most {self.cfg.limit_request_field_size} bytes each."
            )
        if status == HTTPStatus.BAD_REQUEST:
            return "The request is not valid HTTP/1.1: its request line or a header could not be read."
        if status >= 500:
            return UNEXPECTED_ERROR
        return f"The request was refused: {HTTPStatus(status).phrase}."
