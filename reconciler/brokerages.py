"""Brokerage settings: the portable (seed) form, the API's module form, and the wire shape.

Manifests may use the seed's portable vocabulary (`id: Interactive`, `user`, `password`,
`environment`, `account`) or an API module directly (`id: InteractiveBrokersBrokerage`
with the module's own kebab-case keys).  The current API accepts only module settings,
so `to_wire` translates the portable form by the table in the API digest; FXCM, which has
no module today, is the one brokerage sent in the seed's legacy shape.

`identity` reduces wire settings to what `/live/list` reports about a deployment
(`brokerage`, `environment`), so the planner can tell whether a deployment it did not
create matches a manifest.  The emulator implements the same convention independently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PORTABLE_IDS = ("Interactive", "FXCM", "Oanda", "Tradier", "PaperTrading")
LEGACY_WIRE_IDS = frozenset({"FXCM"})

# The seed's BaseLiveAlgorithmSettings.  Every portable brokerage may be written in this
# shape verbatim, with empty strings in the fields it has no use for: those are accepted
# only empty (a value there would never reach the API) and are not sent.
SEED_FIELDS = ("id", "user", "password", "environment", "account")
UNUSED_SEED_FIELDS: dict[str, tuple[str, ...]] = {
    "PaperTrading": ("user", "account", "password"),
    "Tradier": ("user",),
    "Oanda": ("user",),
}
# What each portable brokerage takes, for messages that name it.
PORTABLE_TAKES: dict[str, str] = {
    "PaperTrading": "no credentials, only environment (paper), cash and holdings",
    "Interactive": (
        "user, account, password, weeklyRestartUtcTime, environment and "
        "financialAdvisorsGroupFilter"
    ),
    "Tradier": "account, environment and the access token (token or password)",
    "Oanda": "account, environment and the access token (token or password)",
    "FXCM": "user, account, password and environment",
}
# Fields the current API requires that the seed's shape does not have: portable field ->
# (the module field it is sent as, an example value as YAML).
API_REQUIRED_EXTRAS: dict[str, dict[str, tuple[str, str]]] = {
    "Interactive": {"weeklyRestartUtcTime": ("ib-weekly-restart-utc-time", '"22:00:00" (UTC)')},
}

# Field-name fragments that mark a credential; such fields must be secret references.
SECRET_WORDS = ("password", "token", "secret", "key")

_LIVE_WORDS = frozenset({"live", "trade", "production"})
_PAPER_WORDS = frozenset({"paper", "practice", "uat", "beta"})


def is_secret_field(name: str) -> bool:
    """True for a field that holds a credential (password, token, secret, API key)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def is_portable(brokerage: Mapping[str, Any]) -> bool:
    return brokerage.get("id") in PORTABLE_IDS


def normalised(brokerage: Mapping[str, Any]) -> dict[str, Any]:
    """The settings without the seed's empty fields that the brokerage has no use for.

    `{id: Tradier, user: "", ...}` (the seed's shape) and `{id: Tradier, ...}` say the
    same thing: compare and hash this, so spelling out the seed's shape is no change.
    """
    unused = UNUSED_SEED_FIELDS.get(str(brokerage.get("id")), ())
    return {k: v for k, v in brokerage.items() if not (k in unused and v == "")}


def _token(settings: Mapping[str, Any]) -> Any:
    # The seed calls the access token `password`; manifests may say `token`.  Exactly one
    # of the two is given (the schema says so): take the one that is there.
    token = settings.get("token")
    return token if token not in (None, "") else settings.get("password")


def _copy_optional(out: dict[str, Any], settings: Mapping[str, Any], *names: str) -> None:
    """Optional fields that are given; an empty string is not sent (the API's default)."""
    for name in names:
        if name in settings and settings[name] != "":
            out[name] = settings[name]


def to_wire(brokerage: Mapping[str, Any]) -> dict[str, Any]:
    """Brokerage settings as the API accepts them (secrets already resolved to values).

    The seed's shape translates like the other portable spellings: the fields a brokerage
    has no use for (empty, the schema makes sure) are not sent.
    """
    kind = brokerage.get("id")
    if kind == "PaperTrading":
        out: dict[str, Any] = {"id": "QuantConnectBrokerage"}
        _copy_optional(out, brokerage, "cash", "holdings")
        return out
    if kind == "Interactive":
        out = {
            "id": "InteractiveBrokersBrokerage",
            "ib-user-name": brokerage.get("user"),
            "ib-account": brokerage.get("account"),
            "ib-password": brokerage.get("password"),
            "ib-weekly-restart-utc-time": brokerage.get("weeklyRestartUtcTime"),
        }
        group = brokerage.get("financialAdvisorsGroupFilter")
        if group not in (None, ""):
            out["ib-financial-advisors-group-filter"] = group
        return out
    if kind == "Tradier":
        return {
            "id": "TradierBrokerage",
            "tradier-account-id": brokerage.get("account"),
            "tradier-access-token": _token(brokerage),
            "tradier-environment": brokerage.get("environment"),
        }
    if kind == "Oanda":
        environment = "Trade" if brokerage.get("environment") == "live" else "Practice"
        return {
            "id": "OandaBrokerage",
            "oanda-account-id": brokerage.get("account"),
            "oanda-access-token": _token(brokerage),
            "oanda-environment": environment,
        }
    if kind == "FXCM":
        return {
            "id": "FXCM",
            "user": brokerage.get("user", ""),
            "password": brokerage.get("password", ""),
            "environment": brokerage.get("environment", "live"),
            "account": brokerage.get("account", ""),
        }
    return dict(brokerage)


def identity(wire: Mapping[str, Any]) -> tuple[str, str]:
    """(brokerage, environment) as `/live/list` reports them for these wire settings.

    Environment convention: QuantConnectBrokerage and PaperTrading are paper; the legacy
    shape says it itself; a module's `*-environment` field maps live/Trade/Production to live and
    paper/Practice/uat/Beta to paper; Binance's `binance-use-testnet: paper` is paper;
    anything else is live.
    """
    kind = str(wire.get("id", ""))
    if kind == "QuantConnectBrokerage":
        return kind, "paper"
    if kind == "PaperTrading":
        return kind, "paper"
    if kind in LEGACY_WIRE_IDS or kind in PORTABLE_IDS:
        return kind, "paper" if wire.get("environment") == "paper" else "live"
    if wire.get("binance-use-testnet") == "paper":
        return kind, "paper"
    for key, value in wire.items():
        if key.endswith("-environment") and isinstance(value, str):
            if value.lower() in _PAPER_WORDS:
                return kind, "paper"
            if value.lower() in _LIVE_WORDS:
                return kind, "live"
    return kind, "live"
