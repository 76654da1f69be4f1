"""Marshmallow schemas: the shapes the API reads and writes, documented in the OpenAPI spec.

Schemas check the shape of input (types, required fields, which alternatives were given, the lengths the
spec promises) and what the database driver could not take at all (ids beyond 32 bits, NUL bytes, lone
surrogates). The rules (batch ids, intervals, trusted Keboola hosts, secret types) stay in the domain services,
so the API and the CLI refuse exactly the same things with the same messages. Every constraint a schema checks
is also in the OpenAPI spec, so the spec and the behaviour agree.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import BasePlugin
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from marshmallow.utils import missing

from teckochecker.models import MAX_ID, JobStatus, Secret, SecretType
from teckochecker.notifications.events import NotificationKind
from teckochecker.services.export import ExportFormat
from teckochecker.services.jobs import JobOrder
from teckochecker.services.secrets import SECRET_VALUE_MAX_LENGTH, notification_events
from teckochecker.services.validation import NAME_MAX_LENGTH
from teckochecker.services.verification import Verdict

ID_RANGE = validate.Range(min=1, max=MAX_ID)
SEARCH_MAX_LENGTH = 255
EVENTS_DEFAULT_LIMIT = 50
EVENTS_MAX_LIMIT = 100
NAME_LENGTH = validate.Length(min=1, max=NAME_MAX_LENGTH)
# How a 201 documents the header that points at the new resource.
LOCATION_HEADER = {"Location": {"description": "The new resource's URL.", "schema": {"type": "string"}}}
# The C0 and C1 control characters (Unicode category Cc), NUL included. Other characters that are not
# `str.isprintable()`, such as a no-break space, are ordinary text in a search.
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
CONTROL_CHARACTER = re.compile(f"[{CONTROL_CHARACTERS}]")
WITHOUT_CONTROL_CHARACTERS = f"^[^{CONTROL_CHARACTERS}]*$"


class Text(fields.String):
    """A string the database can store. Lone surrogates cannot be encoded for the database or the vault, so
    they are refused here. `no_control_characters` is for values the domain passes straight into a query (a
    search, a secret's name): PostgreSQL refuses NUL bytes, and no stored name contains a control character.
    The spec documents it as a pattern."""

    default_error_messages = {  # noqa: RUF012 (marshmallow merges this class attribute, never mutates it)
        "encoding": "Must be valid Unicode text.",
        "control": "Must not contain control characters.",
    }

    def __init__(self, *, no_control_characters: bool = False, **kwargs: Any) -> None:
        if no_control_characters:
            kwargs["metadata"] = {"pattern": WITHOUT_CONTROL_CHARACTERS, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)
        self.no_control_characters = no_control_characters

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("encoding") from None
        if self.no_control_characters and CONTROL_CHARACTER.search(text):
            raise self.make_error("control")
        return text


class SameObject(fields.Nested):
    """Nests fields read from the parent object itself (a batch's request counts are columns of the batch)."""

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = missing) -> Any:
        return obj


def _example(value: Any, description: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"example": value}
    if description:
        metadata["description"] = description
    return metadata


class ExactlyOneOf:
    """Pairs of alternative fields of which a request must give exactly one: checked when a body is loaded,
    and documented in the spec by `ExactlyOneOfPlugin`."""

    def __init__(self, *alternatives: tuple[str, str, str]) -> None:
        self.alternatives = alternatives  # (first, second, what the pair gives)

    def problems(self, data: dict[str, Any]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for first, second, what in self.alternatives:
            given = [name for name in (first, second) if name in data]
            if len(given) != 1:
                problem = "give only one of" if given else "give one of"
                message = f"{problem} {first} or {second} ({what})"
                found |= {first: [message], second: [message]}
        return found

    def json_schema(self) -> dict[str, Any]:
        return {
            "allOf": [
                {"oneOf": [{"required": [first]}, {"required": [second]}]} for first, second, _ in self.alternatives
            ]
        }


class ExactlyOneOfPlugin(BasePlugin):
    """Adds a schema's `EXACTLY_ONE_OF` to its component in the spec, beside the fields marshmallow documents."""

    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        rule = getattr(kwargs.get("schema"), "EXACTLY_ONE_OF", None)
        return rule.json_schema() if isinstance(rule, ExactlyOneOf) else None


# --- errors -------------------------------------------------------------------------------------------


class ErrorSchema(Schema):
    """Every error the API returns, from a 401 to a 500, has this shape."""

    code = fields.Integer(required=True, metadata=_example(422, "The HTTP status code."))
    status = fields.String(required=True, metadata=_example("Unprocessable Entity", "The HTTP status name."))
    message = fields.String(
        required=True, metadata=_example("Invalid input: json.poll_interval_seconds", "What went wrong.")
    )
    errors = fields.Dict(
        metadata=_example(
            {"json": {"poll_interval_seconds": ["must be between 30 and 3600 seconds, got 5"]}},
            "Details. Invalid input: {location: {field: [messages]}}. A status conflict: {current_status: …}.",
        )
    )


# --- health and stats ---------------------------------------------------------------------------------


class ComponentHealthSchema(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(["ok", "failing", "unknown"]),
        metadata=_example("ok", "`failing` makes the whole service unhealthy; `unknown` does not."),
    )
    detail = fields.String(required=True, metadata=_example("SELECT 1 answered"))


class HealthChecksSchema(Schema):
    database = fields.Nested(ComponentHealthSchema, required=True)
    broker = fields.Nested(ComponentHealthSchema, required=True)
    workers = fields.Nested(ComponentHealthSchema, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]), metadata=_example("ok"))
    failing = fields.List(fields.String(), required=True, metadata=_example([], "The names of the failing checks."))
    checks = fields.Nested(HealthChecksSchema, required=True)


