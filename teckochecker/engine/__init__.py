"""The polling engine's rules: scheduling, leases, the check and the Keboola trigger. Free of Celery."""
