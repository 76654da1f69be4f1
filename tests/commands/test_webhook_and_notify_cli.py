"""`webhook info`, `notify test`, notification targets with their events, and jobs that subscribe to them."""

from __future__ import annotations

import json

from teckochecker.config import Settings
from tests.conftest import CliHarness
from tests.receivers import json_receiver
from tests.webhook_signing import new_signing_secret


def test_webhook_info_says_what_to_register_and_what_is_missing(cli: CliHarness, settings: Settings) -> None:
    bare = cli("webhook", "info")
    assert bare.exit_code == 0
    assert "PUBLIC_URL is not set" in bare.output and "none stored" in bare.output
    assert "batch.completed, batch.failed, batch.cancelled, batch.expired" in bare.output
    assert "none received yet" in bare.output

    secret = new_signing_secret()
    assert (
        cli("secret", "add", "--name", "openai-webhook", "--type", "openai_webhook", "--value", secret).exit_code == 0
    )
    configured = CliHarness(settings.with_overrides(public_url="https://tc.example.com"), cli.env_file)
    info = configured("webhook", "info")
    assert "https://tc.example.com/api/webhooks/openai" in info.output
    assert "Signing secrets: openai-webhook" in info.output and secret not in info.output


def test_signing_secrets_and_notification_urls_are_checked_when_stored(cli: CliHarness) -> None:
    not_whsec = cli("secret", "add", "--name", "w", "--type", "openai_webhook", "--value", "sk-not-a-signing-secret")
    assert not_whsec.exit_code == 1 and "starts with whsec_" in not_whsec.output
    not_apprise = cli("secret", "add", "--name", "n", "--type", "notification", "--value", "https://hooks.example/x")
    assert not_apprise.exit_code == 1 and "not an Apprise URL" in not_apprise.output
    assert "hooks.example" not in not_apprise.output
    events = cli("secret", "add", "--name", "n", "--type", "notification", "--value", "json://127.0.0.1:9/x",
                 "--events", "completed,bogus")  # fmt: skip
    assert events.exit_code == 1 and "unknown event 'bogus'" in events.output

    added = cli("secret", "add", "--name", "ops", "--type", "notification", "--value", "json://127.0.0.1:9/ops-token",
                "--events", "failed,stalled")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert json.loads(cli("secret", "list", "--json").output)[0]["events"] == ["failed", "stalled"]
    assert cli("secret", "update", "ops", "--events", "all").exit_code == 0
    assert json.loads(cli("secret", "list", "--json").output)[0]["events"] is None
    verified = cli("secret", "verify", "ops")
    assert verified.exit_code == 0 and "Apprise can send to it (JSON)" in verified.output
    assert "ops-token" not in verified.output


def test_notify_test_reports_success_or_the_redacted_error(cli: CliHarness) -> None:
    with json_receiver(**{"/broken-s3cr3t": 10}) as receiver:
        cli("secret", "add", "--name", "team", "--type", "notification", "--value", receiver.url("/team-s3cr3t"))
        cli("secret", "add", "--name", "broken", "--type", "notification", "--value", receiver.url("/broken-s3cr3t"))
        sent = cli("notify", "test", "team")
        assert sent.exit_code == 0 and "Test message sent to 'team' (JSON)" in sent.output
        (payload,) = receiver.delivered("/team-s3cr3t")
        assert payload["title"] == "TeckoChecker test notification"
        failed = cli("notify", "test", "broken")
        assert failed.exit_code == 1 and "Could not notify 'broken' (JSON)" in failed.output and "500" in failed.output
        assert "s3cr3t" not in failed.output
    assert cli("notify", "test", "nobody").exit_code == 1


def test_jobs_subscribe_with_notify_and_show_their_targets(cli: CliHarness) -> None:
    cli("secret", "add", "--name", "openai", "--type", "openai", "--value", "sk-cli-notify-000")
    cli("secret", "add", "--name", "keboola", "--type", "keboola", "--value", "kbc-cli-notify")
    cli("secret", "add", "--name", "team", "--type", "notification", "--value", "json://127.0.0.1:9/team")
    cli("secret", "add", "--name", "ops", "--type", "notification", "--value", "json://127.0.0.1:9/ops")
    created = cli("job", "create", "--name", "Subscribed", "--batch-id", "batch_n", "--openai-secret", "openai",
                  "--keboola-secret", "keboola", "--keboola-stack", "https://connection.keboola.com",
                  "--component-id", "c", "--config-id", "1", "--notify", "team", "--notify", "ops")  # fmt: skip
    assert created.exit_code == 0, created.output
    shown = json.loads(cli("job", "show", "1", "--json").output)
    assert [target["name"] for target in shown["notify"]] == ["team", "ops"]
    assert "team, ops" in cli("job", "show", "1").output
    refused = cli("secret", "delete", "ops", "--force")
    assert refused.exit_code == 1 and "used by 1 job(s)" in refused.output
    assert cli("job", "update", "1", "--notify", "ops").exit_code == 0
    assert [t["name"] for t in json.loads(cli("job", "show", "1", "--json").output)["notify"]] == ["ops"]
    assert cli("job", "update", "1", "--no-notify").exit_code == 0
    assert json.loads(cli("job", "show", "1", "--json").output)["notify"] == []
    assert cli("secret", "delete", "ops", "--force").exit_code == 0