class CountsByStatusSchema(Schema):
    total = fields.Integer(required=True, metadata=_example(3))
    by_status = fields.Dict(
        keys=fields.String(), values=fields.Integer(), required=True, metadata=_example({"active": 2, "paused": 1})
    )


class RecentActivitySchema(Schema):
    checks = fields.Integer(required=True, metadata=_example(42, "Checks that found a change, last hour."))
    keboola_triggers = fields.Integer(required=True, metadata=_example(1, "Keboola jobs started, last hour."))


class StatsSchema(Schema):
    jobs = fields.Nested(CountsByStatusSchema, required=True)
    batches = fields.Nested(CountsByStatusSchema, required=True)
    secrets = fields.Integer(required=True, metadata=_example(2, "How many secrets are stored."))
    last_hour = fields.Nested(RecentActivitySchema, required=True)
    uptime_seconds = fields.Float(required=True, metadata=_example(8100.5, "Seconds since this API started."))
    started_at = fields.DateTime(required=True, metadata=_example("2026-01-01T12:00:00+00:00"))


# --- webhooks -------------------------------------------------------------------------------------------


class WebhookReceiptSchema(Schema):
    outcome = fields.String(
        required=True,
        validate=validate.OneOf(["marked_due", "replay", "ignored"]),
        metadata=_example(
            "marked_due", "`replay`: this webhook-id was seen before; `ignored`: not a batch event. Either way: 200."
        ),
    )
    event_type = fields.String(required=True, metadata=_example("batch.completed"))
    jobs_due = fields.Integer(required=True, metadata=_example(1, "Active jobs watching the batch, now due."))


# --- secrets --------------------------------------------------------------------------------------------


_EVENTS_HELP = f"Events: {', '.join(NotificationKind)}; `failed` covers every failure, `all` every event."


def _event_name() -> fields.String:
    return fields.String(validate=validate.OneOf([*NotificationKind, "all"]))


