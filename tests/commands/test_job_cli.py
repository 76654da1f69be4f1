import json

import pytest

GUIDE_JOB = [
    "job", "create",
    "--name", "Batch processing job",
    "--batch-id", "batch_abc123",
    "--openai-secret", "openai-prod",
    "--keboola-secret", "keboola-prod",
    "--keboola-stack", "https://connection.eu-central-1.keboola.com",
    "--component-id", "kds-team.app-custom-python",
    "--config-id", "123456",
    "--poll-interval", "120",
]  # fmt: skip


@pytest.fixture
def with_secrets(cli):
    cli("secret", "add", "--name", "openai-prod", "--type", "openai", "--value", "sk")
    cli("secret", "add", "--name", "keboola-prod", "--type", "keboola", "--value", "kbc")
    return cli


def _replace(arguments: list[str], flag: str, value: str) -> list[str]:
    changed = list(arguments)
    changed[changed.index(flag) + 1] = value
    return changed


def test_the_guides_create_show_pause_resume_delete(with_secrets) -> None:
    cli = with_secrets
    created = cli(*GUIDE_JOB)
    assert created.exit_code == 0
    assert created.output.strip() == "✓ Polling job 'Batch processing job' created successfully (ID: 1)"

    shown = cli("job", "show", "1")
    assert shown.exit_code == 0
    for fragment in ("Polling Job Details", "│ Status", "🟢 active", "batch_abc123", "120 seconds", "Recent Events"):
        assert fragment in shown.output

    assert cli("job", "pause", "1").output.strip() == "✓ Job 'Batch processing job' has been paused"
    assert "paused" in cli("job", "show", "1").output
    assert cli("job", "resume", "1").output.strip() == "✓ Job 'Batch processing job' has been resumed"
    assert cli("job", "delete", "1", "--force").output.strip() == "✓ Job deleted successfully"
    gone = cli("job", "show", "1")
    assert gone.exit_code == 1 and "Job 1 not found" in gone.output


def test_several_batches_and_json(with_secrets) -> None:
    cli = with_secrets
    arguments = [*GUIDE_JOB, "--batch-id", "batch_def456", "--batch-id", "batch_ghi789"]
    assert cli(*arguments).exit_code == 0
    job = json.loads(cli("job", "show", "1", "--json").output)
    assert [b["batch_id"] for b in job["batches"]] == ["batch_abc123", "batch_def456", "batch_ghi789"]
    assert job["openai_secret"] == {"id": 1, "name": "openai-prod"}
    assert job["recent_events"][0]["kind"] == "created"
    listed = json.loads(cli("job", "list", "--json").output)
    assert [j["id"] for j in listed] == [1]


def test_list_with_status_filter(with_secrets) -> None:
    cli = with_secrets
    cli(*GUIDE_JOB)
    cli(*_replace(GUIDE_JOB, "--name", "Second job"))
    cli("job", "pause", "2")
    all_jobs = cli("job", "list").output
    assert "Batch processing job" in all_jobs and "Second job" in all_jobs
    active = cli("job", "list", "--status", "active").output
    assert "Batch processing job" in active and "Second job" not in active
    assert "No polling jobs with status completed." in cli("job", "list", "--status", "completed").output


def test_update_refuses_a_stack_url_that_would_send_the_token_elsewhere(with_secrets) -> None:
    cli = with_secrets
    cli(*GUIDE_JOB)
    result = cli("job", "update", "1", "--keboola-stack", "https://evil.com\\.keboola.com")
    assert result.exit_code == 1 and "keboola_stack_url" in result.output and "backslashes" in result.output
    job = json.loads(cli("job", "show", "1", "--json").output)
    assert job["keboola_stack_url"] == "https://connection.eu-central-1.keboola.com"


def test_update(with_secrets) -> None:
    cli = with_secrets
    cli(*GUIDE_JOB)
    result = cli("job", "update", "1", "--name", "Renamed", "--poll-interval", "300", "--config-id", "777")
    assert result.exit_code == 0 and "Job 'Renamed' has been updated" in result.output
    job = json.loads(cli("job", "show", "1", "--json").output)
    assert (job["name"], job["poll_interval_seconds"], job["keboola_configuration_id"]) == ("Renamed", 300, "777")
    assert cli("job", "update", "1").exit_code == 1


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--openai-secret", "missing", "openai_secret: secret 'missing' does not exist"),
        ("--openai-secret", "keboola-prod", "is a keboola secret, but a openai secret is needed"),
        ("--poll-interval", "10", "poll_interval_seconds: must be between 30 and 3600 seconds, got 10"),
        ("--batch-id", "abc123", "'abc123' is not an OpenAI batch id"),
        ("--keboola-stack", "http://connection.keboola.com", "must use https"),
        ("--keboola-stack", "https://evil.com\\.keboola.com", "must not contain spaces, backslashes"),
        ("--keboola-stack", "https://a b.keboola.com", "must not contain spaces, backslashes"),
        ("--name", "x" * 300, "at most 255 characters"),
    ],
)
def test_create_errors_exit_1_and_name_the_field(with_secrets, flag, value, message) -> None:
    result = with_secrets(*_replace(GUIDE_JOB, flag, value))
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "No polling jobs" in with_secrets("job", "list").output


