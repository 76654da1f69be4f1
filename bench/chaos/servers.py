"""Private Redis and PostgreSQL servers on free loopback ports, each in a folder of its own.

Chaos tests kill and restart these; the machine's shared servers (127.0.0.1:6379 and :5432) are never touched.
A restart keeps the port, so clients made before a crash reconnect to the same URL.

    with RedisServer(new_workdir("chaos-redis-"), append_only=True) as server:
        ...
        server.kill()
        server.restart()

Each server writes its output to a log file in its folder; a start that fails raises RuntimeError with the
tail of that log. Leaving the `with` block (or calling `close()`) stops the server, kills whatever is left of
its processes and removes its folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import redis
from psycopg import sql

from bench.engine.setup import free_port

START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 30
LOG_TAIL_CHARS = 3000
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# initdb and postgres refuse to run as root: as root, both run as this OS user.
POSTGRES_OS_USER = "postgres"


def new_workdir(prefix: str) -> Path:
    """A fresh folder under the system temporary directory.

    PostgreSQL runs as the `postgres` user, which must be able to reach its folder: pytest's `tmp_path` sits
    under a root-only folder, the system temporary directory does not.
    """
    return Path(tempfile.mkdtemp(prefix=prefix))


class _Server:
    """One server process in `workdir`, its log, and the cleanup both servers share."""

    log_name = "server.log"
    # Tried on the first start only: another process may take the free port between probe and bind.
    port_attempts = 3

    def __init__(self, workdir: Path) -> None:
        # Absolute and resolved: compared with the folders the kernel reports for processes (/proc/PID/cwd).
        self.workdir = Path(workdir).resolve()
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's (main) process id while it runs."""
        return self._process.pid if self.running else None

    def start(self) -> None:
        """Start the server: on a free port the first time, on the same port afterwards."""
        if self.running:
            raise RuntimeError(f"{type(self).__name__} is already running on port {self.port}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        if self.port is not None:
            self._start_on(self.port)
            return
        for attempt in range(self.port_attempts):
            port = free_port()
            try:
                self._start_on(port)
            except RuntimeError:
                if attempt + 1 == self.port_attempts or "already in use" not in self.log_tail():
                    raise
                continue
            self.port = port
            return

    def close(self) -> None:
        """Stop the server, kill any process of it that is left, and remove its folder."""
        try:
            if self.running:
                self.stop()
        finally:
            self._kill_leftovers()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self) -> None:
        """Shut the server down cleanly (killing it if it does not stop in time)."""
        self._signal_and_wait(self._clean_stop_signal, timeout=STOP_TIMEOUT_SECONDS)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- for the subclasses ---------------------------------------------------------------------------

    _clean_stop_signal = signal.SIGTERM

    def _prepare(self) -> None:
        """Anything to do before each start (folders, initdb)."""

    def _argv(self, port: int) -> list[str]:
        raise NotImplementedError

    def _popen_options(self) -> dict:
        return {}

    def _ready(self, port: int) -> bool:
        raise NotImplementedError

    def _start_on(self, port: int) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._argv(port),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: cleanup kills the server and every child it left, and Ctrl-C in a
                # test run does not reach it before cleanup does.
                start_new_session=True,
                **self._popen_options(),
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._ready(port):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{type(self).__name__} exited with {self._process.returncode} on start:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self._kill_leftovers()
                raise RuntimeError(
                    f"{type(self).__name__} did not answer within {START_TIMEOUT_SECONDS}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _signal_and_wait(self, signum: signal.Signals, *, timeout: float) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_leftovers()
            process.wait()

    def processes(self) -> set[int]:
        """Live processes of this server: its own and any working in its folder (PostgreSQL's children)."""
        found = {self._process.pid} if self.running else set()
        for cwd in Path("/proc").glob("[0-9]*/cwd"):
            try:
                # A removed folder reads as "<path> (deleted)".
                target = Path(os.readlink(cwd).removesuffix(" (deleted)"))
            except OSError:  # gone meanwhile, or not ours to look at
                continue
            if target == self.workdir or self.workdir in target.parents:
                found.add(int(cwd.parent.name))
        found.discard(os.getpid())
        return found

    def _kill_leftovers(self) -> None:
        process = self._process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        # PostgreSQL's children are not in the postmaster's process group (each calls setsid()), and the
        # backends of a postmaster that was killed outright live on until they notice: find them by folder.
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while (leftovers := self.processes()) and time.monotonic() < deadline:
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


class RedisServer(_Server):
    """A redis-server on 127.0.0.1, with or without the append-only file (fsynced on every write)."""

    log_name = "redis.log"

    def __init__(self, workdir: Path, *, append_only: bool) -> None:
        super().__init__(workdir)
        self.append_only = append_only

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._known_port()}/0"

    def kill(self) -> None:
        """SIGKILL: a crash, nothing is flushed."""
        self._signal_and_wait(signal.SIGKILL, timeout=STOP_TIMEOUT_SECONDS)

    def restart(self) -> None:
        """Start again on the same port (killing it first if it still runs); the AOF, if any, is replayed."""
        if self.running:
            self.kill()
        self.start()

    def _known_port(self) -> int:
        if self.port is None:
            raise RuntimeError("RedisServer has no port before its first start()")
        return self.port

    def _argv(self, port: int) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.append_only else ["--appendonly", "no"]
        return [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            # No RDB snapshots: without the AOF, a killed server comes back empty, as a crash test expects.
            "--save",
            "",
            *persistence,
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]

    def _ready(self, port: int) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1)
        try:
            # Our process, not whichever server took the port meanwhile (ours then fails to bind and exits).
            return client.info("server")["process_id"] == self._process.pid
        except redis.RedisError:  # refused, or still loading the AOF
            return False
        finally:
            client.close()


