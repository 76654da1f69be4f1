"""The engine's Redis transport, against a real redis-server that the test kills: closing a connection that
lost Redis never ends the worker, which is what kombu's stock transport does in the same sequence."""

from __future__ import annotations

import pytest
from kombu import Exchange, Queue
from kombu.common import ignore_errors

from bench.chaos.servers import RedisServer, new_workdir
from teckochecker.config import Settings
from worker.broker import REDIS_TRANSPORT
from worker.celery_app import create_celery_app


@pytest.fixture
def redis_server():
    with RedisServer(new_workdir("broker-redis-"), append_only=False) as server:
        yield server


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name), name)


def test_a_connection_that_lost_redis_with_unacked_messages_closes_like_a_broker_that_is_down(redis_server) -> None:
    """Celery's consumer, when Redis goes away, collects the connection and then closes it. With a BRPOP in
    flight and unacknowledged messages on two channels, the collect leaves the default channel open and the
    connection without its broker address; kombu's stock channel then dies on an AttributeError that Celery
    calls unrecoverable (the worker stops). Ours raises a connection error, which the close ignores."""
    app = create_celery_app(Settings(redis_url=redis_server.url))
    connection = app.connection_for_read()
    assert connection.transport_cls == REDIS_TRANSPORT
    tasks, control = _queue("tasks"), _queue("control")
    with connection.Producer() as producer:
        for queue in (tasks, control):
            producer.publish({"job": 1}, exchange=queue.exchange, routing_key=queue.name, declare=[queue])
    received = []
    other_channel = connection.channel()
    connection.Consumer([tasks], callbacks=[lambda body, message: received.append(message)]).consume()
    connection.Consumer(
        [control], channel=other_channel, callbacks=[lambda body, message: received.append(message)]
    ).consume()
    for _ in range(2):
        connection.drain_events(timeout=5)
    default_channel = connection.default_channel
    # The worker's event loop keeps a BRPOP waiting on the socket; kombu's private starter sends one.
    default_channel._brpop_start()
    assert len(received) == 2

    redis_server.kill()
    connection.collect(socket_timeout=1)
    assert not default_channel.closed and default_channel.connection.client is None
    ignore_errors(connection, connection.close)

    # Redis comes back with nothing in it: a new connection of the app's works at once.
    redis_server.restart()
    with app.connection_for_write() as fresh:
        fresh.ensure_connection(max_retries=3)
        with fresh.Producer() as producer:
            producer.publish({"job": 2}, exchange=tasks.exchange, routing_key=tasks.name, declare=[tasks])
        assert fresh.default_channel.client.llen("tasks") == 1


def test_only_plain_redis_urls_take_the_engine_transport() -> None:
    """`rediss://` keeps kombu's transport (kombu chooses its TLS defaults by that name); the embedded
    broker names its own transport in its URL."""
    transports = {
        url: create_celery_app(Settings(redis_url=url)).connection_for_write().transport_cls
        for url in ("redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/0")
    }
    assert transports == {"redis://127.0.0.1:6379/0": REDIS_TRANSPORT, "rediss://127.0.0.1:6380/0": "rediss"}
    assert create_celery_app(Settings()).connection_for_write().transport_cls == "teckochecker-filesystem"
