"""`python -m bench.engine`: the options, and the run in its order (see the package's docstring)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

import bench.engine
from bench.engine.analysis import analyse, report
from bench.engine.load import Flip, flip_and_wait, insert_jobs, noop_baseline
from bench.engine.sampling import sample
from bench.engine.setup import Installation


class Interrupted(Exception):
    pass


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    description = (bench.engine.__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=description)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--batches-per-job", type=int, default=1)
    parser.add_argument("--keys", type=int, default=1, help="OpenAI keys the jobs are spread over")
    parser.add_argument("--unwatched", type=int, default=0, help="batches in the simulator no job watches")
    parser.add_argument("--scatter", action="store_true", help="spread the watched batches among the unwatched")
    parser.add_argument(
        "--overdue", action="store_true", help="every job overdue by up to an hour when the engine starts (a restart)"
    )
    parser.add_argument("--max-requests-per-minute", type=int, help="OPENAI_MAX_REQUESTS_PER_MINUTE")
    parser.add_argument("--interval", type=int, default=60, help="poll interval of every job, seconds")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulator answer delay")
    parser.add_argument("--concurrency", type=int, default=64, help="per worker (threads or processes)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--pool", choices=("threads", "prefork"), default="threads")
    parser.add_argument("--duration-intervals", type=int, default=3)
    parser.add_argument("--noop-tasks", type=int, default=5000)
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds between last_check_at samples")
    parser.add_argument("--lead", type=float, default=5.0, help="seconds from the insert to the first slot")
    parser.add_argument("--trigger-timeout", type=float, default=120.0, help="extra wait for Keboola jobs")
    parser.add_argument(
        "--skip-trigger", action="store_true", help="end after the K intervals (capacity runs): no flip, no triggers"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of worker and beat (production default INFO)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (path printed)")
    return parser.parse_args(argv)


def run(installation: Installation) -> dict[str, Any]:
    """Steps 1-7 of the package's docstring; returns the results."""
    args = installation.args
    installation.setup_stores()
    installation.start_simulator()
    installation.create_batches()
    noop = noop_baseline(installation)
    installation.start_engine()
    schedule = insert_jobs(installation)
    samples = sample(installation, schedule)
    if args.skip_trigger:
        flip = Flip(started=time.time(), flipped={}, triggered=0, all_triggered_after_seconds=float("nan"))
    else:
        flip = flip_and_wait(installation)
    return {
        "args": vars(args),
        "noop": noop,
        "insert_seconds": schedule.insert_seconds,
        "all_triggered_after_seconds": flip.all_triggered_after_seconds,
        "keboola_jobs_triggered": flip.triggered,
        **analyse(installation, schedule, samples, flip, noop["rate"]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    installation = Installation(args)
    # The no-op baseline publishes from this process, through the installation's broker.
    os.environ.update(installation.settings_environment())
    try:
        installation.log(
            f"database {installation.database_name}, Redis {installation.redis_url}, "
            f"simulator port {installation.port}, logs {installation.workdir}"
        )
        report(args, run(installation))
        return 0
    except Interrupted as exc:
        print(f"interrupted ({exc}); cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        installation.cleanup()


if __name__ == "__main__":
    sys.exit(main())
