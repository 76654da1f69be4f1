"""The tree stays ruff-clean (lint and format) and the domain core never imports the web or task frameworks."""

import ast
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_ruff_finds_nothing() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO_ROOT)], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_ruff_format_would_change_nothing() -> None:
    # Python files and the Python code blocks of Markdown files alike.
    completed = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(REPO_ROOT)],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_domain_core_never_imports_flask_or_celery() -> None:
    offenders = []
    for path in (REPO_ROOT / "teckochecker").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in {"flask", "flask_smorest", "celery", "kombu", "api", "worker", "commands"}:
                    offenders.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert offenders == []
