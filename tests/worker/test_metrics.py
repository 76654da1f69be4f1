"""Workers and beat serve metrics on loopback unless METRICS_HOST opens them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.api.conftest import free_port
from tests.conftest import REPO_ROOT

SERVE = "from teckochecker.config import load_settings; from worker.metrics import serve_metrics; " \
        "import time; serve_metrics(load_settings(), 'worker'); time.sleep(60)"  # fmt: skip


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port`, from the kernel's own table."""
    found = set()
    for table, width in ((Path("/proc/net/tcp"), 8), (Path("/proc/net/tcp6"), 32)):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address.rjust(width, "0"))
    return found


@pytest.mark.parametrize(
    ("metrics_host", "expected"),
    [(None, {"0100007F"}), ("0.0.0.0", {"00000000"})],  # 127.0.0.1 and 0.0.0.0, as the kernel writes them
)
def test_metrics_listen_on_loopback_unless_metrics_host_opens_them(tmp_path, metrics_host, expected) -> None:
    port = free_port()
    environment = {"METRICS_PORT": str(port), "PATH": "/usr/bin:/bin"}
    if metrics_host:
        environment["METRICS_HOST"] = metrics_host
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE], cwd=tmp_path, env={**environment, "PYTHONPATH": str(REPO_ROOT)}
    )
    try:
        deadline = time.monotonic() + 20
        while not _listening_addresses(port):
            assert process.poll() is None and time.monotonic() < deadline, "metrics were never served"
            time.sleep(0.1)
        assert _listening_addresses(port) == expected
    finally:
        process.kill()
        process.wait()
