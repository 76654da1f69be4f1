"""The reaction benchmark, run small: every finishing job is seen through webhooks and started, and the bench
reports each stage for all of them. The full run (10,000 jobs, 1,000 finishing at once) is by hand; its
figures are in docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_a_small_webhook_run_reports_every_finishing_job_at_every_stage(tmp_path: Path) -> None:
    results_file = tmp_path / "reaction.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.reaction", "--jobs", "40", "--finishing", "10", "--interval", "20",
         "--latency-ms", "0", "--lead", "2", "--modes", "webhooks", "--redis-db", "14", "--timeout", "120",
         "--json", str(results_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    [result] = json.loads(results_file.read_text())["results"]
    assert result["mode"] == "webhooks"
    for stage in ("delivered", "checked", "started"):
        assert result[stage]["count"] == 10, (stage, result)
        # Nothing is counted before the batches finished.
        assert result[stage]["p50"] >= 0, (stage, result)
    # Per job, the time from one stage to the next (a check may even beat the webhook's answer to the sender).
    for gap in ("delivered_to_checked", "checked_to_started"):
        assert result[gap]["count"] == 10, (gap, result)
    # Whose CPU the burst used, from T until the last Keboola job.
    assert {"api", "simulator", "beat", "postgres"} <= result["cpu_seconds"].keys()
    assert "| webhooks | the Keboola job's start | 10 |" in run.stdout
    assert "| webhooks | the check that saw it | the Keboola job's start | 10 |" in run.stdout
