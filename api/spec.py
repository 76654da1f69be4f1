"""Print the OpenAPI spec, deterministically: `python -m api.spec > docs/openapi.json`.

The spec does not depend on settings and building the app connects to nothing, so default settings do.
"""

from __future__ import annotations

import json

from flask_smorest import Api

from api.app import create_app
from teckochecker.config import Settings


def render_spec() -> str:
    app = create_app(Settings())
    api: Api = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    return json.dumps(api.spec.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render_spec(), end="")
