"""Requests, replies and routes: the small vocabulary the simulated APIs are written in."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SimRequest:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    base_url: str
    """Scheme and host the client used, for URLs inside answers (Keboola's job `url`)."""

    def arg(self, name: str) -> str | None:
        values = self.args(name)
        return values[0] if values else None

    def args(self, *names: str) -> list[str]:
        """Every value given under any of `names`, also in PHP's `name[]` form that Keboola accepts."""
        found: list[str] = []
        for name in names:
            found += self.query.get(name, []) + self.query.get(name + "[]", [])
        return found

    def json(self, problem: Callable[[str], Reply]) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise Problem(problem(f"the request body is not valid JSON ({exc})")) from None


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Problem(Exception):
    """Ends a handler early with an error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


Handler = Callable[..., Reply]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(self.template).replace(r"\{", "{").replace(r"\}", "}"))
        return re.compile(f"^{regex}$")


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = [(route, route.pattern()) for route in routes]

    def find(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        """The route for the request, with its path parameters."""
        for route, pattern in self._routes:
            if route.method == method:
                match = pattern.match(path)
                if match:
                    return route, match.groupdict()
        return None, {}
