"""The supervisor behind `teckochecker start`, over real child processes: a child that asks to be replaced
(a worker whose broker consumer died) is started again and the service stays up; any other exit stops it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from teckochecker.exit_codes import REPLACE_ME

ROOT = Path(__file__).resolve().parents[2]
STAYS = "import time; time.sleep(600)"


def _child_exiting_once(marker: Path, code: int) -> str:
    """A child that writes a line to `marker` each time it starts, exits with `code` the first time, then stays."""
    return (
        f"import pathlib, sys, time; m = pathlib.Path({str(marker)!r}); first = not m.exists(); "
        f"m.open('a').write('started\\n'); sys.exit({code}) if first else time.sleep(600)"
    )


def _supervise(tmp_path: Path, worker_code: str) -> subprocess.Popen:
    commands = {
        name: [sys.executable, "-c", code]
        for name, code in {"api": STAYS, "worker": worker_code, "beat": STAYS}.items()
    }
    script = (
        "import json, logging, sys; logging.basicConfig(level=logging.INFO); "
        "from commands.supervisor import Supervisor; "
        f"sys.exit(Supervisor(json.loads({json.dumps(json.dumps(commands))}), 'http://127.0.0.1:1', reload=False, "
        f"pid_file=__import__('pathlib').Path({str(tmp_path / 'tc.pid')!r})).run())"
    )
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_worker_that_asks_to_be_replaced_is_started_again_and_the_service_stays_up(tmp_path: Path) -> None:
    marker = tmp_path / "worker-starts"
    supervisor = _supervise(tmp_path, _child_exiting_once(marker, REPLACE_ME))
    try:
        assert _wait_for(lambda: marker.exists() and marker.read_text().count("started") == 2, 20)
        time.sleep(1)
        assert supervisor.poll() is None
        children = json.loads((tmp_path / "tc.pid").read_text())["children"]
        assert set(children) == {"api", "worker", "beat"}
    finally:
        supervisor.send_signal(signal.SIGTERM)
        _, log = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 0
    assert "worker exited asking to be replaced (code 3); starting a new one" in log
    assert not (tmp_path / "tc.pid").exists()


def test_a_child_that_fails_otherwise_stops_the_whole_service(tmp_path: Path) -> None:
    marker = tmp_path / "worker-starts"
    supervisor = _supervise(tmp_path, _child_exiting_once(marker, 1))
    _, log = supervisor.communicate(timeout=30)
    assert supervisor.returncode == 1
    assert marker.read_text().count("started") == 1
    assert "worker exited with code 1; stopping the others" in log
