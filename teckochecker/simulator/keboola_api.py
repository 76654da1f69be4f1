"""Keboola's Job Queue API (jobs, search) and Storage API token check, with Keboola's shapes and error bodies.

Everything sits at the server's root, so one URL serves as both stack URL and queue URL.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from teckochecker.simulator.keboola_state import JOB_STATUSES, SimToken
from teckochecker.simulator.routing import Problem, Reply, Route, SimRequest
from teckochecker.simulator.state import SimulatorState
from teckochecker.simulator.timeline import iso_time

DEFAULT_SEARCH_LIMIT = 100
MAX_SEARCH_LIMIT = 500
JOB_MODES = frozenset({"run", "debug", "forceRun"})
DEFAULT_MESSAGES = {
    429: "Too many requests. Please try again later.",
    500: "Internal Server Error occurred.",
    502: "Bad gateway.",
    503: "Service is temporarily unavailable. Please try again later.",
}


def keboola_error(status: int, message: str, *, code: int | str | None = None, storage: bool = False) -> Reply:
    """Queue errors carry the HTTP status as `code`; Storage API errors carry a name such as `storage.tokenInvalid`."""
    prefix = "exception" if storage else "job-runner"
    return Reply(
        status,
        {
            "error": message,
            "code": status if code is None else code,
            "status": "error",
            "exceptionId": f"{prefix}-{secrets.token_hex(8)}",
        },
    )


def fault_error(status: int, message: str | None, code: str | None) -> Reply:
    return keboola_error(status, message or DEFAULT_MESSAGES.get(status, f"Simulated error {status}."), code=code)


def unknown_route(request: SimRequest) -> Reply:
    return keboola_error(404, f'Route "{request.method} {request.path}" not found.')


def _bad_request(message: str) -> Reply:
    return keboola_error(400, message)


def _token(state: SimulatorState, request: SimRequest, *, storage: bool = False) -> SimToken:
    value = request.headers.get("x-storageapi-token")
    if not value:
        raise Problem(
            keboola_error(
                401, "Access token must be set", code="storage.tokenMissing" if storage else None, storage=storage
            )
        )
    token = state.token(value)
    if token is None:
        raise Problem(
            keboola_error(
                401, "Invalid access token", code="storage.tokenInvalid" if storage else None, storage=storage
            )
        )
    return token


def create_job(state: SimulatorState, request: SimRequest) -> Reply:
    token = _token(state, request)
    body = request.json(_bad_request)
    if not isinstance(body, dict):
        raise Problem(_bad_request("The request body must be a JSON object."))
    component = body.get("component")
    if not isinstance(component, str) or not component:
        raise Problem(_bad_request('Invalid configuration for path "component": The value must be a non-empty string.'))
    mode = body.setdefault("mode", "run")
    if mode not in JOB_MODES:
        raise Problem(_bad_request(f'Invalid configuration for path "mode": Invalid mode "{mode}".'))
    if "config" in body and not isinstance(body["config"], str | int):
        raise Problem(_bad_request('Invalid configuration for path "config": The value must be a string.'))
    _check_variables(body.get("variableValuesData"))
    job = state.create_job(token, body)
    return Reply(201, job.render(job.created, request.base_url))


def _check_variables(data: Any) -> None:
    if data is None:
        return
    values = data.get("values") if isinstance(data, dict) else None
    if not isinstance(values, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str)
        for item in values
    ):
        raise Problem(
            _bad_request(
                'Invalid configuration for path "variableValuesData": expected {"values": [{"name", "value"}]} '
                "with string names and values."
            )
        )


def get_job(state: SimulatorState, request: SimRequest, job_id: str) -> Reply:
    token = _token(state, request)
    job = state.visible_job(job_id, token, request.base_url)
    return Reply(200, job) if job is not None else keboola_error(404, f'Job "{job_id}" not found')


def search_jobs(state: SimulatorState, request: SimRequest) -> Reply:
    token = _token(state, request)
    statuses = request.args("status")
    unknown = [status for status in statuses if status not in JOB_STATUSES]
    if unknown:
        raise Problem(_bad_request(f'Invalid value "{unknown[0]}" for parameter "status".'))
    sort_order = request.arg("sortOrder") or "desc"
    if sort_order not in ("asc", "desc"):
        raise Problem(_bad_request(f'Invalid value "{sort_order}" for parameter "sortOrder".'))
    jobs = state.search_jobs(
        token,
        components=request.args("componentId", "component"),
        configs=request.args("configId", "config"),
        statuses=statuses,
        created_from=_time_parameter(request, "createdTimeFrom"),
        created_to=_time_parameter(request, "createdTimeTo"),
        offset=_count_parameter(request, "offset", 0, maximum=None),
        limit=_count_parameter(request, "limit", DEFAULT_SEARCH_LIMIT, maximum=MAX_SEARCH_LIMIT),
        newest_first=sort_order == "desc",
        queue_url=request.base_url,
    )
    return Reply(200, jobs)


def _time_parameter(request: SimRequest, name: str) -> float | None:
    value = request.arg(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise Problem(_bad_request(f'Invalid value "{value}" for parameter "{name}".')) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _count_parameter(request: SimRequest, name: str, default: int, *, maximum: int | None) -> int:
    value = request.arg(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0 or (maximum is not None and number > maximum):
        limit = f" and {maximum}" if maximum is not None else ""
        raise Problem(_bad_request(f'Parameter "{name}" must be a number between 0{limit}, got "{value}".'))
    return number


def verify_token(state: SimulatorState, request: SimRequest) -> Reply:
    token = _token(state, request, storage=True)
    project_id: int | str = int(token.project_id) if token.project_id.isdigit() else token.project_id
    return Reply(
        200,
        {
            "id": token.id,
            "description": token.description,
            "created": iso_time(token.created),
            "refreshed": iso_time(token.created),
            "uri": f"{request.base_url}/v2/storage/tokens/{token.id}",
            "isMasterToken": False,
            "canManageBuckets": False,
            "canReadAllFileUploads": False,
            "canPurgeTrash": False,
            "canManageTokens": False,
            "isDisabled": False,
            "expires": None,
            "bucketPermissions": {},
            "componentAccess": [],
            "owner": {
                "id": project_id,
                "name": token.project_name,
                "type": "production",
                "region": "us-east-1",
                "features": [],
            },
        },
    )


ROUTES = [
    Route("POST", "/jobs", create_job),
    Route("GET", "/jobs/{job_id}", get_job),
    Route("GET", "/search/jobs", search_jobs),
    Route("GET", "/v2/storage/tokens/verify", verify_token),
]