def postgres_bindir() -> Path:
    """The folder of initdb and postgres: pg_config's, else the newest /usr/lib/postgresql/*/bin."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        bindir = Path(
            subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        )
        if (bindir / "postgres").exists() and (bindir / "initdb").exists():
            return bindir
    candidates = [path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "postgres").exists()]
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries found (pg_config --bindir, /usr/lib/postgresql/*/bin)")

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    return max(candidates, key=version)


class PostgresServer(_Server):
    """A PostgreSQL cluster of its own: trust auth, user `postgres`, TCP on 127.0.0.1 only.

    The folder holds `data/` (initdb'd on the first start), `sockets/` (its unix socket, rather than
    /var/run/postgresql which the machine's server uses) and `postgres.log`.
    """

    log_name = "postgres.log"
    # SIGINT is PostgreSQL's fast shutdown: sessions are ended, a shutdown checkpoint is written.
    _clean_stop_signal = signal.SIGINT

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.bindir = postgres_bindir()

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "sockets"

    @property
    def admin_url(self) -> str:
        return self._url("postgres")

    def create_database(self, name: str) -> str:
        """Create database `name` and return its URL (postgresql://…, for psycopg and make_engine alike)."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self._url(name)

    def stop_immediately(self) -> None:
        """A crash-like stop: SIGQUIT, what `pg_ctl stop -m immediate` sends; no checkpoint, recovery on restart."""
        self._signal_and_wait(signal.SIGQUIT, timeout=STOP_TIMEOUT_SECONDS)

    def restart(self) -> None:
        """Start again on the same port (stopping it immediately first if it still runs); crash recovery runs."""
        if self.running:
            self.stop_immediately()
        self.start()

    def _kill_leftovers(self) -> None:
        super()._kill_leftovers()
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        """Remove the SysV segment a postmaster that was killed outright leaves behind (a clean stop does)."""
        try:
            # Line 7 of postmaster.pid: "<shmem key> <shmem id>"; the file is gone after a clean stop.
            key, shmid = (self.data_dir / "postmaster.pid").read_text().splitlines()[6].split()
            segments = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
        except (OSError, IndexError, ValueError):
            return
        for segment in segments:
            # key shmid perms size cpid lpid nattch …: only this very segment, and only with nobody attached.
            fields = segment.split()
            if int(fields[0]) == int(key) and fields[1] == shmid and fields[6] == "0":
                subprocess.run(["ipcrm", "-m", shmid], capture_output=True, check=False)

    def _url(self, database: str) -> str:
        if self.port is None:
            raise RuntimeError("PostgresServer has no port before its first start()")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self) -> dict:
        """Popen options to drop root for the postgres user (nothing when not root)."""
        if os.geteuid() != 0:
            return {}
        return {"user": POSTGRES_OS_USER, "group": POSTGRES_OS_USER, "extra_groups": []}

    def _prepare(self) -> None:
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.workdir, self.socket_dir):
                shutil.chown(path, POSTGRES_OS_USER, POSTGRES_OS_USER)
        if (self.data_dir / "PG_VERSION").exists():
            return
        with self.log_path.open("ab") as log:
            initdb = subprocess.run(
                [
                    str(self.bindir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    "postgres",
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    # A throw-away cluster: skip the fsyncs of initdb itself (the server still fsyncs).
                    "--no-sync",
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_postgres(),
            )
        if initdb.returncode != 0:
            raise RuntimeError(
                f"initdb failed with {initdb.returncode} (the {POSTGRES_OS_USER} user must be able to reach "
                f"{self.workdir}):\n{self.log_tail()}"
            )

    def _popen_options(self) -> dict:
        return self._as_postgres()

    def _argv(self, port: int) -> list[str]:
        return [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
        ]

    def _ready(self, port: int) -> bool:
        try:
            with psycopg.connect(
                f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2, autocommit=True
            ) as connection:
                # Our cluster, not whichever server took the port meanwhile (ours then fails to bind and exits).
                data_directory = connection.execute("SHOW data_directory").fetchone()
        except psycopg.OperationalError:  # refused, or "the database system is starting up" (recovery)
            return False
        return data_directory is not None and Path(data_directory[0]) == self.data_dir
