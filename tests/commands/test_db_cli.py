from pathlib import Path

from click.testing import CliRunner

from cli import main
from commands.context import AppContext
from teckochecker.config import Settings, load_settings
from tests.conftest import redis_test_url


def _run(tmp_path: Path, *args: str, settings: Settings | None = None, input: str | None = None):
    app = AppContext(settings=settings, env_file=tmp_path / ".env")
    return CliRunner().invoke(main, list(args), obj=app, input=input, catch_exceptions=False)


def test_init_with_create_env_writes_keys_and_migrates(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("DATABASE_URL", "SECRET_KEY", "API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    result = _run(tmp_path, "db", "init", "--create-env")
    assert result.exit_code == 0, result.output
    env = tmp_path / ".env"
    assert env.stat().st_mode & 0o777 == 0o600
    settings = load_settings({}, env)
    assert len(settings.secret_keys) == 1 and settings.api_token and len(settings.api_token) >= 40
    assert (tmp_path / "teckochecker.db").exists()

    before = env.read_text()
    again = _run(tmp_path, "db", "init", "--create-env")
    assert again.exit_code == 0 and "left unchanged" in again.output
    assert env.read_text() == before
    forced = _run(tmp_path, "db", "init", "--create-env", "--force")
    assert forced.exit_code == 0 and env.read_text() != before


def test_commands_on_an_uninitialised_database_say_what_to_do(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    result = _run(tmp_path, "job", "list", settings=settings)
    assert result.exit_code == 1
    assert "is not initialised" in result.output and "teckochecker db init" in result.output


def test_unreachable_postgres_is_one_line_without_the_password(tmp_path: Path) -> None:
    settings = Settings(database_url="postgresql://user:hunter2@127.0.0.1:1/teckochecker")
    result = _run(tmp_path, "job", "list", settings=settings)
    assert result.exit_code == 1
    assert "Database error (postgresql://user:***@127.0.0.1:1/teckochecker)" in result.output
    assert "hunter2" not in result.output


def test_reset_asks_then_empties(cli) -> None:
    cli("secret", "add", "--name", "a", "--type", "openai", "--value", "v")
    refused = cli("db", "reset", input="n\n")
    assert refused.exit_code == 1 and "deletes ALL secrets" in refused.output
    assert "a" in cli("secret", "list").output
    assert cli("db", "reset", "--force").exit_code == 0
    assert "No secrets stored yet" in cli("secret", "list").output


def test_schema_reads_the_live_database(cli) -> None:
    result = cli("db", "schema")
    assert result.exit_code == 0
    for fragment in ("polling_jobs", "next_check_at", "ix_polling_jobs_status_next_check_at", "job_events"):
        assert fragment in result.output
    assert "keboola_secret_id → secrets(id) on delete restrict" in result.output


def test_doctor_reports_each_failure(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", redis_url="redis://127.0.0.1:1/0")
    result = _run(tmp_path, "doctor", settings=settings)
    assert result.exit_code == 1
    assert "SECRET_KEY" in result.output and "is not set" in result.output
    assert "run `teckochecker db init`" in result.output
    assert "does not answer" in result.output
    assert "check(s) failed: SECRET_KEY, Migrations, Broker" in result.output


def test_doctor_passes_on_a_good_setup_with_redis(cli) -> None:
    cli.settings = cli.settings.with_overrides(redis_url=redis_test_url(0))
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    assert f"Redis at {redis_test_url(0)} answers" in result.output
    assert "│ Mode" in result.output and "server (" in result.output
    assert "All checks passed." in result.output
