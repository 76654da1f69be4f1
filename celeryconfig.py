"""Celery's reliability settings, each choice explained where it is made.

The worker package builds its Celery app from these and from Settings (worker/celery_app.py), which add
the broker: Redis at REDIS_URL, else the embedded broker. This module imports nothing of TeckoChecker's
and touches nothing on import, so it can be read on its own.
"""

from kombu import Exchange, Queue

# An unacknowledged Redis message (its worker died holding it) comes back after this long. It must stay
# far above every retry countdown, or a task waiting for its countdown would be delivered twice
# (worker/broker.py checks it against the engine's longest broker wait).
REDIS_VISIBILITY_TIMEOUT = 3600
# Workers started before Redis is up keep trying instead of exiting (compose and Kubernetes start them together).
broker_connection_retry_on_startup = True

# Arguments are ids and lease tokens: JSON is enough, and pickle would let a broker writer run code.
task_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

# PostgreSQL holds the truth; results would only fill Redis.
task_ignore_result = True
result_backend = None

# A task is acknowledged after it ran, and given back when its worker dies, so a crash never drops a
# check silently; the lease in the database makes a second run harmless.
task_acks_late = True
task_reject_on_worker_lost = True

# Checks are I/O waits: a thread pool keeps many in flight per process. A check task asks OpenAI about up
# to 8 jobs one after another, so a thread spends most of its time waiting; 64 threads check clearly more
# than 32 (measurements in docs/BENCHMARKS.md), and real answers are slower than the benchmark's. Past
# that a process is CPU-bound: scale with worker processes, one or two per core.
# Thread pools do not enforce time limits, so the HTTP clients carry their own timeouts; the limits below
# bound prefork workers and stay far below the visibility timeout.
worker_pool = "threads"
worker_concurrency = 64
task_soft_time_limit = 240
task_time_limit = 300
# One message reserved per thread: a reserved message waits in a worker rather than in Redis, where an
# idle worker could have taken it.
worker_prefetch_multiplier = 1

# Separate queues, so a Keboola trigger never waits behind thousands of queued checks, and a slow Slack
# never delays a check or a trigger. Workers consume every queue listed here.
CHECK_QUEUE = "teckochecker.checks"
TRIGGER_QUEUE = "teckochecker.triggers"
NOTIFICATION_QUEUE = "teckochecker.notifications"
# Each queue has its own exchange and routing key: queues declared without them would share the default
# exchange and key, and every message would be delivered to both.
task_default_queue = CHECK_QUEUE
task_default_exchange = CHECK_QUEUE
task_default_routing_key = CHECK_QUEUE
task_queues = (
    Queue(CHECK_QUEUE, Exchange(CHECK_QUEUE, type="direct"), routing_key=CHECK_QUEUE),
    Queue(TRIGGER_QUEUE, Exchange(TRIGGER_QUEUE, type="direct"), routing_key=TRIGGER_QUEUE),
    Queue(NOTIFICATION_QUEUE, Exchange(NOTIFICATION_QUEUE, type="direct"), routing_key=NOTIFICATION_QUEUE),
)
task_routes = {
    "teckochecker.trigger_keboola": {"queue": TRIGGER_QUEUE, "routing_key": TRIGGER_QUEUE},
    "teckochecker.follow_keboola": {"queue": TRIGGER_QUEUE, "routing_key": TRIGGER_QUEUE},
    "teckochecker.send_notifications": {"queue": NOTIFICATION_QUEUE, "routing_key": NOTIFICATION_QUEUE},
}

# Beat runs the database dispatcher instead of one schedule entry per job (see worker/scheduler.py).
beat_scheduler = "worker.scheduler:DispatchScheduler"
beat_max_loop_interval = 1

# Flower shows tasks from these events; arguments in them are ids only.
worker_send_task_events = True
task_send_sent_event = True

# Each worker also consumes its own queue, `<hostname>.dq2`: its consumer watchdog sends canaries there to
# prove the consumer alive (worker/consumer_watchdog.py).
worker_direct = True
