"""The control API under /_sim/: set the scene (keys, tokens, batches), inject faults, read what happened.

It is never delayed, faulted or counted, so a test can always steer the simulator.
"""

from __future__ import annotations

import re
from typing import Any

from teckochecker.simulator.openai_state import check_script
from teckochecker.simulator.routing import Problem, Reply, Route, SimRequest
from teckochecker.simulator.state import SimulatorState
from teckochecker.simulator.timeline import SimulatorInputError

PREFIX = "/_sim"
_BATCH_ID = re.compile(r"^batch_[A-Za-z0-9_-]+$")
_FAULT_NUMBERS = ("retry_after", "retry_after_ms", "delay", "delay_max")


def control_error(status: int, message: str) -> Reply:
    return Reply(status, {"error": message})


def _body(request: SimRequest) -> dict[str, Any]:
    body = request.json(lambda message: control_error(400, message))
    if not isinstance(body, dict):
        raise Problem(control_error(400, "the body must be a JSON object"))
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise Problem(control_error(400, f"{name!r} must be a non-empty string"))
    return value


def _number(body: dict[str, Any], name: str, *, integer: bool = False, minimum: float = 0) -> Any:
    value = body.get(name)
    if value is None:
        return None
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        raise Problem(control_error(400, f"{name!r} must be a number of {minimum} or more, got {value!r}"))
    return value


def reset(state: SimulatorState, request: SimRequest) -> Reply:
    state.reset()
    return Reply(200, {"reset": True})


def get_config(state: SimulatorState, request: SimRequest) -> Reply:
    return Reply(200, state.configure({}))


def set_config(state: SimulatorState, request: SimRequest) -> Reply:
    try:
        return Reply(200, state.configure(_body(request)))
    except SimulatorInputError as exc:
        return control_error(400, str(exc))


def add_api_key(state: SimulatorState, request: SimRequest) -> Reply:
    state.add_api_key(_text(_body(request), "key") or "")
    return Reply(201, {"added": True})


def add_token(state: SimulatorState, request: SimRequest) -> Reply:
    body = _body(request)
    token = state.add_token(
        _text(body, "token") or "",
        description=_text(body, "description", required=False) or "simulator token",
        project_id=str(body.get("project_id", "1")),
    )
    return Reply(201, {"id": token.id, "description": token.description, "project_id": token.project_id})


def _new_batch(state: SimulatorState, body: dict[str, Any]) -> dict[str, Any]:
    """Create one batch from a control-API description; raises Problem or SimulatorInputError."""
    batch_id = _text(body, "id", required=False)
    if batch_id is not None and not _BATCH_ID.match(batch_id):
        raise Problem(
            control_error(400, f"{batch_id!r} is not a batch id: use batch_ followed by letters, digits, _ or -")
        )
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise Problem(control_error(400, "'metadata' must map strings to strings"))
    if body.get("script") is not None:
        steps = check_script(body["script"])
    elif body.get("final_status") is not None or body.get("duration") is not None:
        final_status = body.get("final_status") or state.settings.batch_final_status
        duration = _number(body, "duration")
        steps = state.batch_road(final_status, state.settings.batch_duration if duration is None else duration)
    else:
        steps = None
    return state.create_batch(
        batch_id=batch_id,
        steps=steps,
        endpoint=_text(body, "endpoint", required=False) or "/v1/chat/completions",
        input_file_id=_text(body, "input_file_id", required=False),
        request_total=_number(body, "request_total", integer=True),
        failed_requests=_number(body, "failed_requests", integer=True) or 0,
        owner_key=_text(body, "owner_key", required=False),
        metadata=metadata,
    )


def create_batch(state: SimulatorState, request: SimRequest) -> Reply:
    try:
        return Reply(201, _new_batch(state, _body(request)))
    except SimulatorInputError as exc:
        return control_error(400, str(exc))


MAX_BULK_BATCHES = 10_000


def create_batches(state: SimulatorState, request: SimRequest) -> Reply:
    """Many batches at once (benchmarks): {"batches": [description, …]} → {"created": n}; stops at the first bad one."""
    descriptions = _body(request).get("batches")
    if not isinstance(descriptions, list) or not 1 <= len(descriptions) <= MAX_BULK_BATCHES:
        raise Problem(control_error(400, f"'batches' must be a list of 1 to {MAX_BULK_BATCHES} batch descriptions"))
    for position, description in enumerate(descriptions):
        if not isinstance(description, dict):
            return control_error(400, f"batches[{position}] must be an object")
        try:
            _new_batch(state, description)
        except SimulatorInputError as exc:
            return control_error(400, f"batches[{position}]: {exc} ({position} created)")
    return Reply(201, {"created": len(descriptions)})


def set_batch_status(state: SimulatorState, request: SimRequest, batch_id: str) -> Reply:
    try:
        batch = state.flip_batch(batch_id, _text(_body(request), "status") or "")
    except SimulatorInputError as exc:
        return control_error(400, str(exc))
    return Reply(200, batch) if batch is not None else control_error(404, f"no batch {batch_id}")


def list_jobs(state: SimulatorState, request: SimRequest) -> Reply:
    return Reply(200, state.job_records())


def set_job_status(state: SimulatorState, request: SimRequest, job_id: str) -> Reply:
    try:
        job = state.flip_job(job_id, _text(_body(request), "status") or "")
    except SimulatorInputError as exc:
        return control_error(400, str(exc))
    return Reply(200, job) if job is not None else control_error(404, f"no job {job_id}")


