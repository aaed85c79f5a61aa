"""The status page (DESIGN §14): `/` as HTML rendered on the server, `/api/status` as JSON.

The only module that imports jinja2.  Manifest names, labels, file paths and error
messages are user data: the environment autoescapes everything, and the page's script
writes them with `textContent` only.  The page loads nothing from elsewhere (inline CSS
and script, allowed by a per-response nonce in its Content-Security-Policy).
"""

from __future__ import annotations

import json
import secrets as random_tokens
import time
from datetime import UTC, datetime
from typing import Any

import jinja2

REFRESH_SECONDS = 5

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("reconciler", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def ago(at: float | None, now: float) -> str:
    """'12s ago', '3m ago', '5h ago', '2d ago'; '-' for never (the script says the same)."""
    if at is None:
        return "-"
    seconds = max(0, int(now - at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def short(text: str | None) -> str:
    """A long id cut for the table (the cell's title and the JSON have it whole)."""
    text = text or ""
    return text if len(text) <= 14 else text[:13] + "…"


def utc(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_env.filters["utc"] = utc


def html(data: dict[str, Any], nonce: str, now: float | None = None) -> str:
    """The complete page: everything is there with scripts off."""
    now = time.time() if now is None else now
    template = _env.get_template("status.html.j2")
    return template.render(
        data=data,
        nonce=nonce,
        refresh_ms=REFRESH_SECONDS * 1000,
        ago=lambda at: ago(at, now),
        short=short,
    )


def api(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, sort_keys=True).encode()


def headers(nonce: str) -> dict[str, str]:
    """Nothing from elsewhere, no framing, no caching of a page that changes."""
    return {
        "Content-Security-Policy": (
            "default-src 'none'; "
            f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def new_nonce() -> str:
    return random_tokens.token_urlsafe(16)


def respond(path: str, data: dict[str, Any]) -> tuple[int, bytes, str, dict[str, str]] | None:
    """(status, body, content type, headers) for the page's routes; None for any other."""
    route = path.split("?", 1)[0]
    if route == "/":
        nonce = new_nonce()
        body = html(data, nonce).encode()
        return (200, body, "text/html; charset=utf-8", headers(nonce))
    if route == "/api/status":
        extra = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        return (200, api(data), "application/json", extra)
    return None
