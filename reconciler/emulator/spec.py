"""What the API accepts in `/live/create`'s `brokerage` and `dataProviders`.

Transcribed from the official OpenAPI document (QuantConnect/Documentation,
`QuantConnect-Platform-2.0.0.yaml`): `CreateLiveAlgorithmRequest.brokerage` is a `oneOf`
of the 20 module schemas below, `dataProviders` a map of provider key to settings. Each
module lists its required fields and the type or enum of every field it declares. The
schemas do not forbid undeclared keys, so those are accepted and ignored, as the real
service does.

The seed page's legacy `BaseLiveAlgorithmSettings` shape (`{id, user, password,
environment, account}`, id one of Interactive/FXCM/Oanda/Tradier/PaperTrading) is accepted
as well: it is recognised when every key belongs to that shape.

Choices where the spec is silent (documented in the README):
- a required string field must be a non-empty string (an empty password is no password);
- legacy shape: every field a string; `environment` is required (live|paper) except for
  PaperTrading; user, password and account are required except for PaperTrading;
- `/live/list` reports `brokerage` as the module id and `environment` as live|paper:
  QuantConnectBrokerage is paper; a module's environment field maps live/Trade/Production
  to live and paper/Practice/uat/Beta to paper; Binance's `binance-use-testnet` says it
  itself; a legacy shape says it itself (PaperTrading: paper); anything else is live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A field's type: a JSON type name, or the tuple of allowed string values.
FieldType = str | tuple[str, ...]

STRING = "string"
INTEGER = "integer"
ARRAY = "array"

LIVE_PAPER = ("live", "paper")
BYBIT_VIP = (
    "VIP0", "VIP1", "VIP2", "VIP3", "VIP4", "VIP5", "SupremeVIP",
    "Pro1", "Pro2", "Pro3", "Pro4", "Pro5",
)  # fmt: skip


@dataclass(frozen=True)
class Module:
    """One brokerage (or data-provider) settings schema."""

    component: str
    id: str
    fields: Mapping[str, FieldType]
    required: tuple[str, ...]
    exchange: str | None = None  # Binance variants share an id; the exchange name tells them apart
    environment: str | None = None  # the field that says live or paper, if any


def _module(
    component: str,
    module_id: str,
    required: Mapping[str, FieldType],
    optional: Mapping[str, FieldType] | None = None,
    *,
    exchange: str | None = None,
    environment: str | None = None,
) -> Module:
    fields: dict[str, FieldType] = {"id": (module_id,), **required, **(optional or {})}
    return Module(
        component=component,
        id=module_id,
        fields=fields,
        required=("id", *required),
        exchange=exchange,
        environment=environment,
    )


HOLDINGS: dict[str, FieldType] = {"holdings": ARRAY}
CASH: dict[str, FieldType] = {"cash": ARRAY}

_IB: dict[str, FieldType] = {
    "ib-user-name": STRING,
    "ib-account": STRING,
    "ib-password": STRING,
    "ib-weekly-restart-utc-time": STRING,
}
_IB_OPTIONAL: dict[str, FieldType] = {"ib-financial-advisors-group-filter": STRING}
_TRADIER: dict[str, FieldType] = {
    "tradier-account-id": STRING,
    "tradier-access-token": STRING,
    "tradier-environment": LIVE_PAPER,
}
_COINBASE: dict[str, FieldType] = {"coinbase-api-name": STRING, "coinbase-api-private-key": STRING}
_BINANCE_KEYS: dict[str, FieldType] = {"binance-api-key": STRING, "binance-api-secret": STRING}
_BINANCEUS_KEYS: dict[str, FieldType] = {
    "binanceus-api-key": STRING,
    "binanceus-api-secret": STRING,
}
_BYBIT: dict[str, FieldType] = {
    "bybit-api-key": STRING,
    "bybit-api-secret": STRING,
    "bybit-vip-level": BYBIT_VIP,
}


def _binance(component: str, exchange: str, keys: Mapping[str, FieldType], **extra: Any) -> Module:
    required: dict[str, FieldType] = {"binance-exchange-name": (exchange,), **keys}
    if exchange == "Binance":
        required["binance-use-testnet"] = LIVE_PAPER
    return _module(component, "BinanceBrokerage", required, extra or None, exchange=exchange)


BROKERAGES: tuple[Module, ...] = (
    _module("QuantConnectBrokerageSettings", "QuantConnectBrokerage", {}, {**HOLDINGS, **CASH}),
    _module(
        "InteractiveBrokersBrokerageSettings", "InteractiveBrokersBrokerage", _IB, _IB_OPTIONAL
    ),
    _module(
        "TradierBrokerageSettings", "TradierBrokerage", _TRADIER, environment="tradier-environment"
    ),
    _module(
        "BitfinexSettings",
        "BitfinexBrokerage",
        {"bitfinex-api-key": STRING, "bitfinex-api-secret": STRING},
    ),
    _module("CoinbaseBrokerageSettings", "CoinbaseBrokerage", _COINBASE, HOLDINGS),
    _binance("BinanceBrokerageSettings", "Binance", _BINANCE_KEYS, **HOLDINGS),
    _binance("BinanceUSBrokerageSettings", "BinanceUS", _BINANCEUS_KEYS, **HOLDINGS),
    _binance(
        "BinanceUSDMFuturesBrokerageSettings", "Binance-USDM-Futures", _BINANCE_KEYS, **HOLDINGS
    ),
    _binance(
        "BinanceCOINFuturesBrokerageSettings", "Binance-COIN-Futures", _BINANCE_KEYS, **HOLDINGS
    ),
    _module(
        "TradingTechnologiesBrokerageSettings",
        "TradingTechnologiesBrokerage",
        {
            "tt-user-name": STRING,
            "tt-session-password": STRING,
            "tt-account-name": STRING,
            "tt-rest-app-key": STRING,
            "tt-rest-app-secret": STRING,
            "tt-rest-environment": ("live", "uat"),
            "tt-order-routing-sender-comp-id": STRING,
            "cash": ARRAY,
        },
        environment="tt-rest-environment",
    ),
    _module(
        "KrakenSettings",
        "KrakenBrokerage",
        {
            "kraken-api-key": STRING,
            "kraken-api-secret": STRING,
            "kraken-verification-tier": ("Starter", "Intermediate", "Pro"),
        },
    ),
    _module("BybitBrokerageSettings", "BybitBrokerage", _BYBIT, HOLDINGS),
    _module(
        "OandaSettings",
        "OandaBrokerage",
        {
            "oanda-account-id": STRING,
            "oanda-access-token": STRING,
            "oanda-environment": ("Practice", "Trade"),
        },
        environment="oanda-environment",
    ),
    _module(
        "WolverineSettings",
        "WolverineBrokerage",
        {"wolverine-account": STRING, "wolverine-on-behalf-of-comp-id": STRING},
        {**CASH, **HOLDINGS},
    ),
    _module(
        "CharlesSchwabSettings",
        "CharlesSchwabBrokerage",
        {"charles-schwab-account-number": STRING},
    ),
    _module(
        "RBIBrokerageSettings",
        "RBIBrokerage",
        {"rbi-on-behalf-of-comp-id": STRING, "rbi-account": STRING},
        {**CASH, **HOLDINGS},
    ),
    _module(
        "TerminalLinkSettings",
        "TerminalLinkBrokerage",
        {
            "terminal-link-connection-type": ("SAPI",),
            "terminal-link-server-auth-id": STRING,
            "terminal-link-environment": ("Production", "Beta"),
            "terminal-link-server-host": STRING,
            "terminal-link-server-port": INTEGER,
            "terminal-link-emsx-broker": STRING,
            "terminal-link-emsx-account": STRING,
            "terminal-link-openfigi-api-key": STRING,
        },
        {"terminal-link-emsx-team": STRING, **CASH, **HOLDINGS},
        environment="terminal-link-environment",
    ),
    _module(
        "TradeStationSettings",
        "TradeStationBrokerage",
        {
            "trade-station-client-id": STRING,
            "trade-station-account-id": STRING,
            "trade-station-refresh-token": STRING,
            "trade-station-environment": LIVE_PAPER,
        },
        environment="trade-station-environment",
    ),
    _module(
        "TastytradeSettings",
        "TastytradeBrokerage",
        {"tastytrade-account-number": INTEGER, "tastytrade-refresh-token": STRING},
    ),
    _module(
        "AlpacaBrokerageSettings",
        "AlpacaBrokerage",
        {"alpaca-access-token": STRING, "alpaca-environment": LIVE_PAPER},
        environment="alpaca-environment",
    ),
)

_BY_COMPONENT = {module.component: module for module in BROKERAGES}


def _data_provider(component: str, base: str | None = None) -> Module:
    """A data-provider schema: the brokerage module's fields without holdings."""
    module = _BY_COMPONENT[base or component]
    fields = {k: v for k, v in module.fields.items() if k != "holdings"}
    return Module(
        component=component,
        id=module.id,
        fields=fields,
        required=module.required,
        exchange=module.exchange,
        environment=module.environment,
    )


