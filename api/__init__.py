"""The REST API: a Flask + flask-smorest adapter over the domain services in `teckochecker`."""

from api.app import create_app

__all__ = ["create_app"]