def list_faults(state: SimulatorState, request: SimRequest) -> Reply:
    return Reply(200, state.counters()["faults"])


def add_fault(state: SimulatorState, request: SimRequest) -> Reply:
    body = _body(request)
    unknown = set(body) - {
        "path", "method", "count", "status", "headers", "message", "code", "drop", "after", "probability",
        *_FAULT_NUMBERS,
    }  # fmt: skip
    if unknown:
        raise Problem(control_error(400, f"unknown fault field(s): {', '.join(sorted(unknown))}"))
    spec: dict[str, Any] = {
        "path": _text(body, "path"),
        "method": (_text(body, "method", required=False) or "*").upper(),
        "count": _number(body, "count", integer=True, minimum=1),
        "status": _number(body, "status", integer=True, minimum=300),
        "message": _text(body, "message", required=False),
        "code": _text(body, "code", required=False),
        "drop": body.get("drop", False),
        "after": body.get("after", False),
        "headers": body.get("headers") or {},
    }
    for name in _FAULT_NUMBERS:
        spec[name] = _number(body, name)
    spec["delay"] = spec["delay"] or 0.0
    if spec["status"] is not None and spec["status"] > 599:
        raise Problem(control_error(400, "'status' must be an HTTP status between 300 and 599"))
    for flag in ("drop", "after"):
        if not isinstance(spec[flag], bool):
            raise Problem(control_error(400, f"{flag!r} must be true or false"))
    probability = body.get("probability", 1)
    if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 < probability <= 1:
        raise Problem(control_error(400, f"'probability' must be a number above 0 and at most 1, got {probability!r}"))
    spec["probability"] = float(probability)
    if spec["delay_max"] is not None and spec["delay_max"] < spec["delay"]:
        raise Problem(control_error(400, "'delay_max' must be at least 'delay'"))
    if not isinstance(spec["headers"], dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in spec["headers"].items()
    ):
        raise Problem(control_error(400, "'headers' must map header names to string values"))
    if spec["status"] is None and not spec["drop"] and not spec["delay"] and not spec["delay_max"]:
        raise Problem(control_error(400, "a fault needs a 'status', a 'delay' or 'drop': true"))
    return Reply(201, state.add_fault(spec).describe())


def clear_faults(state: SimulatorState, request: SimRequest) -> Reply:
    state.clear_faults()
    return Reply(200, {"cleared": True})


def configure_webhooks(state: SimulatorState, request: SimRequest) -> Reply:
    body = _body(request)
    try:
        state.webhooks.configure(_text(body, "url") or "", _text(body, "secret") or "")
    except SimulatorInputError as exc:
        return control_error(400, str(exc))
    return Reply(200, {"url": body["url"]})


def disable_webhooks(state: SimulatorState, request: SimRequest) -> Reply:
    state.webhooks.disable()
    return Reply(200, {"disabled": True})


def describe_webhooks(state: SimulatorState, request: SimRequest) -> Reply:
    return Reply(200, state.webhooks.describe())


def add_webhook_fault(state: SimulatorState, request: SimRequest) -> Reply:
    body = _body(request)
    batch_id = _text(body, "batch_id", required=False)
    count = _number(body, "count", integer=True, minimum=1)
    try:
        fault = state.webhooks.add_fault(_text(body, "mode") or "", batch_id, 1 if count is None else count)
    except SimulatorInputError as exc:
        return control_error(400, str(exc))
    return Reply(201, vars(fault).copy())


def send_webhook(state: SimulatorState, request: SimRequest) -> Reply:
    body = _body(request)
    event_type = _text(body, "type", required=False) or "batch.completed"
    delivery = state.webhooks.send_now(_text(body, "batch_id") or "", event_type)
    return Reply(202, delivery.describe())


def counters(state: SimulatorState, request: SimRequest) -> Reply:
    return Reply(200, state.counters())


ROUTES = [
    Route("POST", PREFIX + "/reset", reset),
    Route("GET", PREFIX + "/config", get_config),
    Route("POST", PREFIX + "/config", set_config),
    Route("POST", PREFIX + "/openai/keys", add_api_key),
    Route("POST", PREFIX + "/openai/batches", create_batch),
    Route("POST", PREFIX + "/openai/batches/bulk", create_batches),
    Route("POST", PREFIX + "/openai/batches/{batch_id}/status", set_batch_status),
    Route("POST", PREFIX + "/keboola/tokens", add_token),
    Route("GET", PREFIX + "/keboola/jobs", list_jobs),
    Route("POST", PREFIX + "/keboola/jobs/{job_id}/status", set_job_status),
    Route("GET", PREFIX + "/faults", list_faults),
    Route("POST", PREFIX + "/faults", add_fault),
    Route("DELETE", PREFIX + "/faults", clear_faults),
    Route("GET", PREFIX + "/counters", counters),
    Route("POST", PREFIX + "/webhooks", configure_webhooks),
    Route("DELETE", PREFIX + "/webhooks", disable_webhooks),
    Route("GET", PREFIX + "/webhooks", describe_webhooks),
    Route("POST", PREFIX + "/webhooks/faults", add_webhook_fault),
    Route("POST", PREFIX + "/webhooks/send", send_webhook),
]