DATA_PROVIDERS: Mapping[str, tuple[Module, ...]] = {
    "QuantConnectBrokerage": (
        Module(
            "QuantConnectDataProviderSettings",
            "QuantConnectBrokerage",
            {"id": ("QuantConnectBrokerage",)},
            ("id",),
        ),
    ),
    "InteractiveBrokersBrokerage": (
        _data_provider(
            "InteractiveBrokersDataProviderSettings", "InteractiveBrokersBrokerageSettings"
        ),
    ),
    "TradierBrokerage": (
        _data_provider("TradierDataProviderSettings", "TradierBrokerageSettings"),
    ),
    "BitfinexBrokerage": (_data_provider("BitfinexSettings"),),
    "CoinbaseBrokerage": (
        _data_provider("CoinbaseDataProviderSettings", "CoinbaseBrokerageSettings"),
    ),
    "BinanceBrokerage": (
        _data_provider("BinanceDataProviderSettings", "BinanceBrokerageSettings"),
        _data_provider("BinanceUSDataProviderSettings", "BinanceUSBrokerageSettings"),
        _data_provider(
            "BinanceUSDMFuturesDataProviderSettings", "BinanceUSDMFuturesBrokerageSettings"
        ),
        _data_provider(
            "BinanceCOINFuturesDataProviderSettings", "BinanceCOINFuturesBrokerageSettings"
        ),
    ),
    "KrakenBrokerage": (_data_provider("KrakenSettings"),),
    "PolygonDataFeed": (
        Module(
            "PolygonDataProviderSettings",
            "Polygon",
            {"id": ("Polygon",), "polygon-api-key": STRING},
            ("id", "polygon-api-key"),
        ),
    ),
    "BybitBrokerage": (_data_provider("BybitDataProviderSettings", "BybitBrokerageSettings"),),
    "OandaBrokerage": (_data_provider("OandaSettings"),),
    "CharlesSchwabBrokerage": (_data_provider("CharlesSchwabSettings"),),
    "TradeStationBrokerage": (_data_provider("TradeStationSettings"),),
    "TastytradeBrokerage": (_data_provider("TastytradeSettings"),),
    "AlpacaBrokerage": (
        Module(
            "AlpacaDataProviderSettings",
            "AlpacaBrokerage",
            {"id": ("AlpacaBrokerage",), "alpaca-api-key": STRING, "alpaca-api-secret": STRING},
            ("id", "alpaca-api-key", "alpaca-api-secret"),
        ),
    ),
}

