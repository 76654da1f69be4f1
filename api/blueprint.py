"""flask-smorest's Blueprint with a body parser that turns every unreadable JSON body into a 400."""

from __future__ import annotations

from typing import Any

import flask_smorest
from flask import Request
from marshmallow import Schema
from webargs.flaskparser import FlaskParser, abort


class JsonParser(FlaskParser):
    """webargs' parser, also refusing JSON nested too deeply for Python's decoder.

    json.loads raises RecursionError (not a decoding error) for, say, 100,000 nested `[`, which webargs would
    let through as a 500.
    """

    def load_json(self, req: Request, schema: Schema) -> Any:
        try:
            return super().load_json(req, schema)
        except RecursionError:
            abort(400, messages={"json": ["The JSON body is nested too deeply."]})


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonParser()
