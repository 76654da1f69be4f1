"""Reads OpenAI Batch objects (`GET /batches/{id}`) with one API key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from teckochecker.clients.errors import TransientError
from teckochecker.clients.http import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, request_json
from teckochecker.config import DEFAULT_OPENAI_BASE_URL
from teckochecker.redaction import REDACTED, Redactor, Redacts

SERVICE = "OpenAI"
# The most batches one page of `GET /batches` returns.
LIST_PAGE_LIMIT = 100
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
# OpenAI echoes a masked part of a rejected key ("Incorrect API key provided: sk-ab***xyz."): even masked,
# it does not belong in our logs.
# What we store of a batch must fit our columns: a status word, and ids made of id characters.
_STATUS = re.compile(r"^[a-z_]{1,32}$")
_FILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ECHOED_KEY = re.compile(r"(API key provided: )[\w*.-]+?(?=\.?(\s|$))")


@dataclass(frozen=True)
class RequestCounts:
    total: int
    completed: int
    failed: int


@dataclass(frozen=True)
class BatchError:
    code: str | None
    message: str | None
    param: str | None
    line: int | None


@dataclass(frozen=True)
class Batch:
    """The fields of OpenAI's Batch object that TeckoChecker uses; timestamps are Unix seconds."""

    id: str
    status: str
    request_counts: RequestCounts
    output_file_id: str | None
    error_file_id: str | None
    errors: tuple[BatchError, ...]
    created_at: int | None
    in_progress_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    expires_at: int | None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class BatchPage:
    batches: list[Batch]
    has_more: bool

    @property
    def last_id(self) -> str | None:
        return self.batches[-1].id if self.batches else None


class OpenAIBatchClient:
    """One API key against one OpenAI base URL. Cheap to create; connections are pooled per thread.

    Error messages never hold the key, nor anything `redactor` knows (by default: key shapes only).
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_OPENAI_BASE_URL,
        *,
        redactor: Redacts | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._api_key = api_key
        self._redactor = redactor or Redactor()
        self.base_url = base_url.rstrip("/")
        self.timeouts = (connect_timeout, read_timeout)

    def __repr__(self) -> str:
        return f"OpenAIBatchClient(base_url={self.base_url!r}, api_key=<hidden>)"

    def get_batch(self, batch_id: str) -> Batch:
        """The batch as OpenAI reports it now. A batch the key cannot see is a PermanentError with status 404."""
        body = self._get(f"/batches/{quote(batch_id, safe='')}")
        return parse_batch(body)

    def list_batches(self, *, limit: int = LIST_PAGE_LIMIT, after: str | None = None) -> BatchPage:
        """One page of the key's batches, newest first, starting just after the batch `after`."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        body = self._get("/batches", params=params)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise TransientError(SERVICE, "answered a batch list with something that is not a list")
        batches = [parse_batch(item) for item in data]
        return BatchPage(batches, has_more=body.get("has_more") is True and bool(batches))

    def verify_key(self) -> None:
        """Raise unless the key may read batches: the cheapest call that proves what TeckoChecker needs."""
        self._get("/batches", params={"limit": 1})

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return request_json(
            "GET",
            self.base_url + path,
            service=SERVICE,
            redact=lambda text: self._redactor.redact(text, self._api_key),
            headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"},
            timeouts=self.timeouts,
            read_error=read_openai_error,
            params=params,
        )


def read_openai_error(body: Any) -> tuple[str | None, str | None]:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    message = error.get("message")
    code = error.get("code")
    message = _ECHOED_KEY.sub(rf"\g<1>{REDACTED}", message) if isinstance(message, str) else None
    return message, code if isinstance(code, str) else None


def parse_batch(body: Any) -> Batch:
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("id"), str)
        or not isinstance(body.get("status"), str)
        or not _STATUS.match(body["status"])
        or not all(_file_id(body.get(name)) for name in ("output_file_id", "error_file_id"))
    ):
        raise TransientError(SERVICE, "answered with something that is not a batch object")
    counts = body.get("request_counts")
    counts = counts if isinstance(counts, dict) else {}
    errors = body.get("errors")
    errors = errors.get("data") if isinstance(errors, dict) else None
    return Batch(
        id=body["id"],
        status=body["status"],
        request_counts=RequestCounts(
            total=_integer(counts.get("total")) or 0,
            completed=_integer(counts.get("completed")) or 0,
            failed=_integer(counts.get("failed")) or 0,
        ),
        output_file_id=body.get("output_file_id"),
        error_file_id=body.get("error_file_id"),
        errors=tuple(
            BatchError(
                code=error.get("code"),
                message=error.get("message"),
                param=error.get("param"),
                line=_integer(error.get("line")),
            )
            for error in errors or ()
            if isinstance(error, dict)
        ),
        created_at=_integer(body.get("created_at")),
        in_progress_at=_integer(body.get("in_progress_at")),
        finalizing_at=_integer(body.get("finalizing_at")),
        completed_at=_integer(body.get("completed_at")),
        failed_at=_integer(body.get("failed_at")),
        expired_at=_integer(body.get("expired_at")),
        cancelling_at=_integer(body.get("cancelling_at")),
        cancelled_at=_integer(body.get("cancelled_at")),
        expires_at=_integer(body.get("expires_at")),
    )


def _file_id(value: Any) -> bool:
    return value is None or (isinstance(value, str) and _FILE_ID.match(value) is not None)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
