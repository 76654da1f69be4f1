"""docs/USER_GUIDE.md stays true: its commands and flags exist, its curl examples are the ones the live API
test runs, and its Python example reads the variables as Keboola hands them over."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex

import click
import pytest

from cli import main
from teckochecker.clients.keboola_queue import batch_variables
from tests.api.test_api_live import GUIDE_CURLS
from tests.conftest import REPO_ROOT

GUIDE = (REPO_ROOT / "docs" / "USER_GUIDE.md").read_text()
# How a command may be written, and what it runs: the CLI, or a script that wraps part of it.
PREFIXES = {
    ("teckochecker",): [],
    ("python", "teckochecker.py"): [],
    ("python", "cli.py"): [],
    ("python", "scripts/init_db.py"): ["db", "init"],
    ("python", "scripts/verify_setup.py"): ["doctor"],
    ("python", "scripts/show_schema.py"): ["db", "schema"],
}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.DOTALL)


def _command_lines() -> list[str]:
    """Every shell line of the guide's bash blocks, and every inline `code` span, continuations joined."""
    lines = [line for block in _blocks("bash") for line in block.replace("\\\n", " ").splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", GUIDE)


def _invocations() -> list[list[str]]:
    found = []
    for line in _command_lines():
        with contextlib.suppress(ValueError):  # prose in backticks that is not shell
            words = shlex.split(line.replace("[", " ").replace("]", " "), comments=True)
            for segment in " ".join(words).replace("&&", "|").replace(";", "|").split("|"):
                tokens = segment.split()
                for prefix, wrapped in PREFIXES.items():
                    if tuple(tokens[: len(prefix)]) == prefix:
                        found.append(wrapped + tokens[len(prefix) :])
    return found


def _resolve(tokens: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The click command the tokens name, its path, and the tokens after it."""
    command: click.Command = main
    path: list[str] = []
    while tokens and isinstance(command, click.Group) and tokens[0] in command.commands:
        path.append(tokens[0])
        command = command.commands[tokens[0]]
        tokens = tokens[1:]
    return command, path, tokens


def test_the_guide_runs_many_commands() -> None:
    paths = {" ".join(_resolve(tokens)[1]) for tokens in _invocations()}
    assert {"start", "stop", "status", "secret add", "job create", "job retry", "db init", "worker", "demo"} <= paths


def test_every_command_and_flag_in_the_guide_exists() -> None:
    problems = []
    for tokens in _invocations():
        command, path, rest = _resolve(tokens)
        if isinstance(command, click.Group):
            # The bare command, `--help`, or `…` standing for any command, as prose writes them.
            if set(rest) - {"…", "--help"}:
                problems.append(f"{' '.join(tokens)}: no such command")
            continue
        options = {name for parameter in command.params for name in parameter.opts + parameter.secondary_opts}
        for token in rest:
            flag = token.split("=", 1)[0]
            if token.startswith("-") and flag not in options and token != "--reset":
                problems.append(f"{' '.join(path)}: no option {flag}")
    assert problems == []


def test_the_guides_curl_examples_are_the_ones_the_live_api_test_runs() -> None:
    assert [command for command, _ in GUIDE_CURLS if command not in GUIDE] == []


def _as_keboola_runs(code: str, variables: list[dict[str, str]]) -> str:
    """Run `code` as a Python transformation started with `variables`, and return what it printed.

    Keboola treats the configuration's JSON as a Mustache template and escapes each value for JSON
    before it decodes the configuration and runs the code.
    """
    template = json.dumps({"parameters": {"blocks": [{"codes": [{"script": [code]}]}]}})
    for variable in variables:
        template = template.replace("{{ " + variable["name"] + " }}", json.dumps(variable["value"])[1:-1])
    (script,) = json.loads(template)["parameters"]["blocks"][0]["codes"][0]["script"]
    assert "{{" not in script
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(script, "transformation", "exec"), {})
    return printed.getvalue()


@pytest.mark.parametrize(
    ("completed", "failed", "expected"),
    [
        (["batch_a", "batch_b"], ["batch_c"], "2 of 3 batches completed: batch_a, batch_b\n"
                                              "1 batch(es) did not complete: batch_c\n"),
        (["batch_a"], [], "1 of 1 batches completed: batch_a\n"),
    ],
)  # fmt: skip
def test_the_guides_python_example_reads_what_keboola_receives(
    completed: list[str], failed: list[str], expected: str
) -> None:
    (example,) = _blocks("python")
    assert _as_keboola_runs(example, batch_variables(completed, failed)) == expected
