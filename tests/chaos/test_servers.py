"""The chaos suite's private servers: real redis-server and PostgreSQL processes, killed and restarted."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
import redis
from sqlalchemy import text

from bench.chaos.servers import PostgresServer, RedisServer, new_workdir
from teckochecker.db import make_engine

pytestmark = pytest.mark.slow

T = TypeVar("T")


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not tmp_path: PostgreSQL runs as the postgres user, who cannot reach pytest's root-only folders.
    path = new_workdir("chaos-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def after_reconnect(call: Callable[[], T]) -> T:
    """`call()`, allowing the one ConnectionError of a pooled connection the server dropped when it died."""
    try:
        return call()
    except redis.ConnectionError:
        return call()


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, …), or None for a gone or zombie process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields


def process_and_children(pid: int) -> dict[int, str]:
    """`pid` and its child processes, each with its start time (which tells a reused pid apart)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        other = int(stat.parent.name)
        fields = _stat_fields(other)
        if fields is not None and (other == pid or int(fields[1]) == pid):
            found[other] = fields[19]
    return found


def still_alive(processes: dict[int, str]) -> set[int]:
    return {pid for pid, started in processes.items() if (fields := _stat_fields(pid)) and fields[19] == started}


def shared_memory_id(server: PostgresServer) -> str:
    """The SysV shared memory segment of a running cluster (line 7 of postmaster.pid: key, id)."""
    return (server.data_dir / "postmaster.pid").read_text().splitlines()[6].split()[1]


def shared_memory_ids() -> set[str]:
    return {line.split()[1] for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]}


def test_redis_with_append_only_keeps_writes_across_a_kill(workdir: Path) -> None:
    with RedisServer(workdir, append_only=True) as server:
        url = server.url
        client = redis.Redis.from_url(url)
        client.set("chaos:key", "kept")

        server.kill()
        assert not server.running
        server.restart()

        assert server.url == url
        assert after_reconnect(lambda: client.get("chaos:key")) == b"kept"
        client.close()


def test_redis_without_append_only_loses_writes_on_a_kill(workdir: Path) -> None:
    with RedisServer(workdir, append_only=False) as server:
        client = redis.Redis.from_url(server.url)
        client.set("chaos:key", "lost")

        server.kill()
        server.restart()

        assert after_reconnect(lambda: client.get("chaos:key")) is None
        client.close()


def test_postgres_keeps_committed_rows_across_an_immediate_stop(workdir: Path) -> None:
    with PostgresServer(workdir) as server:
        url = server.create_database("chaos")
        with psycopg.connect(url) as connection:
            connection.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)")
            connection.execute("INSERT INTO notes VALUES (1, 'committed')")
            connection.commit()
        # The application's own engine (pool_pre_ping), with a pooled connection that the stop will break.
        engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM notes")).scalar_one() == 1

        server.stop_immediately()
        assert not server.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()

        server.restart()
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT id, body FROM notes").fetchall() == [(1, "committed")]
        with engine.connect() as connection:
            assert connection.execute(text("SELECT body FROM notes WHERE id = 1")).scalar_one() == "committed"
        engine.dispose()


def test_a_failed_start_reports_the_tail_of_the_server_log(workdir: Path) -> None:
    with RedisServer(workdir, append_only=False) as server:
        taken = server.port
        other = RedisServer(new_workdir("chaos-test-"), append_only=False)
        other.port = taken  # as on a restart: the port is fixed, and here it is in use
        try:
            with pytest.raises(RuntimeError, match="Address already in use"):
                other.start()
            assert not other.running
        finally:
            other.close()
        assert not other.workdir.exists()


@pytest.mark.parametrize("kind", ["redis", "postgres"])
@pytest.mark.parametrize("leaving", ["normally", "by an exception", "after the server process was SIGKILLed"])
def test_leaving_the_with_block_leaves_no_process_and_no_folder(workdir: Path, kind: str, leaving: str) -> None:
    server = RedisServer(workdir, append_only=True) if kind == "redis" else PostgresServer(workdir)
    with pytest.raises(ZeroDivisionError) if leaving == "by an exception" else nullcontext(), server:
        pid = server.pid
        assert pid is not None
        processes = process_and_children(pid)
        assert pid in processes
        if kind == "postgres":  # the postmaster's children (checkpointer, …) must go too
            assert len(processes) > 1
            tracked = server.processes()
            # Short-lived backends come and go: every process alive before and after the snapshot is in it.
            assert still_alive(processes) <= tracked
        segment = shared_memory_id(server) if kind == "postgres" else None
        if leaving == "by an exception":
            _ = 1 / 0
        if leaving == "after the server process was SIGKILLed":  # PostgreSQL's children are orphaned
            os.kill(pid, signal.SIGKILL)

    assert not server.running
    assert still_alive(processes) == set()
    assert server.processes() == set()
    if segment is not None:
        assert segment not in shared_memory_ids()
    assert not workdir.exists()