class SecretCreateSchema(Schema):
    name = Text(required=True, validate=NAME_LENGTH, metadata=_example("openai-prod", "Unique name, 1–255 characters."))
    type = Text(
        required=True,
        metadata={**_example("openai"), "enum": [member.value for member in SecretType]},
    )
    # load_only: the value goes in and is never written back, not even inside an error message.
    value = Text(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=SECRET_VALUE_MAX_LENGTH),
        metadata=_example(
            "sk-...",
            "The API key or token, a webhook signing secret (whsec_…) or an Apprise URL (notification), one line. "
            "Write-only: no response ever contains it.",
        ),
    )
    events = fields.List(
        _event_name(),
        metadata=_example(["completed", "failed"], "A notification target's events (default: all). " + _EVENTS_HELP),
    )


class SecretEventsSchema(Schema):
    events = fields.List(
        _event_name(),
        required=True,
        validate=validate.Length(min=1),
        metadata=_example(["failed", "stalled"], _EVENTS_HELP),
    )


class SecretUpdateSchema(Schema):
    value = Text(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=SECRET_VALUE_MAX_LENGTH),
        metadata=_example("sk-new...", "The new API key or token (a rotated key). Write-only."),
    )


class SecretVerifySchema(Schema):
    stack = Text(
        metadata=_example(
            "https://connection.eu-central-1.keboola.com",
            "For a Keboola token: the stack to check it on (default: the stack of a job using it, else "
            "https://connection.keboola.com). Ignored for an OpenAI key.",
        )
    )


class VerificationSchema(Schema):
    verdict = fields.Enum(
        Verdict,
        by_value=True,
        required=True,
        metadata={**_example("valid"), "description": "`invalid`: the service refused it; `unreachable`: no answer."},
    )
    valid = fields.Boolean(required=True, metadata=_example(True))
    message = fields.String(required=True, metadata=_example("OpenAI accepted the key: it can read batches at …"))


class SecretSchema(Schema):
    id = fields.Integer(required=True, metadata=_example(1))
    name = fields.String(required=True, metadata=_example("openai-prod"))
    type = fields.String(
        required=True,
        validate=validate.OneOf([member.value for member in SecretType]),
        metadata=_example("openai"),
    )
    events = fields.Method(
        "_events",
        required=True,
        allow_none=True,
        metadata={
            **_example(None),
            "type": "array",
            "items": {"type": "string"},
            "description": "A notification target's chosen events; null: every event (and for other secrets).",
        },
    )
    created_at = fields.DateTime(required=True, metadata=_example("2026-01-01T12:00:00+00:00"))
    updated_at = fields.DateTime(required=True, metadata=_example("2026-01-01T12:00:00+00:00"))

    def _events(self, secret: Secret) -> list[str] | None:
        return notification_events(secret)


# --- jobs -------------------------------------------------------------------------------------------------


class SecretReferenceSchema(Schema):
    id = fields.Integer(required=True, metadata=_example(1))
    name = fields.String(required=True, metadata=_example("openai-prod"))


class RequestCountsSchema(Schema):
    total = fields.Integer(required=True, attribute="request_total", metadata=_example(1000))
    completed = fields.Integer(required=True, attribute="request_completed", metadata=_example(990))
    failed = fields.Integer(required=True, attribute="request_failed", metadata=_example(10))


class BatchSchema(Schema):
    batch_id = fields.String(required=True, metadata=_example("batch_abc123"))
    status = fields.String(
        required=True,
        metadata=_example("in_progress", "OpenAI's batch status, `pending` before the first check, `not_found`."),
    )
    request_counts = SameObject(RequestCountsSchema, required=True)
    output_file_id = fields.String(required=True, allow_none=True, metadata=_example("file-abc"))
    error_file_id = fields.String(required=True, allow_none=True, metadata=_example(None))
    finished_at = fields.DateTime(required=True, allow_none=True, metadata=_example(None))
    updated_at = fields.DateTime(required=True, metadata=_example("2026-01-01T12:00:00+00:00"))


