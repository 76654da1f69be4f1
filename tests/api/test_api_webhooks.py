"""`POST /api/webhooks/openai`: refusals change nothing, a replay is acknowledged and ignored, a batch event makes
the jobs that watch the batch due now, and 50 concurrent deliveries of one event act once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from teckochecker.config import Settings
from teckochecker.db import utcnow
from teckochecker.engine.wakeups import DueListener
from teckochecker.models import PollingJob, WebhookDelivery
from teckochecker.services.jobs import JobDraft, create_job, pause_job
from teckochecker.services.secrets import add_secret
from teckochecker.services.webhooks import MAX_BODY_BYTES, forget_old_deliveries
from teckochecker.services.webhooks import status as webhook_status
from teckochecker.vault import Vault
from tests.webhook_signing import batch_event, new_signing_secret, signed

URL = "/api/webhooks/openai"
FAR = timedelta(hours=1)


def _job(session: Session, settings: Settings, vault: Vault, batch_ids: list[str], name: str = "watcher") -> int:
    if session.scalar(select(func.count()).where(PollingJob.id > 0)) == 0:
        add_secret(session, vault, name="openai", type="openai", value="sk-webhook-test-key-000")
        add_secret(session, vault, name="keboola", type="keboola", value="123-456-webhooktesttoken")
    draft = JobDraft(name, batch_ids, "openai", "keboola", "https://connection.keboola.com", "kds-team.app", "1", 3600)
    job = create_job(session, settings, draft)
    # Checked a moment ago: the next poll is an hour away.
    job.next_check_at = utcnow() + FAR
    session.commit()
    return job.id


def _next_check(session: Session, job_id: int):
    session.expire_all()
    return session.get(PollingJob, job_id).next_check_at


def _post(client: FlaskClient, delivery: tuple[bytes, dict[str, str]]):
    body, headers = delivery
    return client.post(URL, data=body, headers=headers)


def _deliveries(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(WebhookDelivery))


def test_without_a_signing_secret_the_endpoint_does_not_exist(anonymous: FlaskClient) -> None:
    body, headers = signed(new_signing_secret(), batch_event("batch_x"))
    response = anonymous.post(URL, data=body, headers=headers)
    assert response.status_code == 404 and response.json["code"] == 404


def test_a_batch_event_makes_the_watching_active_jobs_due_now_and_a_replay_changes_nothing(
    anonymous: FlaskClient, session: Session, settings: Settings, vault: Vault, signing_secret: str
) -> None:
    watching = _job(session, settings, vault, ["batch_done", "batch_other"])
    paused = _job(session, settings, vault, ["batch_done"], name="paused")
    pause_job(session, session.get(PollingJob, paused))
    unrelated = _job(session, settings, vault, ["batch_elsewhere"], name="unrelated")
    session.commit()
    body, headers = signed(signing_secret, batch_event("batch_done"))

    # No bearer token: the signature is the credential.
    response = anonymous.post(URL, data=body, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json == {"outcome": "marked_due", "event_type": "batch.completed", "jobs_due": 1}
    assert _next_check(session, watching) <= utcnow()
    assert _next_check(session, paused) is None
    assert _next_check(session, unrelated) > utcnow() + FAR / 2

    # The same delivery again (OpenAI retries, or an attacker replays it): acknowledged, nothing done.
    session.get(PollingJob, watching).next_check_at = utcnow() + FAR
    session.commit()
    again = anonymous.post(URL, data=body, headers=headers)
    assert again.status_code == 200 and again.json["outcome"] == "replay"
    assert _next_check(session, watching) > utcnow() + FAR / 2
    assert _deliveries(session) == 1


def test_unknown_batches_and_other_event_types_are_acknowledged_and_ignored(
    anonymous: FlaskClient, session: Session, settings: Settings, vault: Vault, signing_secret: str
) -> None:
    job = _job(session, settings, vault, ["batch_mine"])
    unknown = _post(anonymous, signed(signing_secret, batch_event("batch_nobody_watches")))
    assert unknown.status_code == 200 and unknown.json == {
        "outcome": "marked_due", "event_type": "batch.completed", "jobs_due": 0
    }  # fmt: skip
    other = _post(anonymous, signed(signing_secret, {**batch_event("batch_mine"), "type": "response.completed"}))
    assert other.status_code == 200 and other.json["outcome"] == "ignored"
    assert _next_check(session, job) > utcnow() + FAR / 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_only_a_first_delivery_that_makes_jobs_due_wakes_the_dispatcher(
    anonymous: FlaskClient, engine: Engine, session: Session, settings: Settings, vault: Vault, signing_secret: str
) -> None:
    """On PostgreSQL (SQLite announces nothing: beat claims on its tick)."""
    listener = DueListener.for_engine(engine)
    assert listener is not None
    try:
        _job(session, settings, vault, ["batch_watched"])
        listener.wait(0)  # listening from here on
        assert _post(anonymous, signed(signing_secret, batch_event("batch_nobody_watches"))).status_code == 200
        assert listener.wait(0.5) is False, "no job became due"

        delivery = signed(signing_secret, batch_event("batch_watched"))
        assert _post(anonymous, delivery).json["jobs_due"] == 1
        assert listener.wait(10) is True, "the job is due now: beat should claim it without waiting for its tick"
        assert _post(anonymous, delivery).json["outcome"] == "replay"
        assert listener.wait(0.5) is False, "a replay changes nothing and wakes nobody"
    finally:
        listener.close()


@pytest.mark.parametrize(
    "tamper",
    ["bad signature", "stale timestamp", "missing header", "unknown secret", "altered body", "garbage signature"],
)
def test_refusals_answer_400_and_change_nothing(
    tamper: str, anonymous: FlaskClient, session: Session, settings: Settings, vault: Vault, signing_secret: str
) -> None:
    job = _job(session, settings, vault, ["batch_target"])
    event = batch_event("batch_target")
    secret = new_signing_secret() if tamper == "unknown secret" else signing_secret
    body, headers = signed(secret, event, sent_at=utcnow().timestamp() - 600 if tamper == "stale timestamp" else None)
    if tamper == "bad signature":
        headers["webhook-signature"] = "v1," + "A" * 43 + "="
    elif tamper == "missing header":
        del headers["webhook-timestamp"]
    elif tamper == "altered body":
        body = body.replace(b"batch_target", b"batch_targex")
    elif tamper == "garbage signature":
        headers["webhook-signature"] = "not-a-signature"
    response = anonymous.post(URL, data=body, headers=headers)
    assert response.status_code == 400, response.json
    assert set(response.json) == {"code", "status", "message"} and "refused" in response.json["message"]
    assert _next_check(session, job) > utcnow() + FAR / 2
    assert _deliveries(session) == 0


def test_bodies_over_64_kb_are_refused_unread_or_while_read(
    anonymous: FlaskClient, live_server: str, session: Session, signing_secret: str
) -> None:
    event = {**batch_event("batch_big"), "padding": "x" * MAX_BODY_BYTES}
    body, headers = signed(signing_secret, event)
    announced = anonymous.post(URL, data=body, headers=headers)
    assert announced.status_code == 413 and announced.json["code"] == 413

    def chunks():
        yield body[: len(body) // 2]
        yield body[len(body) // 2 :]

    # Over a real socket, without Content-Length: the limit holds while the body is read.
    chunked = requests.post(live_server + URL, data=chunks(), headers=headers, timeout=30)
    assert chunked.status_code == 413 and chunked.json()["code"] == 413
    assert _deliveries(session) == 0


def test_every_stored_signing_secret_is_tried(
    anonymous: FlaskClient, session: Session, settings: Settings, vault: Vault, signing_secret: str
) -> None:
    rotated = new_signing_secret()
    add_secret(session, vault, name="openai-webhook-new", type="openai_webhook", value=rotated)
    job = _job(session, settings, vault, ["batch_rotated"])
    response = _post(anonymous, signed(rotated, batch_event("batch_rotated")))
    assert response.status_code == 200 and response.json["jobs_due"] == 1
    assert _next_check(session, job) <= utcnow()


def test_fifty_concurrent_deliveries_of_one_event_act_once(
    live_server: str, session: Session, settings: Settings, vault: Vault, signing_secret: str
) -> None:
    job = _job(session, settings, vault, ["batch_stampede"])
    body, headers = signed(signing_secret, batch_event("batch_stampede"))
    outcomes: list[str] = []
    start = threading.Barrier(50)

    def deliver() -> None:
        start.wait()
        response = requests.post(live_server + URL, data=body, headers=headers, timeout=30)
        outcomes.append(f"{response.status_code} {response.json()['outcome']}")

    threads = [threading.Thread(target=deliver) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(outcomes)) == ["200 marked_due", "200 replay"]
    assert outcomes.count("200 marked_due") == 1
    assert _deliveries(session) == 1
    assert _next_check(session, job) <= utcnow()


def test_ids_are_forgotten_after_a_day_but_the_newest_stays_for_webhook_info(
    anonymous: FlaskClient, session: Session, signing_secret: str
) -> None:
    for batch in ("batch_old", "batch_new"):
        assert _post(anonymous, signed(signing_secret, batch_event(batch))).status_code == 200
    session.expire_all()
    newest = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.received_at.desc())).first()
    assert forget_old_deliveries(session, utcnow()) == 0
    assert forget_old_deliveries(session, utcnow() + timedelta(hours=25)) == 1
    assert session.scalars(select(WebhookDelivery.webhook_id)).all() == [newest.webhook_id]
    assert webhook_status(session).last_received_at == newest.received_at
