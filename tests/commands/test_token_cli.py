"""`token create|list|revoke`, and the job commands that match the new API endpoints: `job check`, `job export`,
`job list --sort`."""

import csv
import io
import json

import pytest

from teckochecker.db import make_engine, make_session_factory, session_scope
from teckochecker.services.tokens import authenticate


def test_create_prints_the_token_once_list_shows_no_token_and_revoke_removes_it(cli) -> None:
    created = cli("token", "create", "grafana", "--role", "read")
    assert created.exit_code == 0 and "shown only now" in created.output
    plaintext = created.output.strip().splitlines()[-1]
    engine = make_engine(cli.settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        assert authenticate(session, cli.settings, plaintext).role == "read"

    listed = cli("token", "list")
    assert "grafana" in listed.output and "read" in listed.output and plaintext not in listed.output
    as_json = json.loads(cli("token", "list", "--json").output)
    assert [(token["name"], token["role"]) for token in as_json] == [("grafana", "read")]

    duplicate = cli("token", "create", "grafana", "--role", "write")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    assert cli("token", "create", "x", "--role", "admin").exit_code == 2

    assert cli("token", "revoke", "grafana").output.strip() == "✓ Token 'grafana' revoked"
    with session_scope(make_session_factory(engine)) as session:
        assert authenticate(session, cli.settings, plaintext) is None
    engine.dispose()
    assert "No named tokens yet" in cli("token", "list").output
    missing = cli("token", "revoke", "grafana")
    assert missing.exit_code == 1 and "not found" in missing.output


@pytest.fixture
def two_jobs(cli):
    cli("secret", "add", "--name", "openai-prod", "--type", "openai", "--value", "sk")
    cli("secret", "add", "--name", "keboola-prod", "--type", "keboola", "--value", "kbc")
    for name, batch in (("@first", "batch_first"), ("second", "batch_second")):
        created = cli("job", "create", "--name", name, "--batch-id", batch, "--openai-secret", "openai-prod",
                      "--keboola-secret", "keboola-prod", "--keboola-stack", "https://connection.keboola.com",
                      "--component-id", "c", "--config-id", "1")  # fmt: skip
        assert created.exit_code == 0, created.output
    return cli


def test_job_check_and_the_sorted_list(two_jobs) -> None:
    cli = two_jobs
    assert cli("job", "check", "1").output.strip() == "✓ Job '@first' will be checked now"
    cli("job", "pause", "2")
    refused = cli("job", "check", "2")
    assert refused.exit_code == 1 and "only an active job can be checked" in refused.output
    newest_first = json.loads(cli("job", "list", "--sort", "-created", "--json").output)
    assert [job["name"] for job in newest_first] == ["second", "@first"]
    assert [job["name"] for job in json.loads(cli("job", "list", "--search", "batch_sec", "--json").output)] == [
        "second"
    ]


def test_job_export_writes_csv_or_json_of_a_filter(two_jobs, tmp_path) -> None:
    cli = two_jobs
    rows = list(csv.DictReader(io.StringIO(cli("job", "export").output)))
    assert [row["name"] for row in rows] == ["'@first", "second"]
    target = tmp_path / "jobs.json"
    assert cli("job", "export", "--format", "json", "--search", "batch_second", "-o", str(target)).exit_code == 0
    assert [job["name"] for job in json.loads(target.read_text())] == ["second"]