class JobSchema(Schema):
    """A polling job as `job show --json` prints it: its batches, its Keboola job, its check times."""

    id = fields.Integer(required=True, metadata=_example(1))
    name = fields.String(required=True, metadata=_example("My batch job"))
    status = fields.String(
        required=True, validate=validate.OneOf([member.value for member in JobStatus]), metadata=_example("active")
    )
    openai_secret = fields.Nested(SecretReferenceSchema, required=True)
    keboola_secret = fields.Nested(SecretReferenceSchema, required=True)
    notify = fields.List(
        fields.Nested(SecretReferenceSchema),
        required=True,
        attribute="notification_targets",
        metadata={"description": "The notification targets this job tells of its outcome."},
    )
    keboola_stack_url = fields.String(required=True, metadata=_example("https://connection.eu-central-1.keboola.com"))
    keboola_component_id = fields.String(required=True, metadata=_example("kds-team.app-custom-python"))
    keboola_configuration_id = fields.String(required=True, metadata=_example("123456"))
    poll_interval_seconds = fields.Integer(required=True, metadata=_example(120))
    batches = fields.List(fields.Nested(BatchSchema), required=True)
    keboola_job_id = fields.String(required=True, allow_none=True, metadata=_example(None))
    keboola_job_status = fields.String(required=True, allow_none=True, metadata=_example(None))
    last_check_at = fields.DateTime(required=True, allow_none=True, metadata=_example(None))
    next_check_at = fields.DateTime(required=True, allow_none=True, metadata=_example("2026-01-01T12:02:00+00:00"))
    created_at = fields.DateTime(required=True, metadata=_example("2026-01-01T12:00:00+00:00"))
    updated_at = fields.DateTime(required=True, metadata=_example("2026-01-01T12:00:00+00:00"))
    completed_at = fields.DateTime(required=True, allow_none=True, metadata=_example(None))
    last_error = fields.String(required=True, allow_none=True, metadata=_example(None))


