"""The headers every dashboard response carries: a strict CSP (no inline script or style, nothing from elsewhere),
no MIME sniffing, no referrer beyond this origin, never framed."""

from __future__ import annotations

from flask import Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    # Pages show live state and who is signed in: never serve them from a shared or back-button cache.
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response
