"""`/keboola-setup`: how a Keboola configuration reads the five variables a finished job sends."""

from __future__ import annotations

from flask import Blueprint, render_template

from teckochecker.clients.keboola_queue import batch_variables

blp = Blueprint("setup", __name__)


@blp.route("/keboola-setup")
def keboola_setup() -> str:
    # The example values come from the code that builds the real variables, so the page cannot drift from it.
    example = batch_variables(["batch_abc123", "batch_def456"], ["batch_ghi789"])
    return render_template("keboola_setup.html", variables=example)
