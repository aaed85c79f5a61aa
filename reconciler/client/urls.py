"""Which URLs the client may talk to, shared by the API client and the webhook sender.

Plain http:// is refused except to loopback: the API's requests carry credentials, and a
notification receiver's URL often carries a token and its events name live deployments.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import SplitResult, urlsplit

from reconciler import __version__
from reconciler.errors import ConfigError

DEFAULT_API_URL = "https://www.quantconnect.com/api/v2"

# How every request this package sends names itself (the API's and the receivers' logs).
USER_AGENT = f"qc-live-reconciler/{__version__}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _malformed(parts: SplitResult) -> bool:
    return parts.scheme not in ("https", "http") or not parts.hostname


def _plain_http_elsewhere(parts: SplitResult) -> bool:
    """http:// to a host off this machine: what would cross the network unencrypted."""
    return parts.scheme == "http" and not is_loopback(parts.hostname or "")


def resolve_api_url(url: str | None) -> str:
    """The API base URL to use; plain http:// is refused except to loopback."""
    chosen = (url or os.environ.get("QC_API_URL") or DEFAULT_API_URL).rstrip("/")
    parts = urlsplit(chosen)
    if _malformed(parts):
        raise ConfigError(f"invalid API URL {chosen!r}: expected https://host/path")
    if _plain_http_elsewhere(parts):
        raise ConfigError(
            f"refusing plain http:// to {parts.hostname}: credentials would cross the "
            "network unencrypted; use https:// (http is allowed only for loopback)"
        )
    return chosen


def url_origin(url: str) -> str:
    """`scheme://host[:port]`: what may be shown of a receiver's URL (a webhook's path is
    often its credential, as Slack's are)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def resolve_webhook_url(url: str) -> str:
    """A notification receiver's URL; plain http:// is refused except to loopback, as for
    the API (events name live deployments; the URL often carries a token)."""
    chosen = url.strip()
    parts = urlsplit(chosen)
    if _malformed(parts):
        raise ConfigError(
            f"invalid notification URL {url_origin(chosen)!r}: expected https://host/path"
        )
    if _plain_http_elsewhere(parts):
        raise ConfigError(
            f"refusing plain http:// to {parts.hostname} for notifications: use https:// "
            "(http is allowed only for loopback)"
        )
    return chosen
