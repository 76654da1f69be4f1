"""How a call to OpenAI or Keboola failed, split by what the caller should do next.

No message built here ever holds a key or token: callers log and store these messages as they are.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A call to an outside service failed.

    `service` names it ("OpenAI", "Keboola"); `status` is the HTTP status when there was an answer;
    `code` and `message` are the service's own (`invalid_api_key`, `batch_not_found`, …).
    """

    def __init__(self, service: str, message: str, *, status: int | None = None, code: str | None = None) -> None:
        self.service = service
        self.message = message
        self.status = status
        self.code = code
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.status is None:
            return f"{self.service}: {self.message}"
        code = f" ({self.code})" if self.code else ""
        return f"{self.service} answered HTTP {self.status}{code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles exceptions; the default reduce would call __init__ with the formatted text only.
        return (_rebuild, (type(self), self.__dict__.copy()))


class TransientError(ServiceError):
    """Worth trying again later: no answer, a timeout, 408, 409, 429 or a 5xx.

    `retry_after` is the wait in seconds the service asked for (Retry-After), or None.
    """

    def __init__(
        self,
        service: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(service, message, status=status, code=code)


class PermanentError(ServiceError):
    """Trying again will not help until a person changes something (a key, an id, a URL)."""


def _rebuild(cls: type[ServiceError], state: dict[str, Any]) -> ServiceError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._describe())
    return error
