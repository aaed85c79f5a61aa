"""The notification receivers' side (`--notify URL`): their URLs and the JSON sender.

Errors and messages name a receiver by its origin only: a webhook's path is often its
credential (Slack's are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from reconciler.client.urls import USER_AGENT, resolve_webhook_url, url_origin
from reconciler.errors import ApiError, TransportError

# Re-exported: what notify takes from here, the receivers' URL policy included.
__all__ = [
    "SLACK_WEBHOOK_HOST",
    "WebhookSender",
    "is_slack_webhook",
    "resolve_webhook_url",
    "url_origin",
]

SLACK_WEBHOOK_HOST = "hooks.slack.com"


def is_slack_webhook(url: str) -> bool:
    return (urlsplit(url).hostname or "").lower() == SLACK_WEBHOOK_HOST


class WebhookSender:
    """POSTs JSON to notification receivers: one connection pool, a timeout on every
    request, no redirects (one could carry an event elsewhere), no retries (the caller's
    policy). Errors name the receiver by its origin only."""

    def __init__(self, timeout: float = 5.0, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def post_json(self, url: str, body: Mapping[str, Any]) -> None:
        try:
            response = self._client.post(url, json=dict(body))
        except httpx.HTTPError as error:
            raise TransportError(f"{url_origin(url)}: {type(error).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise ApiError(
                f"{url_origin(url)} answered HTTP {response.status_code}",
                status_code=response.status_code,
            )
