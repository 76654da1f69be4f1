"""flask-smorest's Blueprint with a body parser that reads any JSON safely, and the pagination header as sent."""

from __future__ import annotations

import json
from typing import Any

import flask_smorest
from flask import Request
from marshmallow import Schema
from marshmallow.utils import missing
from webargs.flaskparser import FlaskParser, abort, is_json_request

# flask-smorest sends the pagination metadata as a JSON object serialised into the header's string value.
PAGINATION_HEADER = {
    "description": "The page's place in the list: a string holding a JSON object with `total`, `total_pages`, "
    "`first_page`, `last_page`, `page`, and `previous_page`/`next_page` where there is one. For an empty list "
    'it is `{"total": 0, "total_pages": 0}`.',
    "schema": {"type": "string"},
    "example": '{"total": 42, "total_pages": 5, "first_page": 1, "last_page": 5, "page": 2, "previous_page": 1, '
    '"next_page": 3}',
}


def _json_integer(digits: str) -> int | float:
    """A JSON integer; one with more digits than Python converts (`sys.get_int_max_str_digits()`, 4,300) is read
    as a float, as JavaScript reads it, so the integer field it was sent for refuses it by name (422)."""
    try:
        return int(digits)
    except ValueError:
        return float(digits)


class JsonParser(FlaskParser):
    """webargs' parser, answering 400 or 422 where Python's JSON decoder would raise an unexpected error.

    json.loads raises RecursionError (not a decoding error) for, say, 100,000 nested `[`, and ValueError for an
    integer of 5,000 digits; webargs would let both through as a 500.
    """

    def load_json(self, req: Request, schema: Schema) -> Any:
        try:
            return super().load_json(req, schema)
        except RecursionError:
            abort(400, messages={"json": ["The JSON body is nested too deeply."]})

    def _raw_load_json(self, req: Request) -> Any:
        # webargs' own hook; its load_json turns decoding errors into a 400 and an empty body into `missing`.
        if not is_json_request(req):
            return missing
        return json.loads(req.get_data(cache=True).decode("utf-8"), parse_int=_json_integer)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonParser()

    def pagination_metadata(self, page: int, page_size: int, total: int) -> dict[str, int]:
        """The X-Pagination object flask-smorest sends, for a view that pages by itself."""
        return self._make_pagination_metadata(page, page_size, total)

    def _document_pagination_metadata(self, spec: Any, resp_doc: dict[str, Any]) -> None:
        # flask-smorest's hook for this; it documents the header as an object, which it never sends.
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = PAGINATION_HEADER
