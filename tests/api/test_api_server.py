"""`teckochecker api` facing clients directly: slow and idle connections cannot stop it, and the errors gunicorn
answers itself (before the app sees a request) are JSON of the API's one error shape."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from api.server import REQUEST_READ_SECONDS, DeadlineUnreader
from tests.api.test_api_http import ERROR_KEYS

# The live server needs a database of some kind; which one does not matter here.
live_server_on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SLOW_CLIENTS = 50
TRICKLE_INTERVAL_SECONDS = 0.5
# The requirement: /api/health answers within 1 s; at most two retries absorb scheduler noise.
HEALTH_TIMEOUT_SECONDS = 1.0
HEALTH_ATTEMPTS = 3


class Slowloris:
    """Connections that each send part of a request, then either trickle a header byte by byte or go quiet."""

    def __init__(self, base_url: str, count: int) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]
        self.stopped = threading.Event()
        for number, client in enumerate(self.sockets):
            # Half stop inside the request line, half inside the headers.
            client.sendall(b"GET /api/jobs?q=" if number % 2 else b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        self.trickler = threading.Thread(target=self._trickle, daemon=True)
        self.trickler.start()

    def _trickle(self) -> None:
        trickling = self.sockets[: len(self.sockets) // 2]
        while not self.stopped.wait(TRICKLE_INTERVAL_SECONDS):
            for client in trickling:
                with contextlib.suppress(OSError):  # the server gave up on this one
                    client.send(b"a")

    def close(self) -> None:
        self.stopped.set()
        self.trickler.join(timeout=5)
        for client in self.sockets:
            client.close()


@pytest.fixture
def slowloris(gunicorn_server: str) -> Iterator[Slowloris]:
    attack = Slowloris(gunicorn_server, SLOW_CLIENTS)
    time.sleep(1)  # let the server read what they sent
    yield attack
    attack.close()


@pytest.mark.slow
@live_server_on_sqlite
def test_fifty_slow_clients_leave_the_health_check_answering(gunicorn_server: str, slowloris: Slowloris) -> None:
    assert_health_answers_within_a_second(gunicorn_server, f"{SLOW_CLIENTS} slow clients open")


def assert_health_answers_within_a_second(base_url: str, situation: str) -> None:
    for _ in range(HEALTH_ATTEMPTS):
        started = time.monotonic()
        try:
            response = requests.get(f"{base_url}/api/health", timeout=HEALTH_TIMEOUT_SECONDS)
        except requests.Timeout:
            continue
        print(f"/api/health with {situation}: {response.status_code} in {time.monotonic() - started:.3f}s")
        assert response.status_code == 200, response.text
        return
    pytest.fail(f"/api/health did not answer within {HEALTH_TIMEOUT_SECONDS}s with {situation}")


@pytest.mark.slow
@live_server_on_sqlite
def test_clients_that_never_close_after_their_answer_do_not_stall_the_others(gunicorn_server: str) -> None:
    """Closing a connection waits up to 2 s for the client's side of the close; that wait must not hold the
    loop that accepts every other connection (stock gthread: 18 s for 20 such clients, measured)."""
    host, port = gunicorn_server.removeprefix("http://").split(":")
    lingering = [socket.create_connection((host, int(port)), timeout=5) for _ in range(20)]
    try:
        for client in lingering:
            client.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.2)
        assert_health_answers_within_a_second(gunicorn_server, "20 clients that never close")
    finally:
        for client in lingering:
            client.close()


def closed_by_server(client: socket.socket) -> bool:
    """Whether the server has closed the connection, waiting up to the socket's timeout for it to say so."""
    try:
        return client.recv(100) == b""  # the server's FIN, without any answer
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@pytest.mark.slow
@live_server_on_sqlite
def test_a_request_that_does_not_arrive_whole_in_time_is_dropped(gunicorn_server: str) -> None:
    """The deadline counts from the first byte: a client that goes quiet and one that keeps trickling lose their
    connection (and the thread serving it) alike, with no answer."""
    host, port = gunicorn_server.removeprefix("http://").split(":")
    quiet, trickling = (socket.create_connection((host, int(port)), timeout=TRICKLE_INTERVAL_SECONDS) for _ in "ab")
    with quiet, trickling:
        quiet.sendall(b"GET /api/jobs?q=")
        trickling.sendall(b"GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        closed: dict[str, float] = {}
        while len(closed) < 2 and time.monotonic() - started < REQUEST_READ_SECONDS + 20:
            for name, client in (("quiet", quiet), ("trickling", trickling)):
                if name in closed:
                    continue
                if name == "trickling":
                    with contextlib.suppress(OSError):
                        client.send(b"a")
                if closed_by_server(client):
                    closed[name] = time.monotonic() - started
    print(f"half-sent requests dropped after: {closed}")
    assert set(closed) == {"quiet", "trickling"}


def assert_json_error(response: requests.Response, code: int) -> dict:
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_KEYS and body["code"] == code and body["message"]
    return body


@pytest.mark.slow
@live_server_on_sqlite
def test_a_url_too_long_answers_414_json(gunicorn_server: str) -> None:
    body = assert_json_error(requests.get(f"{gunicorn_server}/api/jobs?q={'x' * 10_000}", timeout=5), 414)
    assert "4094 bytes" in body["message"] and "xxx" not in body["message"]


@pytest.mark.slow
@live_server_on_sqlite
def test_headers_too_large_answer_431_json(gunicorn_server: str) -> None:
    huge = requests.get(f"{gunicorn_server}/api/health", headers={"X-Big": "x" * 10_000}, timeout=5)
    assert_json_error(huge, 431)
    many = requests.get(f"{gunicorn_server}/api/health", headers={f"X-{n}": "x" for n in range(150)}, timeout=5)
    assert_json_error(many, 431)


@pytest.mark.slow
@live_server_on_sqlite
def test_a_malformed_request_answers_400_json(gunicorn_server: str) -> None:
    host, port = gunicorn_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as client:
        client.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Type: application/json" in head
    assert b'"code": 400' in body and b"<html>" not in answer


def test_a_request_that_stops_arriving_reads_as_a_closed_connection() -> None:
    """The deadline frees the thread of a client that stalls: the read returns the end of the stream, not data."""
    server, client = socket.socketpair()
    with server, client:
        unreader = DeadlineUnreader(server)
        unreader.deadline = time.monotonic() + 0.3
        client.sendall(b"GET / HT")
        assert unreader.chunk() == b"GET / HT"
        started = time.monotonic()
        assert unreader.chunk() == b""  # the client sent nothing more before the deadline
        assert 0.1 < time.monotonic() - started < 5
        client.sendall(b"TP/1.1\r\n")
        assert unreader.chunk() == b""  # past the deadline, nothing more is read
