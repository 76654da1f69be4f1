"""A small Python client for the simulator's control API, for tests, the demo and benchmarks."""

from __future__ import annotations

from typing import Any

import requests


class SimulatorError(RuntimeError):
    """The control API refused a request; the message is the simulator's explanation."""


class SimulatorControl:
    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(
            method, f"{self.base_url}/_sim{path}", json=body, timeout=self.timeout, allow_redirects=False
        )
        payload = response.json()
        if response.status_code >= 400:
            raise SimulatorError(f"{method} /_sim{path}: {payload.get('error', payload)}")
        return payload

    def reset(self) -> None:
        """Forget keys, tokens, batches, jobs, faults and counters; settings return to the server's defaults."""
        self._call("POST", "/reset")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings: latency_ms, batch_duration, batch_final_status, batch_request_total,
        cancel_duration, job_duration, job_final_status, search_delay, fault_seed. Returns them all."""
        return self._call("POST", "/config", settings)

    def add_api_key(self, key: str) -> None:
        self._call("POST", "/openai/keys", {"key": key})

    def add_token(self, token: str, *, project_id: str = "1", description: str = "simulator token") -> dict[str, Any]:
        """Accept `token` for Keboola; tokens of one project see each other's jobs."""
        return self._call(
            "POST", "/keboola/tokens", {"token": token, "project_id": project_id, "description": description}
        )

    def create_batch(
        self,
        *,
        batch_id: str | None = None,
        final_status: str | None = None,
        duration: float | None = None,
        script: list[dict[str, Any]] | None = None,
        request_total: int | None = None,
        failed_requests: int = 0,
        owner_key: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a batch and return it as OpenAI shows it.

        Either `final_status` and `duration` (seconds to get there along the real road, e.g. validating →
        in_progress → finalizing → completed), or a `script` of {"status", "at"} steps. Without an
        `owner_key` every registered key sees the batch.
        """
        body = {
            "id": batch_id,
            "final_status": final_status,
            "duration": duration,
            "script": script,
            "request_total": request_total,
            "failed_requests": failed_requests,
            "owner_key": owner_key,
            "metadata": metadata,
        }
        return self._call("POST", "/openai/batches", {k: v for k, v in body.items() if v is not None})

    def create_batches(self, batches: list[dict[str, Any]]) -> int:
        """Create many batches in one call (up to 10,000), each described as for `create_batch` (with `id`,
        `final_status`, `duration`, `script`, `request_total`, `owner_key`, …); returns how many were created."""
        return self._call("POST", "/openai/batches/bulk", {"batches": batches})["created"]

    def set_batch_status(self, batch_id: str, status: str) -> dict[str, Any]:
        """Move the batch to `status` now; it stays there."""
        return self._call("POST", f"/openai/batches/{batch_id}/status", {"status": status})

    def keboola_jobs(self) -> list[dict[str, Any]]:
        """Every job received: id, status, token, project_id, body (as sent) and created_time, oldest first."""
        return self._call("GET", "/keboola/jobs")

    def set_job_status(self, job_id: str, status: str) -> dict[str, Any]:
        return self._call("POST", f"/keboola/jobs/{job_id}/status", {"status": status})

    def add_fault(
        self,
        path: str,
        *,
        method: str = "*",
        count: int | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
        delay: float | None = None,
        delay_max: float | None = None,
        drop: bool = False,
        after: bool = False,
        probability: float | None = None,
        headers: dict[str, str] | None = None,
        message: str | None = None,
        code: str | None = None,
    ) -> dict[str, Any]:
        """Make requests whose path matches the glob `path` fail, `count` times (None: until cleared).

        `status` answers with that status in the API's own error shape (with Retry-After headers if
        given); `delay` waits that many seconds first (uniformly up to `delay_max` if given); `drop`
        closes the connection without an answer. `after` handles the request first and then fails its
        answer (the job exists, the client sees an error, a timeout or a closed connection).
        `probability` fires the fault on that share of matching requests (seeded by the `fault_seed`
        setting). Delay-only faults add up; the first error or drop that fires decides the answer.
        """
        body = {
            "path": path,
            "method": method,
            "count": count,
            "status": status,
            "retry_after": retry_after,
            "retry_after_ms": retry_after_ms,
            "delay": delay,
            "delay_max": delay_max,
            "drop": drop,
            "after": after,
            "probability": probability,
            "headers": headers,
            "message": message,
            "code": code,
        }
        return self._call("POST", "/faults", {k: v for k, v in body.items() if v is not None})

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def counters(self) -> dict[str, Any]:
        """{"total", "requests": {"GET /v1/batches/{batch_id}": n, …}, "connections", "faults": […]}."""
        return self._call("GET", "/counters")

    def configure_webhooks(self, url: str, secret: str) -> None:
        """Send OpenAI-style webhooks to `url`, signed with `secret` (whsec_…), when batches finish."""
        self._call("POST", "/webhooks", {"url": url, "secret": secret})

    def disable_webhooks(self) -> None:
        self._call("DELETE", "/webhooks")

    def webhooks(self) -> dict[str, Any]:
        """{"url", "faults", "deliveries": [{webhook_id, event_id, type, batch_id, terminal_at, fault, attempts,
        delivered}, …]}, oldest first."""
        return self._call("GET", "/webhooks")

    def add_webhook_fault(self, mode: str, *, batch_id: str | None = None, count: int = 1) -> dict[str, Any]:
        """`duplicate`, `stale` (timestamp 10 minutes old), `bad_signature` or `drop`: for `batch_id`'s event, or
        else for the next `count` events."""
        body = {"mode": mode, "batch_id": batch_id, "count": count}
        return self._call("POST", "/webhooks/faults", {k: v for k, v in body.items() if v is not None})

    def send_webhook(self, batch_id: str, event_type: str = "batch.completed") -> dict[str, Any]:
        """Send an event for `batch_id` now, whatever the batch's status; returns its delivery record."""
        return self._call("POST", "/webhooks/send", {"batch_id": batch_id, "type": event_type})
