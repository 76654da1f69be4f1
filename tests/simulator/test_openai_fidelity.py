"""The simulator speaks OpenAI exactly as the official `openai` package understands it.

Each Batch is validated strictly against `openai.types.Batch`: every field the type declares must be
present (OpenAI sends null rather than leaving a key out) and no field may be unknown to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests
from openai.types import Batch
from pydantic import BaseModel

from teckochecker.simulator import RunningSimulator

STATUSES = ("validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")


@pytest.fixture
def sdk(simulator: RunningSimulator, api_key: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(api_key=api_key, base_url=simulator.openai_base_url, max_retries=0, timeout=5)
    yield client
    client.close()


def assert_exactly_the_declared_fields(model: BaseModel, where: str = "batch") -> None:
    declared = set(type(model).model_fields)
    assert declared - model.model_fields_set == set(), f"{where}: fields missing from the response"
    assert not model.model_extra, f"{where}: fields unknown to the openai package: {sorted(model.model_extra or {})}"
    for name in declared:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, BaseModel):
                assert_exactly_the_declared_fields(item, f"{where}.{name}")


def strict_batch(data: dict[str, Any]) -> Batch:
    batch = Batch.model_validate(data, strict=True)
    assert_exactly_the_declared_fields(batch)
    return batch


@pytest.mark.parametrize("status", STATUSES)
def test_every_status_parses_strictly_as_an_openai_batch(
    simulator: RunningSimulator, api_key: str, sdk: openai.OpenAI, status: str
) -> None:
    simulator.control.create_batch(
        batch_id=f"batch_{status}",
        final_status=status,
        duration=0,
        failed_requests=2,
        metadata={"customer": "acme"},
    )

    raw = requests.get(
        f"{simulator.openai_base_url}/batches/batch_{status}",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=5,
    ).json()
    batch = strict_batch(raw)
    retrieved = sdk.batches.retrieve(f"batch_{status}")

    assert batch.status == status
    assert retrieved.model_dump() == batch.model_dump()
    assert batch.metadata == {"customer": "acme"}


def test_list_pages_through_the_sdk_cursor(simulator: RunningSimulator, api_key: str, sdk: openai.OpenAI) -> None:
    for n in range(5):
        simulator.control.create_batch(batch_id=f"batch_page{n}", duration=0)

    first_page = sdk.batches.list(limit=2)
    everything = [batch.id for batch in sdk.batches.list(limit=2)]
    raw = requests.get(
        f"{simulator.openai_base_url}/batches",
        params={"limit": 2},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=5,
    ).json()

    assert [batch.id for batch in first_page.data] == ["batch_page4", "batch_page3"]
    assert first_page.has_more is True
    assert everything == [f"batch_page{n}" for n in reversed(range(5))]
    assert set(raw) == {"object", "data", "first_id", "last_id", "has_more"}
    for item in raw["data"]:
        strict_batch(item)


def test_create_and_cancel_through_the_sdk(sdk: openai.OpenAI) -> None:
    created = sdk.batches.create(
        completion_window="24h", endpoint="/v1/chat/completions", input_file_id="file-abc", metadata={"k": "v"}
    )
    cancelled = sdk.batches.cancel(created.id)

    assert created.status == "validating" and created.id.startswith("batch_")
    assert cancelled.status == "cancelling"
    strict_batch(cancelled.model_dump())
    assert sdk.batches.retrieve(created.id).cancelling_at is not None


def test_errors_reach_the_sdk_as_openais_typed_errors(simulator: RunningSimulator, sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as wrong_key:
        sdk.with_options(api_key="sk-wrong-key-000000000000000000").batches.retrieve("batch_x")
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.batches.retrieve("batch_missing")
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.batches.create(completion_window="1h", endpoint="/v1/chat/completions", input_file_id="file-a")  # type: ignore[arg-type]
    simulator.control.add_fault("/v1/batches", status=429, retry_after=1)
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.batches.list()

    assert (wrong_key.value.status_code, wrong_key.value.code) == (401, "invalid_api_key")
    assert (missing.value.status_code, missing.value.code) == (404, "batch_not_found")
    assert (bad.value.status_code, bad.value.param) == (400, "completion_window")
    assert (limited.value.code, limited.value.response.headers["retry-after"]) == ("rate_limit_exceeded", "1")


def test_the_sdks_own_retries_honour_retry_after_ms(simulator: RunningSimulator, sdk: openai.OpenAI) -> None:
    simulator.control.create_batch(batch_id="batch_r", duration=0)
    simulator.control.add_fault("/v1/batches/*", status=429, retry_after_ms=300, count=1)

    started = time.monotonic()
    batch = sdk.with_options(max_retries=2).batches.retrieve("batch_r")

    assert batch.status == "completed"
    assert time.monotonic() - started >= 0.3
    assert simulator.control.counters()["total"] == 2


def test_models_list_for_key_checks(sdk: openai.OpenAI) -> None:
    models = sdk.models.list()

    assert [model.object for model in models.data] == ["model"] * len(models.data)
    assert models.data and all(model.id and model.owned_by for model in models.data)
