"""The Keboola setup page: the five variables a finished job sends, and examples that work when copied."""

from __future__ import annotations

import html
import json
import re

from flask.testing import FlaskClient

from teckochecker.clients.keboola_queue import batch_variables

VARIABLES = (
    "batch_ids_completed",
    "batch_ids_failed",
    "batch_count_total",
    "batch_count_completed",
    "batch_count_failed",
)


def _snippet(page: str, element_id: str) -> str:
    match = re.search(rf'<pre id="{element_id}"><code>(.*?)</code></pre>', page, re.S)
    assert match, element_id
    return html.unescape(match.group(1))


def test_the_page_lists_the_variables_with_the_values_the_engine_sends(dashboard: FlaskClient) -> None:
    page = dashboard.get("/keboola-setup").text
    example = batch_variables(["batch_abc123", "batch_def456"], ["batch_ghi789"])
    assert [variable["name"] for variable in example] == list(VARIABLES)
    for variable in example:
        row = re.search(rf"<tr><td><code>{variable['name']}</code></td><td><code>(.*?)</code></td>", page)
        assert row and html.unescape(row.group(1)) == variable["value"], variable["name"]


def test_the_copyable_examples_are_valid_and_read_every_variable(dashboard: FlaskClient) -> None:
    page = dashboard.get("/keboola-setup").text
    parameters = json.loads(_snippet(page, "params-example"))["parameters"]
    assert parameters == {name: "{{ " + name + " }}" for name in VARIABLES}
    python = _snippet(page, "python-example")
    compile(python, "python-example", "exec")
    assert 'json.loads(parameters["batch_ids_completed"])' in python
    assert 'json.loads(parameters["batch_ids_failed"])' in python
    assert page.count('data-copy="') == 2
