import json

from teckochecker.vault import Vault, generate_key


def test_add_list_delete(cli) -> None:
    result = cli("secret", "add", "--name", "openai-prod", "--type", "openai", "--value", "sk-abc")
    assert result.exit_code == 0
    assert "✓ Secret 'openai-prod' added successfully (ID: " in result.output
    listing = cli("secret", "list")
    assert "Stored Secrets" in listing.output and "openai-prod" in listing.output
    assert "sk-abc" not in listing.output
    assert "│ ID │ Name" in listing.output
    deleted = cli("secret", "delete", "openai-prod", "--force")
    assert deleted.exit_code == 0
    assert "No secrets stored yet" in cli("secret", "list").output


def test_value_from_standard_input_is_stripped(cli) -> None:
    assert cli("secret", "add", "--name", "k", "--type", "keboola", input="  kbc-token-1\n").exit_code == 0
    rows = json.loads(cli("secret", "list", "--json").output)
    assert rows[0]["name"] == "k" and rows[0]["type"] == "keboola"
    assert "value" not in rows[0] and "encrypted_value" not in rows[0]


def test_delete_asks_for_confirmation(cli) -> None:
    cli("secret", "add", "--name", "openai-test", "--type", "openai", "--value", "sk")
    refused = cli("secret", "delete", "openai-test", input="n\n")
    assert "Are you sure you want to delete secret 'openai-test'? [y/N]" in refused.output
    assert refused.exit_code == 1
    assert "openai-test" in cli("secret", "list").output
    accepted = cli("secret", "delete", "openai-test", input="y\n")
    assert accepted.exit_code == 0 and "deleted" in accepted.output


def test_errors_exit_1_with_one_line(cli) -> None:
    cli("secret", "add", "--name", "dup", "--type", "openai", "--value", "sk")
    duplicate = cli("secret", "add", "--name", "dup", "--type", "openai", "--value", "sk")
    assert duplicate.exit_code == 1
    assert "Error: A secret named 'dup' already exists" in duplicate.output
    missing = cli("secret", "delete", "nope", "--force")
    assert missing.exit_code == 1 and "Secret 'nope' not found" in missing.output
    empty = cli("secret", "add", "--name", "e", "--type", "openai", "--value", "  ")
    assert empty.exit_code == 1 and "value: the secret value must not be empty" in empty.output


def test_wrong_usage_exits_2(cli) -> None:
    assert cli("secret", "add", "--name", "x", "--type", "anthropic", "--value", "v").exit_code == 2
    assert cli("secret", "add", "--type", "openai", "--value", "v").exit_code == 2


def test_secret_in_use_is_refused_naming_the_job(cli) -> None:
    cli("secret", "add", "--name", "openai-prod", "--type", "openai", "--value", "sk")
    cli("secret", "add", "--name", "keboola-prod", "--type", "keboola", "--value", "kbc")
    cli(
        "job", "create", "--name", "Nightly", "--batch-id", "batch_1", "--openai-secret", "openai-prod",
        "--keboola-secret", "keboola-prod", "--keboola-stack", "https://connection.keboola.com",
        "--component-id", "c", "--config-id", "1",
    )  # fmt: skip
    result = cli("secret", "delete", "openai-prod", "--force")
    assert result.exit_code == 1
    assert "is used by 1 job(s): 1 'Nightly'" in result.output


def test_rotate_key(cli) -> None:
    old = cli.settings.secret_key
    cli("secret", "add", "--name", "a", "--type", "openai", "--value", "sk-a")
    new = generate_key()
    cli.settings = cli.settings.with_overrides(secret_key=f"{new},{old}")
    result = cli("secret", "rotate-key")
    assert result.exit_code == 0 and "Re-encrypted 1 secret(s)" in result.output
    cli.settings = cli.settings.with_overrides(secret_key=new)
    doctor = cli("doctor")
    assert doctor.exit_code == 0
    assert "all 1 decrypt with SECRET_KEY" in doctor.output


