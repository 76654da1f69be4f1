"""Click parameter types for what a person types on the command line."""

from __future__ import annotations

from typing import Any

import click

from teckochecker.errors import NotFoundError
from teckochecker.services.validation import shortened, whole_number


class JobIdType(click.ParamType):
    """A job id. A whole number too long to be any job's id is a job that does not exist (one line, exit 1,
    as for any other missing job); anything else is a usage error that echoes the value shortened."""

    name = "job_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        number = whole_number(text)
        if number is not None:
            return number
        if text.isascii() and text.isdigit():
            raise NotFoundError(f"Job {shortened(text)} not found")
        self.fail(f"{shortened(text)!r} is not a job id (a whole number)", param, ctx)


JOB_ID = JobIdType()
