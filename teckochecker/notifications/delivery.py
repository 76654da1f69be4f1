"""Sending through Apprise: one URL per target (Slack, Teams, email, Discord, JSON webhooks, …).

Apprise's own log lines can name a target's host, user or more, so they never reach our logs as they are:
each call's lines are captured and reported redacted in its result instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from teckochecker.redaction import Redacts

if TYPE_CHECKING:
    import apprise

# Bounds one whole call, whatever the service (Apprise's per-request timeouts are 4 s each).
SEND_TIMEOUT_SECONDS = 30.0
_APPRISE_LOGGER = "apprise"
SEVERITIES = ("info", "success", "warning", "failure")


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    severity: str = "info"  # one of SEVERITIES (Apprise's notify types)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    error: str | None = None


def _apprise() -> apprise.Apprise:
    # Imported on first use: loading Apprise's plugins takes a few hundred milliseconds the rest of the CLI
    # should not pay for.
    import apprise

    quiet = logging.getLogger(_APPRISE_LOGGER)
    if not any(isinstance(handler, logging.NullHandler) for handler in quiet.handlers):
        quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    asset = apprise.AppriseAsset(storage_mode="memory", service_timeout=SEND_TIMEOUT_SECONDS)
    return apprise.Apprise(asset=asset)


def apprise_url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url` (without sending anything), or None when it can. Never repeats the URL."""
    notifier = _apprise()
    if notifier.instantiate(url) is not None:
        return None
    from apprise import NotificationManager

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme and scheme in NotificationManager():
        service = NotificationManager()[scheme].service_name
        return f"Apprise cannot read this {service} URL ({scheme}://…): check its form in Apprise's documentation"
    return (
        "not an Apprise URL: it must start with a service's scheme such as slack://, msteams://, mailto://, "
        "discord:// or json:// (see https://github.com/caronc/apprise/wiki)"
    )


def service_name(url: str) -> str:
    """The service a valid Apprise URL sends to ("Slack", "E-Mail", …)."""
    plugin = _apprise().instantiate(url)
    return str(plugin.service_name) if plugin is not None else "unknown"


def send(url: str, message: Message, redactor: Redacts) -> SendResult:
    """Send one message to one target; the error says why not, with every secret (and the URL) redacted."""
    notifier = _apprise()
    if not notifier.add(url):
        return SendResult(False, "the stored Apprise URL is not valid any more; replace it with `secret update`")
    try:
        result = notifier.notify(body=message.body, title=message.title, notify_type=message.severity)
    except Exception as error:
        return SendResult(False, redactor.redact(f"Apprise failed: {type(error).__name__}: {error}", url))
    if result:
        return SendResult(True)
    lines = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    reason = " ".join(lines) or f"Apprise reported {result.status.name.lower()}"
    return SendResult(False, redactor.redact(reason, url))
