"""The scripts and styles of /docs (Swagger UI) and /redoc, served by the app itself, pinned: both pages work
without internet access, and no page loads code that a CDN could change.

Swagger UI comes from the pinned flask-swagger-ui package, whose `dist/` folder is swagger-ui-dist of the same
version; ReDoc's standalone bundle is vendored from npm in api/docs_assets (see its README). The version is in
every asset URL, so browsers may keep the files for a year.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, Response, abort, send_from_directory

ASSETS_URL = "/docs/assets"
REDOC_VERSION = "2.5.4"
REDOC_SHA384 = "w447zOpYfw/1Tv/5AK9NfHTlQIqE3RVR6KY62jCyy9zNDgO64cMwGGP1Fj0zJVf5"
REDOC_FOLDER = Path(__file__).parent / "docs_assets" / f"redoc-{REDOC_VERSION}"
SWAGGER_UI_FOLDER = Path(flask_swagger_ui.__file__).parent / "dist"
ONE_YEAR = 365 * 24 * 3600


def swagger_ui_version() -> str:
    return (SWAGGER_UI_FOLDER / "VERSION").read_text().strip().removeprefix("v")


def init_docs(app: Flask) -> None:
    """Point flask-smorest's documentation pages at the local copies; call before flask-smorest's Api is made."""
    swagger_ui, redoc = f"swagger-ui-{swagger_ui_version()}", f"redoc-{REDOC_VERSION}"
    folders = {swagger_ui: SWAGGER_UI_FOLDER, redoc: REDOC_FOLDER}

    blp = Blueprint("docs-assets", __name__)

    @blp.get(f"{ASSETS_URL}/<package>/<path:filename>")
    def asset(package: str, filename: str) -> Response:
        if package not in folders:
            abort(404)
        return send_from_directory(folders[package], filename, max_age=ONE_YEAR)

    app.register_blueprint(blp)
    app.config.update(
        OPENAPI_SWAGGER_UI_URL=f"{ASSETS_URL}/{swagger_ui}/",
        OPENAPI_REDOC_URL=f"{ASSETS_URL}/{redoc}/redoc.standalone.js",
        # Swagger UI would otherwise offer to send the spec to swagger.io's online validator.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
    )
