"""Which broker the engine uses: Redis when REDIS_URL is set, else kombu's filesystem transport.

Both are kombu's transports with one repair each (below), chosen by `broker_options`.

Nothing here touches the disk on import or when the app is built: the embedded broker's folders are
created when its first channel opens.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import TRANSPORT_ALIASES, filesystem, redis
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps
from redis.exceptions import ConnectionError as RedisConnectionError

from celeryconfig import REDIS_VISIBILITY_TIMEOUT
from teckochecker.config import Settings
from teckochecker.engine.backoff import MAX_BROKER_WAIT_SECONDS
from teckochecker.files import PRIVATE_FILE_MODE, private_folder

EMBEDDED_BROKER_DIR = Path(".teckochecker") / "broker"

assert REDIS_VISIBILITY_TIMEOUT >= 10 * MAX_BROKER_WAIT_SECONDS


def create_embedded_broker_folders(transport_options: dict[str, Any]) -> None:
    """The embedded broker's folders: its root, the queue folder and the control (broadcast) folder."""
    queue_folder = Path(transport_options["data_folder_in"])
    control_folder = Path(transport_options["control_folder"])
    for path in (queue_folder.parent, queue_folder, control_folder):
        private_folder(path)


class _AtomicFilesystemChannel(filesystem.Channel):
    """kombu's filesystem channel, but a message file appears only once it is complete.

    The stock channel creates the file and then writes it, so a consumer polling at that instant reads an
    empty message and the worker dies on the JSON error. Here the message is written under a name no
    consumer looks at, then renamed into place (a rename is atomic within one folder).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        create_embedded_broker_folders(self.transport_options)

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"
        # Task messages are only ids, but they are ours alone, like the folder they live in.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(str_to_bytes(dumps(payload)))
        os.replace(partial, final)


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = _AtomicFilesystemChannel


EMBEDDED_SCHEME = "teckochecker-filesystem"
EMBEDDED_POLLING_SECONDS = 0.1
TRANSPORT_ALIASES.setdefault(EMBEDDED_SCHEME, f"{__name__}:AtomicFilesystemTransport")


class _ReconnectingRedisChannel(redis.Channel):
    """kombu's Redis channel, but one closed after its connection has forgotten the broker fails like a
    broker that is down, instead of ending the worker.

    When Redis goes away, Celery's consumer collects the broken connection and then closes it. If the
    collect could not close a channel (its pending BRPOP read failed first), the connection has by then
    dropped its broker address (`Transport.client` is None), and the second close still builds a Redis
    client to give the channel's unacknowledged messages back: kombu raises AttributeError, which Celery
    treats as unrecoverable, and the worker stops (the chaos suite's `redis` scenarios; celery/celery#8091,
    kombu#2007). As a connection error it takes the path Celery expects when Redis is down: the close goes
    on, the consumer reconnects, and the messages come back after the visibility timeout. The engine loses
    nothing either way: the database, not the message, says what is due.
    """

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the connection to Redis is closed; its channel cannot reach it")
        return super()._connparams(asynchronous=asynchronous)


class ReconnectingRedisTransport(redis.Transport):
    Channel = _ReconnectingRedisChannel


REDIS_TRANSPORT = f"{__name__}:ReconnectingRedisTransport"


def broker_transport(settings: Settings) -> str | None:
    """The transport for `settings`' broker URL, when it is not the one its scheme names.

    `rediss://` keeps kombu's stock transport: kombu picks its TLS defaults by that transport's name.
    """
    if settings.redis_url and urlsplit(settings.redis_url).scheme == "redis":
        return REDIS_TRANSPORT
    return None


def broker_options(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The broker URL and transport options for `settings`."""
    if settings.redis_url:
        return settings.redis_url, {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
    # The filesystem transport needs no server and supports broadcast, so `celery inspect ping` works. The
    # folder is fixed now, relative to the directory the process started in.
    folder = EMBEDDED_BROKER_DIR.resolve()
    return f"{EMBEDDED_SCHEME}://", {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        # kombu looks for new message files once a second by default: a check, then its trigger, would each
        # wait up to that long. Listing a folder of a few files ten times a second costs next to nothing.
        "polling_interval": EMBEDDED_POLLING_SECONDS,
    }