LEGACY_IDS = ("Interactive", "FXCM", "Oanda", "Tradier", "PaperTrading")
LEGACY_KEYS = frozenset({"id", "user", "password", "environment", "account"})

_LIVE_WORDS = frozenset({"live", "trade", "production"})
_PAPER_WORDS = frozenset({"paper", "practice", "uat", "beta"})


class Rejected(Exception):
    """A request the API answers with `success: false` and this reason.

    `rule` names the rule that refused it ("project busy", "node busy", "other"), so the
    emulator can count refusals by rule for tests of the client's safety invariants.
    """

    def __init__(self, message: str, rule: str = "other") -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Brokerage:
    """What the emulator keeps of accepted settings: never the credentials."""

    id: str
    component: str
    environment: str  # live | paper, as /live/list reports it


def _type_error(name: str, value: Any, kind: FieldType) -> str | None:
    if isinstance(kind, tuple):
        if value not in kind:
            return f"{name}: {value!r} is not one of {list(kind)}"
        return None
    if kind == STRING and not isinstance(value, str):
        return f"{name}: expected a string, got {type(value).__name__}"
    if kind == INTEGER and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{name}: expected an integer, got {type(value).__name__}"
    if kind == ARRAY:
        if not isinstance(value, list):
            return f"{name}: expected an array, got {type(value).__name__}"
        if not all(isinstance(item, dict) for item in value):
            return f"{name}: every item must be an object"
    return None


