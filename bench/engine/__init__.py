"""End-to-end engine benchmark: N jobs, real worker and beat processes, the simulator, Redis, PostgreSQL.

Run by hand from the repository root (not a test):

    python -m bench.engine --jobs 10000 --interval 60 --latency-ms 100
    python -m bench.engine --jobs 10000 --interval 10 --concurrency 64 --pool threads
    python -m bench.engine --jobs 10000 --interval 10 --concurrency 4 --pool prefork

What it does, in order (every process it starts is its own session and is killed on exit, Ctrl-C or error):

1. creates a throw-away PostgreSQL database (bench_engine_<hex>) and migrates it; flushes a dedicated
   Redis db (--redis-db, default 12);
2. starts the simulator in its own process (`cli.py simulate --latency-ms L`), creates N long-running
   batches there (they stay `in_progress` until flipped);
3. measures Celery's own no-op task rate with the same broker, pool and concurrency (bench/noop_app.py,
   W workers, --noop-tasks messages; time from the first publish until a Redis counter reaches the count);
4. starts W worker processes and one beat, then bulk-inserts N jobs (one batch each) whose first checks
   are spread uniformly over the first interval, like jobs created over time;
5. runs K intervals, sampling every second: `polling_jobs.last_check_at` (distinct (job, check) pairs),
   the simulator's request counters, RSS and CPU of the processes;
6. flips every batch to `completed` and waits until every job has its Keboola job;
7. prints checks/s over the steady window (intervals 2..K), scheduling lag, missed checks, trigger
   latency, memory, CPU, the no-op rate and the ratio checks/s / no-op tasks/s.

Scheduling lag = last_check_at − planned slot. Job i's slots are offset_i + k × interval (the dispatcher
keeps jobs on that grid), so the slot of a check is the last grid point before it. last_check_at is
written after OpenAI answered, so the lag includes one simulator round trip (--latency-ms).

The modules follow the run: setup (the installation and its processes), load (the no-op baseline, the
jobs, the flip), sampling (the measuring loop and /proc), analysis (figures and report), __main__.
"""
