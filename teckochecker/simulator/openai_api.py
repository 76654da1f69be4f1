"""OpenAI's Batch API (and `GET /v1/models` for key checks), with OpenAI's shapes, statuses and error bodies."""

from __future__ import annotations

from typing import Any

from teckochecker.simulator.openai_state import BATCH_ENDPOINTS
from teckochecker.simulator.routing import Problem, Reply, Route, SimRequest
from teckochecker.simulator.state import SimulatorState
from teckochecker.simulator.timeline import SimulatorInputError

PREFIX = "/v1"
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
MAX_METADATA_PAIRS = 16
_MODELS = (
    {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
    {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
    {"id": "text-embedding-3-small", "object": "model", "created": 1705948997, "owned_by": "system"},
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
DEFAULT_MESSAGES = {
    408: ("Request timed out.", "server_error", None),
    409: ("The request conflicts with another request in progress. Please try again.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again in a few seconds.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def openai_error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})


def fault_error(status: int, message: str | None, code: str | None) -> Reply:
    default_message, kind, default_code = DEFAULT_MESSAGES.get(
        status, (f"Simulated error {status}.", "invalid_request_error", None)
    )
    return openai_error(status, message or default_message, kind=kind, code=code or default_code)


def unknown_route(request: SimRequest) -> Reply:
    return openai_error(404, f"Invalid URL ({request.method} {request.path})")


def _bad_request(message: str, param: str | None = None, code: str | None = None) -> Reply:
    return openai_error(400, message, param=param, code=code)


def _masked(key: str) -> str:
    if len(key) <= 10:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def _authenticate(state: SimulatorState, request: SimRequest) -> str:
    scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Problem(openai_error(401, _NO_KEY))
    if not state.knows_key(key):
        raise Problem(
            openai_error(
                401,
                f"Incorrect API key provided: {_masked(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        )
    return key


def _not_found(batch_id: str) -> Reply:
    return openai_error(404, f"No batch found with id '{batch_id}'.", code="batch_not_found")


def retrieve_batch(state: SimulatorState, request: SimRequest, batch_id: str) -> Reply:
    key = _authenticate(state, request)
    batch = state.visible_batch(batch_id, key)
    return Reply(200, batch) if batch is not None else _not_found(batch_id)


def list_batches(state: SimulatorState, request: SimRequest) -> Reply:
    key = _authenticate(state, request)
    raw_limit = request.arg("limit")
    try:
        limit = DEFAULT_LIST_LIMIT if raw_limit is None else int(raw_limit)
    except ValueError:
        raise Problem(
            _bad_request(f"Invalid 'limit': expected an integer, got '{raw_limit}'.", "limit", "invalid_type")
        ) from None
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise Problem(
            _bad_request(
                f"Invalid 'limit': expected a value between 1 and {MAX_LIST_LIMIT}, got {limit}.",
                "limit",
                "invalid_value",
            )
        )
    page, has_more = state.list_batches(key, limit=limit, after=request.arg("after"))
    return Reply(
        200,
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": has_more,
        },
    )


def create_batch(state: SimulatorState, request: SimRequest) -> Reply:
    key = _authenticate(state, request)
    body = request.json(_bad_request)
    if not isinstance(body, dict):
        raise Problem(_bad_request("The request body must be a JSON object."))
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise Problem(_bad_request(f"Missing required parameter: '{name}'.", name, "missing_required_parameter"))
    if body["endpoint"] not in BATCH_ENDPOINTS:
        raise Problem(
            _bad_request(
                f"Invalid value: '{body['endpoint']}'. Supported values are: {', '.join(sorted(BATCH_ENDPOINTS))}.",
                "endpoint",
                "invalid_value",
            )
        )
    if body["completion_window"] != "24h":
        raise Problem(
            _bad_request(
                f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
                "completion_window",
                "invalid_value",
            )
        )
    metadata = _metadata(body.get("metadata"))
    try:
        batch = state.create_batch(
            endpoint=body["endpoint"],
            input_file_id=body["input_file_id"],
            completion_window=body["completion_window"],
            owner_key=key,
            metadata=metadata,
        )
    except SimulatorInputError as exc:
        raise Problem(_bad_request(str(exc))) from None
    return Reply(200, batch)


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA_PAIRS
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in value.items()
        )
    ):
        raise Problem(
            _bad_request(
                "Invalid 'metadata': expected at most 16 string pairs (keys up to 64, values up to 512 characters).",
                "metadata",
                "invalid_value",
            )
        )
    return value


def cancel_batch(state: SimulatorState, request: SimRequest, batch_id: str) -> Reply:
    key = _authenticate(state, request)
    outcome, batch = state.cancel_batch(batch_id, key)
    if outcome == "not_found" or batch is None:
        return _not_found(batch_id)
    if outcome == "refused":
        return _bad_request(f"Cannot cancel a batch with status '{batch['status']}'.")
    return Reply(200, batch)


def list_models(state: SimulatorState, request: SimRequest) -> Reply:
    _authenticate(state, request)
    return Reply(200, {"object": "list", "data": list(_MODELS)})


ROUTES = [
    Route("GET", PREFIX + "/batches", list_batches),
    Route("POST", PREFIX + "/batches", create_batch),
    Route("GET", PREFIX + "/batches/{batch_id}", retrieve_batch),
    Route("POST", PREFIX + "/batches/{batch_id}/cancel", cancel_batch),
    Route("GET", PREFIX + "/models", list_models),
]