def test_duplicate_batch_ids_are_refused(with_secrets) -> None:
    result = with_secrets(*GUIDE_JOB, "--batch-id", "batch_abc123")
    assert result.exit_code == 1 and "listed twice" in result.output


def test_state_errors(with_secrets) -> None:
    cli = with_secrets
    cli(*GUIDE_JOB)
    assert cli("job", "resume", "1").exit_code == 1
    cli("job", "pause", "1")
    again = cli("job", "pause", "1")
    assert again.exit_code == 1 and "only an active job can be paused" in again.output
    assert cli("job", "pause", "99").exit_code == 1
    assert cli("job", "pause", "not-a-number").exit_code == 2


def test_delete_asks_first(with_secrets) -> None:
    cli = with_secrets
    cli(*GUIDE_JOB)
    refused = cli("job", "delete", "1", input="n\n")
    assert refused.exit_code == 1 and "Are you sure you want to delete job 'Batch processing job'" in refused.output
    assert cli("job", "show", "1").exit_code == 0


def test_retry_re_arms_a_failed_trigger(with_secrets, engine) -> None:
    from sqlalchemy import update

    from teckochecker.models import JobBatch, PollingJob

    cli = with_secrets
    cli(*GUIDE_JOB)
    refused = cli("job", "retry", "1")
    assert refused.exit_code == 1 and "only a failed job can be retried" in refused.output
    with engine.begin() as connection:
        connection.execute(update(JobBatch).values(status="completed"))
        connection.execute(
            update(PollingJob).values(
                status="failed", keboola_job_id="123", last_error="Keboola job 123 ended in error"
            )
        )
    result = cli("job", "retry", "1")
    assert result.exit_code == 0 and "will start its Keboola job again" in result.output
    job = json.loads(cli("job", "show", "1", "--json").output)
    assert job["status"] == "triggering" and job["keboola_job_id"] is None and job["last_error"] is None


@pytest.mark.parametrize("job_id", [str(2**31), str(2**63), "9" * 30])
@pytest.mark.parametrize(
    "command",
    [("show",), ("delete", "--force"), ("pause",), ("resume",), ("retry",), ("watch",), ("update", "--name", "x")],
)
def test_ids_beyond_the_database_range_are_simply_not_found(with_secrets, job_id, command) -> None:
    result = with_secrets("job", command[0], job_id, *command[1:])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: Job {job_id} not found"


@pytest.mark.parametrize("command", [("show",), ("check",), ("watch",), ("delete", "--force")])
def test_an_id_of_thousands_of_digits_is_not_found_in_one_short_line(with_secrets, command) -> None:
    # Python's int() refuses over 4,300 digits: this was a usage error that echoed all 5,000.
    result = with_secrets("job", command[0], "9" * 5000, *command[1:])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: Job {'9' * 59}… (5000 characters) not found"


@pytest.mark.parametrize("job_id", ["abc", "²", "1.5", "x" * 500])
def test_an_id_that_is_not_a_whole_number_is_a_usage_error_that_echoes_it_shortened(with_secrets, job_id) -> None:
    result = with_secrets("job", "show", job_id)
    assert result.exit_code == 2
    assert "is not a job id (a whole number)" in result.output
    assert len(result.output.splitlines()[-1]) < 150


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--openai-secret", str(2**63), f"openai_secret: secret {2**63} does not exist"),
        ("--openai-secret", "9" * 5000, "openai_secret: secret '999"),
        ("--keboola-secret", "9" * 5000, "keboola_secret: secret '999"),
        ("--openai-secret", "²", "openai_secret: secret '²' does not exist"),
        ("--notify", "9" * 5000, "notify: secret '999"),
    ],
)
def test_a_secret_no_row_can_be_does_not_exist(with_secrets, flag, value, message) -> None:
    arguments = [*GUIDE_JOB, flag, value] if flag == "--notify" else _replace(GUIDE_JOB, flag, value)
    result = with_secrets(*arguments)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {message}") and "does not exist" in result.output
    assert len(result.output) < 200
