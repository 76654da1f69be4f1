"""How a dashboard form's action ends: committed and reported in the page, or refused with the service's reason."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, flash, redirect

from api.database import db_session
from teckochecker.errors import ConflictError, ValidationError


def perform(action: Callable[[], str], *, then: str) -> Response:
    """Run `action` (which returns what to tell the user) as one unit of work, then redirect to `then`.

    A refusal (a wrong status, a secret in use, invalid input) is shown on the next page, never as a dialog.
    """
    session = db_session()
    try:
        message = action()
        session.commit()
    except (ValidationError, ConflictError) as error:
        session.rollback()
        flash(str(error), "error")
    else:
        flash(message, "success")
    return redirect(then)


def commit() -> None:
    db_session().commit()
