"""deploy/systemd: the units run the CLI's roles from the environment file, restart always, stop gracefully
(longer than the task hard time limit where tasks run), are sandboxed, and systemd itself accepts them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY_DIR

SYSTEMD_DIR = DEPLOY_DIR / "systemd"
REPO_ROOT = DEPLOY_DIR.parent
INSTALL_DIR = "/opt/teckochecker"
PYTHON = f"{INSTALL_DIR}/venv/bin/python"
SCRIPT = f"{INSTALL_DIR}/teckochecker.py"
ENV_FILE = f"{INSTALL_DIR}/.env"
TARGET = "teckochecker.target"
BUNDLE = "teckochecker.service"
# unit file -> the CLI role its ExecStart runs
SERVICES = {
    BUNDLE: "start",
    "teckochecker-api.service": "api",
    "teckochecker-worker@.service": "worker",
    "teckochecker-beat.service": "beat",
}
ROLE_UNITS = [name for name in SERVICES if name != BUNDLE]
TASK_HARD_TIME_LIMIT = 300
# The supervisor behind `teckochecker start` waits this long for its children (commands/supervisor.py).
SUPERVISOR_STOP_GRACE = 330
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections -> key -> every value, in order (systemd keys such as Environment= may repeat)."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        key, separator, value = line.partition("=")
        assert separator, f"{path.name}: {line!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit(name: str) -> Unit:
    return parse_unit(SYSTEMD_DIR / name)


def one(name: str, section: str, key: str) -> str:
    values = unit(name).get(section, {}).get(key, [])
    assert len(values) == 1, f"{name}: [{section}] {key}= set {len(values)} times"
    return values[0]


def words(name: str, section: str, key: str) -> list[str]:
    return [word for value in unit(name).get(section, {}).get(key, []) for word in value.split()]


def seconds(span: str) -> float:
    """A systemd time span ("360", "6min", "5min 30s") in seconds."""
    total = 0.0
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span.strip()):
        total += float(number) * TIME_UNITS[suffix or "s"]
    assert total or span.strip() == "0", f"cannot read time span {span!r}"
    return total


def exec_arguments(name: str, key: str = "ExecStart") -> list[str]:
    """The CLI arguments of an Exec line, systemd specifiers filled in as for instance 1 on host `host`."""
    (line,) = unit(name)["Service"][key] if key == "ExecStart" else [unit(name)["Service"][key][0]]
    line = line.replace("%i", "1").replace("%H", "host").replace("%%", "%")
    argv = shlex.split(line)
    assert argv[:2] == [PYTHON, SCRIPT], f"{name}: {key} should run {SCRIPT} with the venv's python"
    return argv[2:]


def test_the_folder_has_the_units_and_a_readme() -> None:
    present = {path.name for path in SYSTEMD_DIR.iterdir()}
    assert set(SERVICES) | {TARGET, "README.md"} <= present


def test_the_script_the_units_run_exists() -> None:
    assert (REPO_ROOT / Path(SCRIPT).relative_to(INSTALL_DIR)).is_file()


@pytest.mark.parametrize("name", SERVICES)
def test_exec_start_runs_the_cli_role(name: str, usage_error: Callable[[Sequence[str]], str | None]) -> None:
    arguments = exec_arguments(name)
    assert arguments[0] == SERVICES[name]
    assert usage_error(arguments) is None


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_reads_the_environment_file_and_restarts_always(name: str) -> None:
    assert one(name, "Service", "EnvironmentFile") == ENV_FILE
    assert one(name, "Service", "WorkingDirectory") == INSTALL_DIR
    assert one(name, "Service", "Restart") == "always"
    assert seconds(one(name, "Service", "RestartSec")) > 0
    # A database outage longer than the default start rate limit must not leave the unit failed for good.
    assert one(name, "Unit", "StartLimitIntervalSec") == "0"


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_runs_as_a_dedicated_user_after_the_network_is_up(name: str) -> None:
    user = one(name, "Service", "User")
    assert user == "teckochecker", "a dedicated user, not root or the web server's www-data"
    assert "network-online.target" in words(name, "Unit", "After")
    assert "network-online.target" in words(name, "Unit", "Wants")


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_sandboxed(name: str) -> None:
    service = unit(name)["Service"]
    assert one(name, "Service", "NoNewPrivileges") == "yes"
    assert one(name, "Service", "PrivateTmp") == "yes"
    assert one(name, "Service", "ProtectSystem") == "strict"
    assert one(name, "Service", "ProtectHome") == "yes"
    assert INSTALL_DIR in words(name, "Service", "ReadWritePaths"), "the working directory must stay writable"
    assert service["CapabilityBoundingSet"] == [""], "no capabilities"
    for key in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID"):
        assert one(name, "Service", key) == "yes"


@pytest.mark.parametrize("name", [BUNDLE, "teckochecker-worker@.service"])
def test_units_that_run_tasks_stop_gracefully_beyond_the_task_hard_limit(name: str) -> None:
    stop_timeout = seconds(one(name, "Service", "TimeoutStopSec"))
    assert stop_timeout >= 330
    assert stop_timeout > TASK_HARD_TIME_LIMIT
    if name == BUNDLE:
        assert stop_timeout > SUPERVISOR_STOP_GRACE, "the supervisor must finish its own wait before systemd kills"
    assert one(name, "Service", "KillSignal") == "SIGTERM", "SIGTERM starts the graceful (warm) shutdown"
    # Only the main process gets SIGTERM; the supervisor / Celery stops the rest in order.
    assert one(name, "Service", "KillMode") == "mixed"


def test_the_api_has_time_for_gunicorns_graceful_stop() -> None:
    assert seconds(one("teckochecker-api.service", "Service", "TimeoutStopSec")) > 30


def test_the_schema_is_migrated_before_the_api_and_the_bundle_start(
    usage_error: Callable[[Sequence[str]], str | None],
) -> None:
    for name in (BUNDLE, "teckochecker-api.service"):
        arguments = exec_arguments(name, "ExecStartPre")
        assert arguments == ["db", "init"]
        assert usage_error(arguments) is None
    for name in ("teckochecker-worker@.service", "teckochecker-beat.service"):
        assert "teckochecker-api.service" in words(name, "Unit", "After")


def test_each_worker_instance_has_its_own_celery_node_name() -> None:
    line = one("teckochecker-worker@.service", "Service", "ExecStart")
    argv = shlex.split(line)
    hostname = argv[argv.index("--hostname") + 1]
    assert "%i" in hostname, "instances on one machine need distinct node names"
    assert exec_arguments("teckochecker-worker@.service").count("--hostname") == 1


def test_the_target_groups_the_role_units_and_excludes_the_bundle() -> None:
    assert words(TARGET, "Install", "WantedBy") == ["multi-user.target"]
    assert BUNDLE in words(TARGET, "Unit", "Conflicts")
    for name in ROLE_UNITS:
        assert words(name, "Install", "WantedBy") == [TARGET], name
        assert TARGET in words(name, "Unit", "PartOf"), f"{name}: stopping the target must stop it"
        assert BUNDLE in words(name, "Unit", "Conflicts"), f"{name} and {BUNDLE} would run the roles twice"
    assert words(BUNDLE, "Install", "WantedBy") == ["multi-user.target"]
    assert TARGET in words(BUNDLE, "Unit", "Conflicts")


def test_the_worker_template_enables_a_default_instance() -> None:
    assert one("teckochecker-worker@.service", "Install", "DefaultInstance") == "1"


# --- systemd's own check -----------------------------------------------------------------------------------------

SYSTEM_UNITS = Path("/usr/lib/systemd/system")
VERIFY_NAMES = [*(name for name in SERVICES if not name.endswith("@.service")), "teckochecker-worker@1.service", TARGET]


def verify(root: Path, names: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", "--generators=no", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fake_root(tmp_path: Path) -> Path:
    """A file system root with the host's system units, ours, and a stand-in for the venv's python."""
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    python = root / PYTHON.lstrip("/")
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    return root


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir(), reason="systemd-analyze is not available"
)
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    units = root / "etc/systemd/system"
    # First a unit known to be good: if systemd-analyze cannot verify anything here, say so instead of failing.
    (units / "control.service").write_text(f"[Service]\nExecStart={PYTHON}\n")
    control = verify(root, ["control.service"])
    if control.returncode != 0 or control.stderr.strip():
        pytest.skip(f"systemd-analyze verify does not work here: {control.stderr.strip()[:300]}")
    for path in SYSTEMD_DIR.iterdir():
        if path.suffix in {".service", ".target"}:
            shutil.copy(path, units / path.name)
    completed = verify(root, VERIFY_NAMES)
    # Unknown keys and unparsable values are only warnings (exit code 0): any message about our units fails.
    messages = [line for line in (completed.stdout + completed.stderr).splitlines() if "teckochecker" in line]
    assert completed.returncode == 0 and messages == [], "\n".join(messages) or completed.stderr
