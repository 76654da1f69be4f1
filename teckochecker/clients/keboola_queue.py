"""Starts and follows Keboola Connection jobs through the Job Queue API, with one Storage API token."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from teckochecker.clients.errors import TransientError
from teckochecker.clients.http import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, request_json
from teckochecker.clients.keboola_hosts import KeboolaHosts
from teckochecker.redaction import Redactor, Redacts

SERVICE = "Keboola"
SEARCH_PAGE_SIZE = 100
# What we store of Keboola's answers must fit our columns and carry nothing but an id and a status word.
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JOB_STATUS = re.compile(r"^[a-z_]{1,32}$")
_PROJECT_ID = re.compile(r"[0-9]{1,20}")


def queue_url_for(stack_url: str) -> str:
    """The Job Queue URL of a stack: `connection.<region>` becomes `queue.<region>`; other hosts stay as given."""
    parts = urlsplit(stack_url.strip().rstrip("/"))
    netloc = parts.netloc
    if netloc.lower().startswith("connection."):
        netloc = "queue." + netloc[len("connection.") :]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def batch_variables(completed_batch_ids: Sequence[str], failed_batch_ids: Sequence[str]) -> list[dict[str, str]]:
    """The variables a finished polling job hands to its Keboola configuration (Keboola wants strings)."""
    completed = list(completed_batch_ids)
    failed = list(failed_batch_ids)
    values = {
        "batch_ids_completed": json.dumps(completed),
        "batch_ids_failed": json.dumps(failed),
        "batch_count_total": str(len(completed) + len(failed)),
        "batch_count_completed": str(len(completed)),
        "batch_count_failed": str(len(failed)),
    }
    return [{"name": name, "value": value} for name, value in values.items()]


@dataclass(frozen=True)
class KeboolaJob:
    id: str
    status: str
    is_finished: bool
    component: str | None
    config: str | None
    created_time: datetime | None
    project_id: str | None
    variables: dict[str, str]
    """The variableValuesData the job was started with, as name → value."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    description: str | None
    project_id: str | None
    project_name: str | None