class TargetReference(fields.Field):
    """A notification target by id (a whole number) or by name (text)."""

    default_error_messages = {"invalid": "Must be a target's id (a whole number) or its name (text)."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= MAX_ID:
                raise self.make_error("invalid")
            return value
        if isinstance(value, str):
            return Text(no_control_characters=True, validate=NAME_LENGTH).deserialize(value)
        raise self.make_error("invalid")


def _notify_field(default: str) -> fields.List:
    return fields.List(
        TargetReference(
            metadata={
                "oneOf": [
                    {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                    {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": NAME_MAX_LENGTH,
                        "pattern": WITHOUT_CONTROL_CHARACTERS,
                    },
                ]
            }
        ),
        metadata=_example(["team-slack"], "Notification targets (`notification` secrets), by name or id." + default),
    )


_POLL_INTERVAL_HELP = "Seconds between checks, MIN_POLL_INTERVAL–MAX_POLL_INTERVAL (30–3600 unless configured)."
_STACK_URL_HELP = "https://, on a host under keboola.com or listed in KEBOOLA_ALLOWED_HOSTS."


class JobCreateSchema(Schema):
    """Secrets may be given by id or by name; batches as one `batch_id` or a `batch_ids` list."""

    EXACTLY_ONE_OF = ExactlyOneOf(
        ("batch_id", "batch_ids", "the batches to watch"),
        ("openai_secret_id", "openai_secret", "the OpenAI secret"),
        ("keboola_secret_id", "keboola_secret", "the Keboola secret"),
    )

    name = Text(required=True, validate=NAME_LENGTH, metadata=_example("Test job", "1–255 characters."))
    batch_id = Text(metadata=_example("batch_123", "One OpenAI batch id. Give this or `batch_ids`."))
    batch_ids = fields.List(
        Text(),
        metadata=_example(["batch_123", "batch_456"], "Several batch ids (up to MAX_BATCHES_PER_JOB)."),
    )
    openai_secret_id = fields.Integer(strict=True, validate=ID_RANGE, metadata=_example(1))
    openai_secret = Text(
        no_control_characters=True, metadata=_example("openai-prod", "The OpenAI secret's name, instead of its id.")
    )
    keboola_secret_id = fields.Integer(strict=True, validate=ID_RANGE, metadata=_example(2))
    keboola_secret = Text(
        no_control_characters=True, metadata=_example("keboola-prod", "The Keboola secret's name, instead of its id.")
    )
    keboola_stack_url = Text(
        required=True, metadata=_example("https://connection.eu-central-1.keboola.com", _STACK_URL_HELP)
    )
    keboola_component_id = Text(required=True, metadata=_example("kds-team.app-custom-python"))
    keboola_configuration_id = Text(required=True, metadata=_example("123456"))
    poll_interval_seconds = fields.Integer(
        strict=True, metadata=_example(120, _POLL_INTERVAL_HELP + " Default DEFAULT_POLL_INTERVAL.")
    )
    notify = _notify_field(" Default: the targets DEFAULT_NOTIFY names.")

    @validates_schema
    def _one_of_each(self, data: dict[str, Any], **_kwargs: Any) -> None:
        problems = self.EXACTLY_ONE_OF.problems(data)
        if problems:
            raise ValidationError(problems)


class JobUpdateSchema(Schema):
    """Only the fields given change. A job that has finished or is starting its Keboola job cannot change."""

    name = Text(validate=NAME_LENGTH, metadata=_example("Renamed job", "1–255 characters."))
    poll_interval_seconds = fields.Integer(strict=True, metadata=_example(300, _POLL_INTERVAL_HELP))
    keboola_stack_url = Text(metadata=_example("https://connection.keboola.com", _STACK_URL_HELP))
    keboola_component_id = Text(metadata=_example("kds-team.app-custom-python"))
    keboola_configuration_id = Text(metadata=_example("654321"))
    notify = _notify_field(" They replace the job's targets; [] removes them all.")


class JobQuerySchema(Schema):
    status = fields.Enum(JobStatus, by_value=True, metadata={"description": "Only jobs in this status."})
    q = Text(
        no_control_characters=True,
        validate=validate.Length(max=SEARCH_MAX_LENGTH),
        metadata=_example(
            "nightly", "Only jobs whose name or one of whose batch ids contains this text (case-insensitive)."
        ),
    )
    sort = fields.Enum(
        JobOrder,
        by_value=True,
        load_default=JobOrder.CREATED,
        metadata={
            "description": "`created` (oldest first), `-created` (newest first) or `next_check` (soonest first; "
            "jobs with no next check last)."
        },
    )


DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


class JobListQuerySchema(JobQuerySchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1), metadata={"description": "Page number."})
    page_size = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
        metadata={"description": "Jobs per page."},
    )
    after = fields.String(
        validate=validate.Length(max=200),
        metadata={
            "description": "Page by cursor instead of by number: empty for the first page, then the `X-Next-Cursor` "
            "of the page before. No totals are counted and every page is equally fast, however deep."
        },
    )


class JobExportQuerySchema(JobQuerySchema):
    format = fields.Enum(
        ExportFormat, by_value=True, load_default=ExportFormat.CSV, metadata={"description": "`csv` or `json`."}
    )


class EventSchema(Schema):
    id = fields.Integer(required=True, metadata=_example(7))
    kind = fields.String(required=True, metadata=_example("paused"))
    message = fields.String(required=True, metadata=_example("Job paused"))
    created_at = fields.DateTime(required=True, metadata=_example("2026-01-01T12:00:00+00:00"))


class EventQuerySchema(Schema):
    limit = fields.Integer(
        load_default=EVENTS_DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=EVENTS_MAX_LIMIT),
        metadata={"description": "How many events to return, newest first."},
    )
    before_id = fields.Integer(
        validate=ID_RANGE,
        metadata={"description": "Only events older than this event id: pass the last id of the previous page."},
    )
