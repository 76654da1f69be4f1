"""Exit codes that TeckoChecker's processes and their supervisors agree on."""

# "Start a new one of me": a worker whose broker consumer died (worker/consumer_watchdog.py). `teckochecker
# start` replaces such a child; any other exit of a child stops the service. Compose, Kubernetes and
# systemd restart on any exit.
REPLACE_ME = 3