class KeboolaQueueClient:
    """One Storage API token against one Keboola stack. Cheap to create; connections are pooled per thread.

    Every request is checked against `hosts` right before it is sent: the token goes only to a trusted host,
    whatever URL was stored (UnsafeEndpointError otherwise). Error messages never hold the token, nor
    anything `redactor` knows (by default: key shapes only).
    """

    def __init__(
        self,
        token: str,
        stack_url: str,
        *,
        hosts: KeboolaHosts,
        redactor: Redacts | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._token = token
        self._hosts = hosts
        self._redactor = redactor or Redactor()
        self.stack_url = stack_url.strip().rstrip("/")
        self.queue_url = queue_url_for(self.stack_url)
        self.timeouts = (connect_timeout, read_timeout)

    def __repr__(self) -> str:
        return f"KeboolaQueueClient(stack_url={self.stack_url!r}, token=<hidden>)"

    def start_job(self, component_id: str, config_id: str, variables: Sequence[Mapping[str, str]]) -> str:
        """Start a run of the configuration and return the new job's id.

        A TransientError here does not prove that no job was created (the answer may be what was lost):
        look for it with `search_jobs` before starting again.
        """
        body = {
            "component": component_id,
            "config": config_id,
            "mode": "run",
            "variableValuesData": {"values": [{"name": v["name"], "value": v["value"]} for v in variables]},
        }
        job = self._call("POST", self.queue_url + "/jobs", json_body=body)
        job_id = job.get("id") if isinstance(job, dict) else None
        if job_id is None or not _JOB_ID.match(str(job_id)):
            raise TransientError(SERVICE, "accepted the job but its answer holds no valid job id")
        return str(job_id)

    def get_job(self, job_id: str) -> KeboolaJob:
        return parse_job(self._call("GET", f"{self.queue_url}/jobs/{quote(job_id, safe='')}"))

    def search_jobs(self, component_id: str, config_id: str, created_from: datetime) -> list[KeboolaJob]:
        """Jobs of one configuration created at or after `created_from`, newest first.

        Keboola serves this from a search index that lags a few seconds behind job creation.
        """
        if created_from.tzinfo is None:
            created_from = created_from.replace(tzinfo=UTC)
        params: dict[str, Any] = {
            "componentId": component_id,
            "configId": config_id,
            "createdTimeFrom": created_from.astimezone(UTC).isoformat(timespec="seconds"),
            "limit": SEARCH_PAGE_SIZE,
            "sortBy": "id",
            "sortOrder": "desc",
        }
        jobs: dict[str, KeboolaJob] = {}
        offset = 0
        while True:
            page = self._call("GET", self.queue_url + "/search/jobs", params={**params, "offset": offset})
            if not isinstance(page, list):
                raise TransientError(SERVICE, "answered a job search with something that is not a list")
            fresh = [job for job in map(parse_job, page) if job.id not in jobs]
            jobs.update((job.id, job) for job in fresh)
            # Stop on a short page, or on one that brings nothing new (a server ignoring offset).
            if len(page) < SEARCH_PAGE_SIZE or not fresh:
                return list(jobs.values())
            offset += len(page)

    def verify_token(self) -> TokenInfo:
        """Who the token is, according to the Storage API; raises PermanentError (401) for a bad token."""
        body = self._call("GET", self.stack_url + "/v2/storage/tokens/verify")
        if not isinstance(body, dict) or body.get("id") is None:
            raise TransientError(SERVICE, "answered the token check with something that is not a token")
        owner = body.get("owner")
        owner = owner if isinstance(owner, dict) else {}
        return TokenInfo(
            id=str(body["id"]),
            description=body.get("description"),
            project_id=str(owner["id"]) if owner.get("id") is not None else None,
            project_name=owner.get("name"),
        )

    def _call(self, method: str, url: str, *, params: dict[str, Any] | None = None, json_body: Any = None) -> Any:
        self._hosts.check_request_url(url)
        return request_json(
            method,
            url,
            service=SERVICE,
            redact=lambda text: self._redactor.redact(text, self._token),
            headers={"X-StorageApi-Token": self._token, "Accept": "application/json"},
            timeouts=self.timeouts,
            read_error=read_keboola_error,
            params=params,
            json_body=json_body,
        )


def read_keboola_error(body: Any) -> tuple[str | None, str | None]:
    """Keboola's error body: {"error", "code", "status": "error", "exceptionId"}; code is a number or a name."""
    if not isinstance(body, dict):
        return None, None
    message = body.get("error") if isinstance(body.get("error"), str) else body.get("message")
    code = body.get("code")
    return (message if isinstance(message, str) else None), (str(code) if code is not None else None)


def parse_job(body: Any) -> KeboolaJob:
    if (
        not isinstance(body, dict)
        or not _JOB_ID.match(str(body.get("id")))
        or not isinstance(body.get("status"), str)
        or not _JOB_STATUS.match(body["status"])
    ):
        raise TransientError(SERVICE, "answered with something that is not a job")
    variable_data = body.get("variableValuesData")
    values = variable_data.get("values") if isinstance(variable_data, dict) else None
    return KeboolaJob(
        id=str(body["id"]),
        status=body["status"],
        is_finished=body.get("isFinished") is True,
        component=body.get("component"),
        config=str(body["config"]) if body.get("config") is not None else None,
        created_time=_timestamp(body.get("createdTime")),
        project_id=_project_id(body.get("project")),
        variables={
            str(item["name"]): str(item.get("value", ""))
            for item in values or ()
            if isinstance(item, dict) and "name" in item
        },
    )


def _project_id(project: Any) -> str | None:
    """Keboola's project id, a number; it goes into a link, so anything else is dropped."""
    project_id = str(project.get("id")) if isinstance(project, dict) else ""
    return project_id if _PROJECT_ID.fullmatch(project_id) else None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
