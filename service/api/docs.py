"""Swagger UI's assets, served by the broker from a pinned package, so `/docs` works offline."""

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, send_from_directory

ASSETS = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
# Relative to `/docs`, so the page also works behind a proxy that adds a path prefix.
ASSETS_URL = "docs/assets/"

blp = Blueprint("docs_assets", __name__)


@blp.get("/docs/assets/<path:filename>")
def asset(filename: str):
    return send_from_directory(ASSETS, filename, max_age=86_400)
