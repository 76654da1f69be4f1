"""Turns one request into one reply: control API first, then latency and faults, then the simulated APIs."""

from __future__ import annotations

import logging
import time
from types import ModuleType

from teckochecker.simulator import control_api, keboola_api, openai_api
from teckochecker.simulator.faults import Fault
from teckochecker.simulator.routing import Problem, Reply, Route, Router, SimRequest
from teckochecker.simulator.state import SimulatorState

logger = logging.getLogger(__name__)


class SimulatorApp:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self._control = Router(control_api.ROUTES)
        self._apis = Router(openai_api.ROUTES + keboola_api.ROUTES)

    def handle(self, request: SimRequest) -> Reply | None:
        """The reply, or None when the connection is to be dropped without one."""
        if request.path.startswith(control_api.PREFIX + "/"):
            route, params = self._control.find(request.method, request.path)
            if route is None:
                return _no_control_endpoint(request)
            return self._run(route, params, request)

        route, params = self._apis.find(request.method, request.path)
        self.state.count_request(route.name if route else f"{request.method} (no route)")
        latency = self.state.latency
        if latency:
            # Sleeps in this connection's own thread, so concurrent requests are not serialised.
            time.sleep(latency)
        fired = self.state.take_faults(request.method, request.path)
        deciding = fired[-1] if fired and fired[-1].decides else None
        self._delay([fault for fault in fired if not fault.after])
        if deciding is not None and not deciding.after:
            return _fault_reply(deciding, request)
        reply = self._run(route, params, request) if route is not None else _api_module(request).unknown_route(request)
        self._delay([fault for fault in fired if fault.after])
        if deciding is not None:
            return _fault_reply(deciding, request)
        return reply

    def _delay(self, faults: list[Fault]) -> None:
        for fault in faults:
            pause = self.state.fault_delay(fault)
            if pause:
                time.sleep(pause)

    def _run(self, route: Route, params: dict[str, str], request: SimRequest) -> Reply:
        try:
            return route.handler(self.state, request, **params)
        except Problem as problem:
            return problem.reply
        except Exception:
            logger.exception("simulator failed on %s %s", request.method, request.path)
            return Reply(500, {"error": "the simulator itself failed; see its log"})


def _no_control_endpoint(request: SimRequest) -> Reply:
    return control_api.control_error(404, f"no control endpoint {request.method} {request.path}")


def _api_module(request: SimRequest) -> ModuleType:
    """The simulated API a path belongs to; each shapes its own errors (`fault_error`, `unknown_route`)."""
    return openai_api if request.path.startswith(openai_api.PREFIX + "/") else keboola_api


def _fault_reply(fault: Fault, request: SimRequest) -> Reply | None:
    """The fault's answer, or None to drop the connection."""
    if fault.drop:
        return None
    assert fault.status is not None
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = f"{fault.retry_after_ms:g}"
    headers.update(fault.headers)
    if fault.status < 400:
        return Reply(fault.status, None, headers)
    reply = _api_module(request).fault_error(fault.status, fault.message, fault.code)
    reply.headers.update(headers)
    return reply
