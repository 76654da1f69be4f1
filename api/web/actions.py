"""How a dashboard form's action ends: committed and reported in the page, or refused with the service's reason."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, flash, redirect

from api.database import db_session
from teckochecker.errors import ConflictError, ValidationError

# Notices travel in the session cookie to the next page; browsers drop cookies over 4 KB (which would sign the
# user out), so a long message (a refusal naming many jobs) is shortened.
NOTICE_MAX_LENGTH = 600


def notify(message: str, category: str = "success") -> None:
    """Show `message` on the next page, in the page (never a dialog)."""
    if len(message) > NOTICE_MAX_LENGTH:
        message = message[: NOTICE_MAX_LENGTH - 1] + "…"
    flash(message, category)


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
        notify(str(error), "error")
    else:
        notify(message)
    return redirect(then)


def commit() -> None:
    db_session().commit()
