"""Which hosts may receive a Keboola Storage API token, judged the way the HTTP client will read the URL.

A stack URL carries a token to whatever host the HTTP client connects to, so the host we check must be
the host requests/urllib3 will connect to. Python's `urlsplit` and urllib3's `parse_url` disagree on
some inputs (`https://evil.com\\.keboola.com` is `evil.com\\.keboola.com` to one and `evil.com` to the
other), so a URL is accepted only when it is plain enough that both read the same host, and that host is
checked again right before every request that carries a token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from teckochecker.addresses import is_loopback
from teckochecker.clients.errors import PermanentError

SERVICE = "Keboola"
KEBOOLA_DOMAIN = "keboola.com"
STACK_URL_MAX_LENGTH = 2048
HTTPS_PORT = 443
# A DNS label: letters, digits and inner hyphens (IDNA hosts arrive already as xn-- labels, or are refused).
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# What no stack URL needs and what parsers disagree about: backslashes, white space, control characters,
# userinfo, queries and fragments.
_UNSAFE_CHARACTERS = re.compile(r"[\\\s\x00-\x1f\x7f@?#]")
_EXAMPLE = "https://connection.eu-central-1.keboola.com"


class UnsafeEndpointError(PermanentError):
    """A URL that a Keboola token must not be sent to; the message says why and what to give instead."""

    def __init__(self, message: str) -> None:
        super().__init__(SERVICE, message)

    def _describe(self) -> str:
        return self.message


@dataclass(frozen=True)
class KeboolaHosts:
    """The hosts trusted with Keboola tokens: anything under keboola.com, the configured extra hosts (and
    their `queue.` siblings, where the Job Queue lives), and loopback only when insecure endpoints are allowed
    (the local simulator)."""

    extra_hosts: frozenset[str] = frozenset()
    allow_insecure: bool = False

    def is_trusted(self, host: str) -> bool:
        host = host.lower()
        if is_loopback(host):
            return self.allow_insecure
        if host == KEBOOLA_DOMAIN or host.endswith("." + KEBOOLA_DOMAIN) or host in self.extra_hosts:
            return True
        return host.startswith("queue.") and "connection." + host.removeprefix("queue.") in self.extra_hosts

    def stack_url(self, value: str | None) -> str:
        """The stack URL as `scheme://host[:port]`, or UnsafeEndpointError saying why it is refused."""
        url = (value or "").strip().rstrip("/")
        if not url:
            raise UnsafeEndpointError("the Keboola stack URL must not be empty")
        if len(url) > STACK_URL_MAX_LENGTH:
            raise UnsafeEndpointError(f"must be at most {STACK_URL_MAX_LENGTH} characters, got {len(url)}")
        scheme, host, port, path = self._parse(url)
        if path not in ("", "/"):
            raise UnsafeEndpointError(f"give only the stack's address, like {_EXAMPLE}, without a path")
        netloc = f"[{host}]" if ":" in host else host
        if port is not None and not (scheme == "https" and port == HTTPS_PORT):
            netloc = f"{netloc}:{port}"
        return f"{scheme}://{netloc}"

    def check_request_url(self, url: str) -> None:
        """Raise UnsafeEndpointError unless `url` (a full request URL) goes to a trusted host.

        Called right before every request that carries a token, so a bad URL stored by an older version or
        written into the database by hand is refused at use time instead of being sent.
        """
        self._parse(url)

    def _parse(self, url: str) -> tuple[str, str, int | None, str]:
        """(scheme, host, port, path) of a URL both parsers read alike and whose host we trust."""
        shown = url[:80] + ("…" if len(url) > 80 else "")
        if not url.isascii() or _UNSAFE_CHARACTERS.search(url):
            raise UnsafeEndpointError(
                f"{shown!r} is not a plain URL like {_EXAMPLE}: it must not contain spaces, backslashes, control "
                "or non-ASCII characters, a user name, a query or a fragment"
            )
        try:
            parsed = parse_url(url)
            split = urlsplit(url)
            split_host, split_port = split.hostname, split.port
        except (LocationParseError, ValueError) as error:
            raise UnsafeEndpointError(f"{shown!r} is not a valid URL ({error})") from None
        scheme, host, port = (parsed.scheme or "").lower(), (parsed.host or "").lower(), parsed.port
        if scheme not in ("https", "http") or not host:
            raise UnsafeEndpointError(f"{shown!r} is not a URL like {_EXAMPLE}")
        bare_host = host.strip("[]")
        if (split_host or "").lower() != bare_host or split_port != port:
            raise UnsafeEndpointError(f"{shown!r} is read differently by different URL parsers; give a plain URL")
        if scheme == "http" and not self.allow_insecure:
            raise UnsafeEndpointError(
                "must use https, since it receives a Keboola token (http needs ALLOW_INSECURE_ENDPOINTS=true)"
            )
        if not self.allow_insecure and port not in (None, HTTPS_PORT):
            raise UnsafeEndpointError(
                f"port {port} is not allowed: a Keboola stack answers on 443 (other ports need "
                "ALLOW_INSECURE_ENDPOINTS=true)"
            )
        self._check_host(bare_host)
        return scheme, bare_host, port, parsed.path or ""

    def _check_host(self, host: str) -> None:
        if is_loopback(host):
            if not self.allow_insecure:
                raise UnsafeEndpointError(f"loopback host {host!r} is accepted only with ALLOW_INSECURE_ENDPOINTS=true")
            return
        if not all(_LABEL.match(label) for label in host.split(".")):
            raise UnsafeEndpointError(f"host {host!r} is not a DNS name made of letters, digits, '-' and '.'")
        if not self.is_trusted(host):
            raise UnsafeEndpointError(
                f"host {host!r} is not a Keboola stack: it must end in .{KEBOOLA_DOMAIN} or be listed in "
                "KEBOOLA_ALLOWED_HOSTS"
            )