def _module_errors(settings: Mapping[str, Any], module: Module) -> list[str]:
    errors = []
    for name in module.required:
        value = settings.get(name)
        if value is None or value == "":
            errors.append(f"{name} is required for {module.id}")
    for name, kind in module.fields.items():
        if settings.get(name) is not None and settings.get(name) != "":
            problem = _type_error(name, settings[name], kind)
            if problem:
                errors.append(problem)
    return errors


def _environment(settings: Mapping[str, Any], module: Module) -> str:
    if module.id == "QuantConnectBrokerage":
        return "paper"
    if module.exchange == "Binance":
        return "paper" if settings.get("binance-use-testnet") == "paper" else "live"
    if module.environment:
        value = str(settings.get(module.environment, "")).lower()
        if value in _PAPER_WORDS:
            return "paper"
    return "live"


def _choose(settings: Mapping[str, Any], candidates: tuple[Module, ...], what: str) -> Module:
    kind = settings.get("id")
    matching = [m for m in candidates if m.id == kind]
    if not matching:
        known = sorted({m.id for m in candidates})
        raise Rejected(f"{what}: unknown id {kind!r}; expected one of {known}")
    if len(matching) > 1:  # the Binance family: told apart by the exchange name
        exchange = settings.get("binance-exchange-name")
        chosen = [m for m in matching if m.exchange == exchange]
        if not chosen:
            names = [m.exchange for m in matching]
            raise Rejected(f"{what}: binance-exchange-name {exchange!r} is not one of {names}")
        matching = chosen
    module = matching[0]
    errors = _module_errors(settings, module)
    if errors:
        raise Rejected(f"{what} ({module.component}): " + "; ".join(errors))
    return module


def _legacy(settings: Mapping[str, Any]) -> Brokerage:
    kind = str(settings["id"])
    for name in LEGACY_KEYS:
        if name in settings and not isinstance(settings[name], str):
            raise Rejected(f"brokerage.{name}: expected a string")
    environment = settings.get("environment")
    if kind == "PaperTrading":
        if environment not in (None, "", "paper"):
            raise Rejected("brokerage: PaperTrading has no live environment")
        return Brokerage(kind, "BaseLiveAlgorithmSettings", "paper")
    if environment not in LIVE_PAPER:
        raise Rejected(f"brokerage.environment: {environment!r} is not one of ['live', 'paper']")
    missing = [name for name in ("user", "password", "account") if not settings.get(name)]
    if missing:
        raise Rejected(f"brokerage: {', '.join(missing)} required for {kind}")
    return Brokerage(kind, "BaseLiveAlgorithmSettings", str(environment))


def check_brokerage(settings: Any) -> Brokerage:
    """The accepted settings' identity, or `Rejected` with the reason."""
    if not isinstance(settings, dict):
        raise Rejected("brokerage: expected an object")
    if "id" not in settings:
        raise Rejected("brokerage: id is required")
    if settings["id"] in LEGACY_IDS and set(settings) <= LEGACY_KEYS:
        return _legacy(settings)
    if settings["id"] in LEGACY_IDS:
        extra = sorted(set(settings) - LEGACY_KEYS)
        raise Rejected(
            f"brokerage: {settings['id']!r} settings take only {sorted(LEGACY_KEYS)}, "
            f"not {extra}; use the module form (e.g. InteractiveBrokersBrokerage)"
        )
    module = _choose(settings, BROKERAGES, "brokerage")
    return Brokerage(module.id, module.component, _environment(settings, module))


def check_data_providers(providers: Any, brokerage: Brokerage) -> list[str]:
    """The provider keys in order of precedence, or `Rejected` with the reason."""
    if not isinstance(providers, dict):
        raise Rejected("dataProviders: expected an object")
    if not providers:
        raise Rejected("dataProviders: provide at least one data provider")
    for key, settings in providers.items():
        candidates = DATA_PROVIDERS.get(key)
        if candidates is None:
            raise Rejected(f"dataProviders: unknown provider {key!r}")
        if not isinstance(settings, dict):
            raise Rejected(f"dataProviders.{key}: expected an object")
        _choose(settings, candidates, f"dataProviders.{key}")
        tradier_paper = brokerage.id == "TradierBrokerage" and brokerage.environment == "paper"
        if key == "TradierBrokerage" and tradier_paper:
            raise Rejected(
                "dataProviders.TradierBrokerage: not available when the brokerage is "
                "Tradier in paper"
            )
    return list(providers)
