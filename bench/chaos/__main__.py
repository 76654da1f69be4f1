"""The chaos suite, run by hand: each fault on its own, then all of them mixed.

    python -m bench.chaos                      # every scenario, about an hour and a half
    python -m bench.chaos kills postgres       # some of them
    python -m bench.chaos mix --json out.json  # and keep the figures

Each scenario sets up its own installation (Redis, PostgreSQL, the simulator, the API, workers and beats,
all on free ports in a temporary folder), runs jobs whose batches finish in waves while the faults land,
waits for every job to finish, and prints faults, jobs, Keboola jobs, duplicates, lost jobs and recovery.
docs/RELIABILITY.md explains each figure and keeps the latest results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from bench.chaos.scenarios import TABLE_HEADER, Plan, Report, run, run_embedded, table_row

SCENARIOS = {
    "kills": Plan("kills", jobs=1000, seconds=900, kills=1000),
    "redis": Plan("redis", jobs=500, seconds=180, redis_restarts=3),
    "redis-aof": Plan("redis-aof", jobs=500, seconds=180, redis_restarts=3, append_only=True),
    "postgres": Plan("postgres", jobs=500, seconds=180, postgres_restarts=3),
    "ambiguous": Plan("ambiguous", jobs=200, seconds=120, ambiguous_each=3),
    "skew": Plan("skew", jobs=500, seconds=180, skewed_workers=2),
    "flaky-openai": Plan("flaky-openai", jobs=300, seconds=240, interval=10, flaky_openai=True),
    "mix": Plan(
        "mix",
        jobs=1000,
        seconds=900,
        interval=10,
        kills=1000,
        redis_restarts=2,
        postgres_restarts=2,
        ambiguous_each=3,
        skewed_workers=2,
        flaky_openai=True,
        # Answers of 2–10 s, asked one after another in groups of 8: the last jobs need minutes to finish.
        settle_seconds=900,
    ),
}
EMBEDDED = "embedded"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join([*SCENARIOS, EMBEDDED])} (default: all)")
    parser.add_argument("--jobs", type=int, help="polling jobs (default: the scenario's)")
    parser.add_argument("--seconds", type=float, help="how long the batches keep finishing and faults land")
    parser.add_argument("--kills", type=int, help="SIGKILLs (default: the scenario's)")
    parser.add_argument("--embedded-kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--json", help="also write the reports to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep each installation's folder and logs")
    args = parser.parse_args(argv)
    names = args.scenarios or [*SCENARIOS, EMBEDDED]
    unknown = set(names) - {*SCENARIOS, EMBEDDED}
    if unknown:
        parser.error(f"no scenario {', '.join(sorted(unknown))}")
    reports: list[Report] = []
    for name in names:
        started = time.strftime("%H:%M:%S")
        print(f"[{started}] {name}", flush=True)
        if name == EMBEDDED:
            report = run_embedded(args.embedded_kills, seed=args.seed, keep_logs=args.keep_logs)
        else:
            plan = SCENARIOS[name]
            overrides = {"jobs": args.jobs, "seconds": args.seconds, "kills": args.kills if plan.kills else None}
            plan = dataclasses.replace(plan, seed=args.seed, **{k: v for k, v in overrides.items() if v is not None})
            report = run(plan, keep_logs=args.keep_logs, log=lambda message: print(message, flush=True))
        reports.append(report)
        print(report.line(), flush=True)
        print(json.dumps(report.details), flush=True)
    if args.json:
        with open(args.json, "w") as output:
            json.dump([dataclasses.asdict(report) for report in reports], output, indent=2)
    print("\n".join([TABLE_HEADER, *(table_row(report) for report in reports)]))
    failed = [report.scenario for report in reports if report.duplicates or report.lost]
    if failed:
        print(f"duplicates or lost jobs in: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
