"""How the worker package wires Celery: built from Settings, nothing written on import, one runtime per process."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import celeryconfig
from teckochecker.config import Settings
from teckochecker.engine import checking, triggering
from teckochecker.vault import generate_key
from tests.conftest import REPO_ROOT
from worker.celery_app import create_celery_app
from worker.tasks import EngineTask

OUR_PACKAGES = {"teckochecker", "worker", "api", "commands", "cli", "bench"}


def _python(*arguments: str, cwd: Path) -> str:
    """Run Python in a fresh process standing in `cwd`, with no TeckoChecker settings in its environment."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DATABASE_URL", "SECRET_KEY"} and not key.startswith(("PYTEST", "CELERY"))
    }
    completed = subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env={**environment, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_importing_the_celery_wiring_writes_nothing(tmp_path: Path) -> None:
    _python(
        "-c",
        "import celeryconfig, worker, worker.tasks, worker.scheduler\n"
        "assert worker.app.conf.broker_url == 'teckochecker-filesystem://'\n"
        "assert 'teckochecker.check_job' in worker.app.tasks",
        cwd=tmp_path,
    )
    assert list(tmp_path.iterdir()) == []


def test_celery_finds_the_app_as_worker_app_without_writing_anything(tmp_path: Path) -> None:
    report = _python("-m", "celery", "-A", "worker", "report", cwd=tmp_path)
    assert "beat_scheduler: 'worker.scheduler:DispatchScheduler'" in report
    assert list(tmp_path.iterdir()) == []


def test_the_embedded_broker_makes_its_folders_when_first_used(tmp_path: Path) -> None:
    _python("-c", "import worker\nwith worker.app.connection_for_write() as c:\n    c.default_channel", cwd=tmp_path)
    broker = tmp_path / ".teckochecker" / "broker"
    assert sorted(path.name for path in broker.iterdir()) == ["control", "queue"]


def test_celeryconfig_imports_nothing_of_ours(tmp_path: Path) -> None:
    loaded = _python("-c", "import json, sys, celeryconfig\nprint(json.dumps(sorted(sys.modules)))", cwd=tmp_path)
    assert [name for name in json.loads(loaded) if name.split(".")[0] in OUR_PACKAGES] == []


def test_the_app_takes_its_broker_from_settings_and_the_rest_from_celeryconfig() -> None:
    app = create_celery_app(Settings(redis_url="redis://127.0.0.1:6399/4"))
    assert app.conf.broker_url == "redis://127.0.0.1:6399/4"
    assert app.conf.broker_transport_options == {"visibility_timeout": celeryconfig.REDIS_VISIBILITY_TIMEOUT}
    assert (app.conf.task_acks_late, app.conf.worker_pool) == (True, celeryconfig.worker_pool)
    assert app.conf.worker_concurrency == celeryconfig.worker_concurrency
    # Each task retries, defers and gives up by the engine's rules of its own action.
    assert app.tasks["teckochecker.check_job"].on_transient_failure is checking.ON_TRANSIENT_FAILURE
    assert app.tasks["teckochecker.trigger_keboola"].on_transient_failure is triggering.ON_TRANSIENT_FAILURE


def _settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'runtime.db'}", secret_key=generate_key())


def test_threads_of_a_process_share_one_runtime(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    start = threading.Barrier(16)
    seen = []

    def take() -> None:
        start.wait()
        seen.append(EngineTask.runtime_for(settings))

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(runtime) for runtime in seen}) == 1
    assert seen[0].settings is settings
    assert EngineTask.runtime_for(settings.with_overrides(max_retries=7)) is not seen[0]


def _report_child_runtime(settings: Settings, parent_engine_id: int, answers: multiprocessing.Queue) -> None:
    runtime = EngineTask.runtime_for(settings)
    answers.put((id(runtime.engine) != parent_engine_id, EngineTask.runtime_for(settings) is runtime))


def test_a_forked_child_builds_its_own_runtime(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    parent = EngineTask.runtime_for(settings)
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_report_child_runtime, args=(settings, id(parent.engine), answers))
    child.start()
    # The parent's engine still exists in the child (at the same address), so a new one has another id.
    own_engine, kept = answers.get(timeout=30)
    child.join(timeout=30)
    assert (own_engine, kept, child.exitcode) == (True, True, 0)
    assert EngineTask.runtime_for(settings) is parent
