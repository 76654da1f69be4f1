"""`teckochecker start` on one machine: the API, a worker and beat as child processes of one supervisor.

The supervisor writes a pid file that `stop` and `status` read; `stop` signals exactly that process
(whose identity it checks), never processes found by name.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from teckochecker.exit_codes import REPLACE_ME
from teckochecker.files import private_file, private_folder

logger = logging.getLogger("teckochecker.supervisor")

STATE_DIR = Path(".teckochecker")
PID_FILE = STATE_DIR / "teckochecker.pid"
CLI_SCRIPT = Path(__file__).resolve().parent.parent / "cli.py"
WATCHED_ROOT = CLI_SCRIPT.parent
# Long enough for the worker to finish a task at its hard time limit (celeryconfig.task_time_limit).
STOP_GRACE_SECONDS = 330
# Beat stops first so nothing new is handed out while the worker finishes what it holds.
STOP_ORDER = ("beat", "api", "worker")
# Replacements of one child are at least this far apart, so a child that keeps asking cannot spin.
REPLACE_SPACING_SECONDS = 5.0


@dataclass(frozen=True)
class ServiceRecord:
    """What the pid file says about a running service."""

    pid: int
    started_at: str
    api_url: str
    children: dict[str, int]

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)


def read_record(pid_file: Path = PID_FILE) -> ServiceRecord | None:
    """The running service, or None (a stale pid file is removed)."""
    try:
        record = ServiceRecord(**json.loads(pid_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not is_our_supervisor(record.pid):
        pid_file.unlink(missing_ok=True)
        return None
    return record


def is_our_supervisor(pid: int) -> bool:
    """True when `pid` is alive and is a `teckochecker start` (a recycled pid is someone else's)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"start" in arguments and any(
        part.endswith((b"cli.py", b"teckochecker", b"teckochecker.py")) for part in arguments
    )


def child_commands(host: str, port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "api": [python, str(CLI_SCRIPT), "api", "--host", host, "--port", str(port)],
        "worker": [python, str(CLI_SCRIPT), "worker"],
        "beat": [python, str(CLI_SCRIPT), "beat"],
    }


def _source_fingerprint(root: Path) -> dict[str, float]:
    fingerprint = {}
    for path in root.rglob("*.py"):
        if any(part in {"venv", ".venv", "tests", "__pycache__", ".git"} for part in path.parts):
            continue
        try:
            fingerprint[str(path)] = path.stat().st_mtime
        except OSError:
            continue
    return fingerprint


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], api_url: str, *, reload: bool, pid_file: Path = PID_FILE):
        self.commands = commands
        self.api_url = api_url
        self.reload = reload
        self.pid_file = pid_file
        self.children: dict[str, subprocess.Popen] = {}
        self._stopping = False
        self._started: dict[str, float] = {}

    def _start_children(self) -> None:
        for name in self.commands:
            self._start_child(name)
        self._write_record()

    def _start_child(self, name: str) -> None:
        # Own process groups: Ctrl-C reaches only the supervisor, which stops the children in order.
        self.children[name] = subprocess.Popen(self.commands[name], process_group=0)
        self._started[name] = time.monotonic()
        logger.info("started %s (pid %s)", name, self.children[name].pid)

    def _replace(self, name: str) -> None:
        logger.warning("%s exited asking to be replaced (code %s); starting a new one", name, REPLACE_ME)
        wait = self._started[name] + REPLACE_SPACING_SECONDS - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._start_child(name)
        self._write_record()

    def _write_record(self) -> None:
        private_folder(self.pid_file.parent)
        record = ServiceRecord(
            pid=os.getpid(),
            started_at=getattr(self, "_started_at", datetime.now(UTC).isoformat()),
            api_url=self.api_url,
            children={name: child.pid for name, child in self.children.items()},
        )
        self._started_at = record.started_at
        temporary = private_file(self.pid_file.with_suffix(".tmp"))
        temporary.write_text(json.dumps(asdict(record)))
        temporary.replace(self.pid_file)

    def _stop_children(self, order: Iterable[str] = STOP_ORDER) -> None:
        for name in order:
            child = self.children.get(name)
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name in order:
            child = self.children.get(name)
            if child is None:
                continue
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %ss; killing it", name, STOP_GRACE_SECONDS)
                child.kill()
                child.wait()
        self.children.clear()

    def _request_stop(self, signum: int, _frame: object) -> None:
        if not self._stopping:
            logger.info("received %s: stopping (running tasks are allowed to finish)", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        fingerprint = _source_fingerprint(WATCHED_ROOT) if self.reload else {}
        self._start_children()
        exit_code = 0
        try:
            while not self._stopping:
                time.sleep(0.5)
                exited = {name: child.returncode for name, child in self.children.items() if child.poll() is not None}
                for name in [name for name, code in exited.items() if code == REPLACE_ME]:
                    self._replace(name)
                failed = [name for name, code in exited.items() if code != REPLACE_ME]
                if failed:
                    name = failed[0]
                    logger.error("%s exited with code %s; stopping the others", name, self.children[name].returncode)
                    exit_code = 1
                    break
                if self.reload:
                    current = _source_fingerprint(WATCHED_ROOT)
                    if current != fingerprint:
                        fingerprint = current
                        logger.info("code changed: restarting the API, the worker and beat")
                        self._stop_children()
                        self._start_children()
        finally:
            self._stop_children()
            self.pid_file.unlink(missing_ok=True)
        return exit_code
