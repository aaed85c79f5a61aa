"""Everything that speaks HTTP out of the reconciler: the only package that imports httpx.

- `urls`: which URLs may be used (plain http:// only to loopback), shared by both below;
- `auth`: QuantConnect credentials and the API's timestamped-hash auth;
- `answers`: the API's answers as typed values;
- `api`: `QuantConnectClient`, typed calls over one retrying POST;
- `webhook`: `WebhookSender`, JSON to notification receivers.

The names the rest of the package has always imported from `reconciler.client` are
re-exported here.
"""

from __future__ import annotations

# The clock the auth signs requests with, looked up here at each request (see
# auth._timestamp); the explicit `as` marks it as this package's own name.
import time as time

from reconciler.client.answers import Compile, CreatedLive, LiveAlgorithm, Project
from reconciler.client.api import LANE_CONNECTIONS, Observer, QuantConnectClient
from reconciler.client.auth import Credentials
from reconciler.client.urls import (
    DEFAULT_API_URL,
    resolve_api_url,
    resolve_webhook_url,
    url_origin,
)
from reconciler.client.webhook import SLACK_WEBHOOK_HOST, WebhookSender, is_slack_webhook

__all__ = [
    "DEFAULT_API_URL",
    "LANE_CONNECTIONS",
    "SLACK_WEBHOOK_HOST",
    "Compile",
    "CreatedLive",
    "Credentials",
    "LiveAlgorithm",
    "Observer",
    "Project",
    "QuantConnectClient",
    "WebhookSender",
    "is_slack_webhook",
    "resolve_api_url",
    "resolve_webhook_url",
    "url_origin",
]