def test_wrong_key_is_a_clear_error(cli) -> None:
    cli("secret", "add", "--name", "a", "--type", "openai", "--value", "sk-a")
    cli.settings = cli.settings.with_overrides(secret_key=generate_key())
    result = cli("secret", "rotate-key")
    assert result.exit_code == 1
    assert "Secret 'a' cannot be decrypted" in result.output
    assert "Traceback" not in result.output


def test_update_replaces_the_value(cli) -> None:
    cli("secret", "add", "--name", "openai-prod", "--type", "openai", "--value", "sk-old")
    result = cli("secret", "update", "openai-prod", input="sk-new\n")
    assert result.exit_code == 0 and "Secret 'openai-prod' updated" in result.output
    assert "sk-new" not in result.output
    from teckochecker.db import make_engine, make_session_factory
    from teckochecker.services.secrets import get_secret_by_name, reveal_secret

    engine = make_engine(cli.settings.database_url)
    with make_session_factory(engine)() as session:
        secret = get_secret_by_name(session, "openai-prod")
        assert reveal_secret(session, Vault(cli.settings.secret_key), secret.id) == "sk-new"
    engine.dispose()
    assert cli("secret", "update", "missing", "--value", "x").exit_code == 1


def test_verify_against_the_simulator(cli, simulator) -> None:
    simulator.control.add_api_key("sk-good")
    simulator.control.add_token("kbc-good", project_id="9", description="pipeline")
    cli.settings = cli.settings.with_overrides(openai_base_url=simulator.openai_base_url, allow_insecure_endpoints=True)
    cli("secret", "add", "--name", "good-openai", "--type", "openai", "--value", "sk-good")
    cli("secret", "add", "--name", "bad-openai", "--type", "openai", "--value", "sk-bad")
    cli("secret", "add", "--name", "good-keboola", "--type", "keboola", "--value", "kbc-good")

    valid = cli("secret", "verify", "good-openai")
    assert valid.exit_code == 0 and "Secret 'good-openai' is valid" in valid.output
    invalid = cli("secret", "verify", "bad-openai")
    assert invalid.exit_code == 1 and "is invalid" in invalid.output and "sk-bad" not in invalid.output
    keboola = cli("secret", "verify", "good-keboola", "--stack", simulator.stack_url)
    assert keboola.exit_code == 0 and "'pipeline'" in keboola.output and "kbc-good" not in keboola.output

    cli.settings = cli.settings.with_overrides(openai_base_url="http://127.0.0.1:1/v1")
    unreachable = cli("secret", "verify", "good-openai")
    assert unreachable.exit_code == 1 and "is unreachable" in unreachable.output


def test_verify_uses_the_stack_of_a_job_using_the_token(cli, simulator) -> None:
    simulator.control.add_token("kbc-good")
    cli.settings = cli.settings.with_overrides(allow_insecure_endpoints=True)
    cli("secret", "add", "--name", "o", "--type", "openai", "--value", "sk")
    cli("secret", "add", "--name", "k", "--type", "keboola", "--value", "kbc-good")
    cli("job", "create", "--name", "j", "--batch-id", "batch_1", "--openai-secret", "o", "--keboola-secret", "k",
        "--keboola-stack", simulator.stack_url, "--component-id", "c", "--config-id", "1")  # fmt: skip
    assert cli("secret", "verify", "k").exit_code == 0
    refused = cli("secret", "verify", "k", "--stack", "https://evil.example.com")
    assert refused.exit_code == 1 and "not a Keboola stack" in refused.output


def test_verify_never_sends_a_token_to_a_stack_url_that_reaches_another_host(
    cli, monkeypatch, connection_recorder
) -> None:
    # The recorder stands in as the HTTPS proxy: a request to any host would reach it as `CONNECT host:443`.
    monkeypatch.setenv("HTTPS_PROXY", connection_recorder.url)
    cli("secret", "add", "--name", "k", "--type", "keboola", "--value", "1234-5678-kbcSecretToken")

    result = cli("secret", "verify", "k", "--stack", "https://evil.com\\.keboola.com")

    assert result.exit_code == 1 and "backslashes" in result.output
    assert "kbcSecretToken" not in result.output
    assert connection_recorder.first_lines == []
