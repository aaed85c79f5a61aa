"""Each schema and cross-file rule, with the exact file:line:column a user would see."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from validate_support import NODE, REPO, manifest, problems, write

from reconciler import validation

IB = (
    "{id: Interactive, user: jdoe, account: DU1, password: {fromEnv: IB_PASSWORD}, "
    'weeklyRestartUtcTime: "22:00:00"}'
)


def test_the_examples_validate_and_teach_the_format() -> None:
    report = validation.validate_paths([str(REPO / "deployments")])
    assert report.problems == []
    assert (report.files, report.documents, len(report.manifests)) == (3, 3, 3)
    specs = [m.data["spec"] for m in report.manifests]
    assert sorted(s["projectId"] for s in specs) == [1001, 1002, 1003]
    assert all(re.fullmatch(r"LN-[0-9a-f]{32}", s["nodeId"]) for s in specs)
    compiles = [s["compileId"] for s in specs]
    assert "latest" in compiles
    assert any(re.fullmatch(r"[0-9a-f]{32}-[0-9a-f]{32}", c) for c in compiles)
    kinds = {s["brokerage"]["id"] for s in specs}
    assert {"PaperTrading", "Interactive"} <= kinds and len(kinds) == 3
    ib = next(s for s in specs if s["brokerage"]["id"] == "Interactive")
    assert ib["brokerage"]["password"] == {"fromEnv": "IB_PASSWORD"}
    for path in sorted((REPO / "deployments").glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/livedeployment.schema.json"


def test_an_enum_error_points_at_the_value(here: Path) -> None:
    write(
        here,
        "deployments/ib.yaml",
        "apiVersion: reconciler/v1\n"
        "kind: LiveDeployment\n"
        "metadata: {name: ib}\n"
        "spec:\n"
        " projectId: 7\n"
        " brokerage:\n"
        "  environment: prod\n"  # line 7: `prod` starts at column 16
        "  id: Interactive\n"
        "  user: jdoe\n"
        "  account: DU1\n"
        "  password: {fromEnv: IB_PASSWORD}\n"
        '  weeklyRestartUtcTime: "22:00:00"\n'
        " compileId: latest\n"
        f" nodeId: {NODE}\n",
    )
    assert problems("deployments/") == [
        "deployments/ib.yaml:7:16: spec.brokerage.environment: "
        "'prod' is not one of ['live', 'paper']"
    ]


def test_a_missing_field_points_at_its_mapping(here: Path) -> None:
    write(
        here,
        "m.yaml",
        manifest(brokerage="{id: Interactive, user: jdoe, account: DU1, password: {fromEnv: P}}"),
    )
    assert problems("m.yaml") == [
        "m.yaml:9:14: spec.brokerage: 'weeklyRestartUtcTime' is a required property"
    ]


def test_missing_top_level_fields(here: Path) -> None:
    write(here, "m.yaml", "# a comment\napiVersion: reconciler/v1\nkind: LiveDeployment\n")
    assert problems("m.yaml") == [
        "m.yaml:2:1: 'metadata' is a required property",
        "m.yaml:2:1: 'spec' is a required property",
    ]


def test_an_unknown_field_is_an_error_with_a_suggestion(here: Path) -> None:
    text = manifest() + "  automaticRedeploi: true\n" + "  extra: 1\n"
    write(here, "m.yaml", text)
    assert problems("m.yaml") == [
        "m.yaml:10:3: spec.automaticRedeploi: unknown field 'automaticRedeploi'; "
        "did you mean 'automaticRedeploy'?",
        "m.yaml:11:3: spec.extra: unknown field 'extra' (known fields: automaticRedeploy, "
        "brokerage, compileId, dataProviders, nodeId, onDelete, projectId, promotion, protected, "
        "restartPolicy, versionId, window)",
    ]


def test_values_yaml_reads_as_numbers_get_a_quoting_hint(here: Path) -> None:
    text = manifest(
        brokerage="{id: Interactive, user: jdoe, account: DU1, password: {fromEnv: P}, "
        "weeklyRestartUtcTime: 22:00:00}"
    )
    write(here, "m.yaml", text + "  versionId: -1\n")
    assert problems("m.yaml") == [
        "m.yaml:9:104: spec.brokerage.weeklyRestartUtcTime: 22:00:00 is read by YAML as an "
        'integer, not a string; quote it: "22:00:00"',
        "m.yaml:10:14: spec.versionId: -1 is read by YAML as an integer, not a string; "
        'quote it: "-1"',
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  projectId: 0", "m.yaml:6:14: spec.projectId: 0 is less than the minimum of 1"),
        (
            '  projectId: "12"',
            "m.yaml:6:14: spec.projectId: expected an integer, got a string '12'",
        ),
        (
            "  projectId: true",
            "m.yaml:6:14: spec.projectId: expected an integer, got a boolean True",
        ),
        ("  projectId: [1]", "m.yaml:6:14: spec.projectId: expected an integer, got a list"),
    ],
)
def test_project_id_must_be_a_positive_integer(here: Path, line: str, expected: str) -> None:
    write(here, "m.yaml", manifest().replace("  projectId: 1", line))
    assert problems("m.yaml") == [expected]


@pytest.mark.parametrize("name", ["Upper", "-lead", "trail-", "under_score", "a" * 64, "dot.ted"])
def test_name_must_be_a_dns_label(here: Path, name: str) -> None:
    write(here, "m.yaml", manifest(name=name))
    [problem] = problems("m.yaml")
    assert problem.startswith("m.yaml:4:9: metadata.name: '")
    assert problem.endswith(
        " is not a DNS label: lowercase letters, digits and '-', at most 63 characters, "
        "starting and ending with a letter or digit"
    )


@pytest.mark.parametrize("name", ["a", "a1", "spy-momentum-2", "a" * 63])
def test_dns_labels_are_accepted(here: Path, name: str) -> None:
    write(here, "m.yaml", manifest(name=name))
    assert problems("m.yaml") == []


def test_wrong_api_version_and_label_type(here: Path) -> None:
    text = manifest().replace("reconciler/v1", "reconciler/v2")
    text = text.replace("  name: algo\n", "  name: algo\n  labels: {team: 7}\n")
    write(here, "m.yaml", text)
    assert problems("m.yaml") == [
        "m.yaml:1:13: apiVersion: 'reconciler/v1' was expected, got 'reconciler/v2'",
        "m.yaml:5:18: metadata.labels.team: 7 is read by YAML as an integer, not a string; "
        'quote it: "7"',
    ]


def test_an_unknown_brokerage_id_gets_one_error_listing_the_accepted_ids(here: Path) -> None:
    write(here, "m.yaml", manifest(brokerage="{id: Robinhood, user: x}"))
    [problem] = problems("m.yaml")
    assert problem.startswith("m.yaml:9:19: spec.brokerage.id: 'Robinhood' is not one of [")
    for accepted in ("Interactive", "FXCM", "Oanda", "Tradier", "PaperTrading", "AlpacaBrokerage"):
        assert repr(accepted) in problem


def test_a_brokerage_that_is_not_a_mapping(here: Path) -> None:
    write(here, "m.yaml", manifest(brokerage="PaperTrading"))
    assert problems("m.yaml") == [
        "m.yaml:9:14: spec.brokerage: expected a mapping, got a string 'PaperTrading'"
    ]


# ---- portable brokerages --------------------------------------------------------------


@pytest.mark.parametrize(
    "brokerage",
    [
        "{id: PaperTrading}",
        "{id: PaperTrading, environment: paper, cash: [{amount: 1000, currency: USD}]}",
        '{id: PaperTrading, user: "", account: "", password: ""}',  # the seed's empty shape
        IB,
        IB[:-1] + ", environment: live, financialAdvisorsGroupFilter: g1}",
        "{id: Tradier, account: VA1, environment: paper, token: {fromEnv: T}}",
        "{id: Tradier, account: VA1, environment: live, password: {fromEnv: T}}",
        "{id: Oanda, account: 001-001-1-001, environment: live, token: {fromFile: oanda.txt}}",
        "{id: FXCM, user: u, account: a, environment: paper, password: {fromEnv: FXCM_PW}}",
    ],
)
def test_portable_brokerages_accepted(here: Path, brokerage: str) -> None:
    write(here, "m.yaml", manifest(brokerage=brokerage))
    assert problems("m.yaml") == []


@pytest.mark.parametrize(
    ("brokerage", "expected"),
    [
        (
            "{id: PaperTrading, environment: live}",
            "spec.brokerage.environment: 'live' is not one of ['paper']",
        ),
        (
            "{id: Interactive, user: jdoe, account: DU1, weeklyRestartUtcTime: '22:00:00'}",
            "spec.brokerage: 'password' is a required property",
        ),
        (
            IB.replace('"22:00:00"', '"25:00:00"'),
            "spec.brokerage.weeklyRestartUtcTime: '25:00:00' is not a UTC time \"hh:mm:ss\"",
        ),
        (
            "{id: Tradier, account: VA1, environment: paper}",
            "spec.brokerage: one of 'token' or 'password' is required",
        ),
        (
            "{id: Tradier, account: VA1, environment: paper, token: {fromEnv: A}, "
            "password: {fromEnv: B}}",
            "spec.brokerage: give only one of 'token' or 'password', not both",
        ),
        (
            "{id: Oanda, environment: paper, token: {fromEnv: A}}",
            "spec.brokerage: 'account' is a required property",
        ),
        (
            "{id: Oanda, account: a, token: {fromEnv: A}}",
            "spec.brokerage: 'environment' is a required property",
        ),
        (
            "{id: FXCM, user: u, account: a, password: {fromEnv: A}}",
            "spec.brokerage: 'environment' is a required property",
        ),
        (
            "{id: Tradier, account: VA1, environment: paper, token: {fromEnv: A}, user: u}",
            "spec.brokerage.user: unknown field 'user'",
        ),
    ],
)
def test_portable_brokerage_rules(here: Path, brokerage: str, expected: str) -> None:
    write(here, "m.yaml", manifest(brokerage=brokerage))
    found = problems("m.yaml")
    assert len(found) == 1, found
    assert expected in found[0]


# ---- module brokerages ----------------------------------------------------------------

# Required fields of every brokerage module of the current API, transcribed from the API
# digest's table (an independent source for the schema, which was derived from the spec).
MODULE_REQUIRED: dict[str, tuple[str, ...]] = {
    "QuantConnectBrokerage": (),
    "InteractiveBrokersBrokerage": (
        "ib-user-name",
        "ib-account",
        "ib-password",
        "ib-weekly-restart-utc-time",
    ),
    "TradierBrokerage": ("tradier-account-id", "tradier-access-token", "tradier-environment"),
    "BitfinexBrokerage": ("bitfinex-api-key", "bitfinex-api-secret"),
    "CoinbaseBrokerage": ("coinbase-api-name", "coinbase-api-private-key"),
    "TradingTechnologiesBrokerage": (
        "tt-user-name",
        "tt-session-password",
        "tt-account-name",
        "tt-rest-app-key",
        "tt-rest-app-secret",
        "tt-rest-environment",
        "tt-order-routing-sender-comp-id",
        "cash",
    ),
    "KrakenBrokerage": ("kraken-api-key", "kraken-api-secret", "kraken-verification-tier"),
    "BybitBrokerage": ("bybit-api-key", "bybit-api-secret", "bybit-vip-level"),
    "OandaBrokerage": ("oanda-account-id", "oanda-access-token", "oanda-environment"),
    "WolverineBrokerage": ("wolverine-account", "wolverine-on-behalf-of-comp-id"),
    "CharlesSchwabBrokerage": ("charles-schwab-account-number",),
    "RBIBrokerage": ("rbi-on-behalf-of-comp-id", "rbi-account"),
    "TerminalLinkBrokerage": (
        "terminal-link-connection-type",
        "terminal-link-server-auth-id",
        "terminal-link-environment",
        "terminal-link-server-host",
        "terminal-link-server-port",
        "terminal-link-emsx-broker",
        "terminal-link-emsx-account",
        "terminal-link-openfigi-api-key",
    ),
    "TradeStationBrokerage": (
        "trade-station-client-id",
        "trade-station-account-id",
        "trade-station-refresh-token",
        "trade-station-environment",
    ),
    "TastytradeBrokerage": ("tastytrade-account-number", "tastytrade-refresh-token"),
    "AlpacaBrokerage": ("alpaca-access-token", "alpaca-environment"),
}
BINANCE_REQUIRED: dict[str, tuple[str, ...]] = {
    "Binance": ("binance-api-key", "binance-api-secret", "binance-use-testnet"),
    "BinanceUS": ("binanceus-api-key", "binanceus-api-secret"),
    "Binance-USDM-Futures": ("binance-api-key", "binance-api-secret"),
    "Binance-COIN-Futures": ("binance-api-key", "binance-api-secret"),
}
# A value the API accepts for each non-secret required field (enums, integers, lists).
SAMPLE_VALUES: dict[str, str] = {
    "ib-weekly-restart-utc-time": '"21:30:00"',
    "tradier-environment": "paper",
    "tt-rest-environment": "uat",
    "cash": "[{amount: 1000, currency: USD}]",
    "kraken-verification-tier": "Starter",
    "bybit-vip-level": "VIP0",
    "oanda-environment": "Practice",
    "terminal-link-connection-type": "SAPI",
    "terminal-link-environment": "Beta",
    "terminal-link-server-port": "8194",
    "trade-station-environment": "paper",
    "tastytrade-account-number": "5551234",
    "alpaca-environment": "live",
    "binance-use-testnet": "paper",
}


def module_brokerage(module: str, fields: tuple[str, ...], **extra: str) -> str:
    items = [f"id: {module}", *(f"{k}: {v}" for k, v in extra.items())]
    for name in fields:
        if validation.is_secret_field(name):
            items.append(f"{name}: {{fromEnv: {name.upper().replace('-', '_')}}}")
        else:
            items.append(f"{name}: {SAMPLE_VALUES.get(name, 'some-value')}")
    return "{" + ", ".join(items) + "}"


def test_every_api_module_is_accepted_as_a_brokerage_id() -> None:
    ids = validation.schema()["$defs"]["brokerage"]["properties"]["id"]["enum"]
    assert set(ids) == {*MODULE_REQUIRED, "BinanceBrokerage"} | {
        "Interactive",
        "FXCM",
        "Oanda",
        "Tradier",
        "PaperTrading",
    }


@pytest.mark.parametrize("module", sorted(MODULE_REQUIRED))
def test_module_required_fields_are_enforced(here: Path, module: str) -> None:
    required = MODULE_REQUIRED[module]
    write(here, "ok.yaml", manifest(brokerage=module_brokerage(module, required)))
    assert problems("ok.yaml") == []
    for missing in required:
        rest = tuple(f for f in required if f != missing)
        write(here, "bad.yaml", manifest(brokerage=module_brokerage(module, rest)))
        assert problems("bad.yaml") == [
            f"bad.yaml:9:14: spec.brokerage: '{missing}' is a required property"
        ]
    write(here, "typo.yaml", manifest(brokerage=module_brokerage(module, required, user="x")))
    assert problems("typo.yaml")[0].startswith("typo.yaml:9:")
    assert "spec.brokerage.user: unknown field 'user'" in problems("typo.yaml")[0]


@pytest.mark.parametrize("exchange", sorted(BINANCE_REQUIRED))
def test_binance_variants_are_told_apart_by_exchange_name(here: Path, exchange: str) -> None:
    required = BINANCE_REQUIRED[exchange]
    brokerage = module_brokerage(
        "BinanceBrokerage", required, **{"binance-exchange-name": exchange}
    )
    write(here, "ok.yaml", manifest(brokerage=brokerage))
    assert problems("ok.yaml") == []
    for missing in required:
        rest = tuple(f for f in required if f != missing)
        brokerage = module_brokerage(
            "BinanceBrokerage", rest, **{"binance-exchange-name": exchange}
        )
        write(here, "bad.yaml", manifest(brokerage=brokerage))
        assert problems("bad.yaml") == [
            f"bad.yaml:9:14: spec.brokerage: '{missing}' is a required property"
        ]


def test_binance_us_uses_its_own_key_names(here: Path) -> None:
    brokerage = module_brokerage(
        "BinanceBrokerage",
        ("binance-api-key", "binance-api-secret"),
        **{"binance-exchange-name": "BinanceUS"},
    )
    write(here, "m.yaml", manifest(brokerage=brokerage))
    found = problems("m.yaml")
    assert "spec.brokerage: 'binanceus-api-key' is a required property" in found[0]
    assert any("spec.brokerage.binance-api-key: unknown field" in p for p in found)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("oanda-environment", "paper", "'paper' is not one of ['Practice', 'Trade']"),
        ("tastytrade-account-number", '"5551234"', "expected an integer, got a string"),
        ("terminal-link-server-port", "port", "expected an integer, got a string 'port'"),
        ("bybit-vip-level", "VIP9", "'VIP9' is not one of"),
    ],
)
def test_module_enums_and_types(here: Path, field: str, value: str, expected: str) -> None:
    module = next(m for m, fields in MODULE_REQUIRED.items() if field in fields)
    required = tuple(f for f in MODULE_REQUIRED[module] if f != field)
    brokerage = module_brokerage(module, required, **{field: value})
    write(here, "m.yaml", manifest(brokerage=brokerage))
    [problem] = problems("m.yaml")
    assert f"spec.brokerage.{field}: {expected}" in problem


# ---- data providers -------------------------------------------------------------------


def test_data_providers(here: Path) -> None:
    good = manifest() + (
        "  dataProviders:\n"  # 10
        "    QuantConnectBrokerage: {id: QuantConnectBrokerage}\n"  # 11
        "    PolygonDataFeed: {id: Polygon, polygon-api-key: {fromEnv: POLYGON_KEY}}\n"  # 12
    )
    write(here, "good.yaml", good)
    assert problems("good.yaml") == []
    bad = manifest() + (
        "  dataProviders:\n"  # 10
        "    PolygonDataFeed: {id: PolygonDataFeed, polygon-api-key: {fromEnv: K}}\n"  # 11
        "    Yahoo: {id: Yahoo}\n"  # 12
        "    AlpacaBrokerage: {id: AlpacaBrokerage, alpaca-access-token: {fromEnv: T}}\n"  # 13
    )
    write(here, "bad.yaml", bad)
    found = problems("bad.yaml")
    assert found[0] == (
        "bad.yaml:11:27: spec.dataProviders.PolygonDataFeed.id: "
        "'Polygon' was expected, got 'PolygonDataFeed'"
    )
    assert found[1].startswith("bad.yaml:12:5: spec.dataProviders.Yahoo: unknown field 'Yahoo'")
    # The Alpaca data provider takes an API key and secret, not the brokerage's token.
    assert found[2:] == [
        "bad.yaml:13:22: spec.dataProviders.AlpacaBrokerage: "
        "'alpaca-api-key' is a required property",
        "bad.yaml:13:22: spec.dataProviders.AlpacaBrokerage: "
        "'alpaca-api-secret' is a required property",
        "bad.yaml:13:44: spec.dataProviders.AlpacaBrokerage.alpaca-access-token: "
        "unknown field 'alpaca-access-token'; did you mean 'alpaca-api-key'?",
    ]


# ---- documents and files --------------------------------------------------------------


def test_other_kinds_and_non_mappings_are_errors(here: Path) -> None:
    write(
        here,
        "multi.yaml",
        "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n"  # lines 1-3
        "---\n"  # 4
        "- a list\n"  # 5
        "---\n"  # 6
        "just text\n"  # 7
        "---\n"  # 8
        "# an empty document is skipped\n"  # 9
        "---\n" + manifest(),  # 10, then the manifest on lines 11-19
    )
    report = validation.validate_paths(["multi.yaml"])
    assert [str(p) for p in report.problems] == [
        "multi.yaml:2:7: kind: a document of kind 'ConfigMap': only kinds LiveDeployment and "
        "DeployWindow belong here",
        "multi.yaml:5:1: a manifest must be a mapping, not a list",
        "multi.yaml:7:1: a manifest must be a mapping, not a single value",
    ]
    assert report.documents == 4
    assert [(m.file, m.line) for m in report.manifests] == [("multi.yaml", 11)]


def test_all_files_are_reported_at_once_sorted_by_file_and_line(here: Path) -> None:
    write(here, "d/b.yaml", manifest(name="B", project=2))
    write(here, "d/a.yaml", manifest(name="a", project=0) + "  oops: 1\n")
    write(here, "d/sub/c.yml", manifest(name="c", project=3))
    write(here, "d/.hidden/x.yaml", "not: [valid")
    write(here, "d/notes.txt", "not: [valid")
    report = validation.validate_paths(["d"])
    assert [str(p) for p in report.problems] == [
        "d/a.yaml:6:14: spec.projectId: 0 is less than the minimum of 1",
        "d/a.yaml:10:3: spec.oops: unknown field 'oops' (known fields: automaticRedeploy, "
        "brokerage, compileId, dataProviders, nodeId, onDelete, projectId, promotion, protected, "
        "restartPolicy, versionId, window)",
        "d/b.yaml:4:9: metadata.name: 'B' is not a DNS label: lowercase letters, digits and "
        "'-', at most 63 characters, starting and ending with a letter or digit",
    ]
    assert (report.files, report.documents) == (3, 3)
    assert [m.file for m in report.manifests] == ["d/sub/c.yml"]


def test_duplicate_names_and_projects_across_files(here: Path) -> None:
    write(here, "d/a.yaml", manifest(name="same", project=5))
    write(here, "d/b.yaml", manifest(name="other", project=6) + "---\n" + manifest("same", 5))
    report = validation.validate_paths(["d/"])
    assert [str(p) for p in report.problems] == [
        "d/b.yaml:14:9: metadata.name: duplicate name 'same': first defined at d/a.yaml:4",
        "d/b.yaml:16:14: spec.projectId: project 5 already has a manifest at d/a.yaml:6 "
        "(the API runs one live algorithm per project)",
    ]
    assert not report.valid
    # Each document passed its own checks; the report as a whole is refused.
    assert len(report.manifests) == 3


def test_a_project_written_as_a_float_is_still_the_same_project(here: Path) -> None:
    write(here, "a.yaml", manifest("a", 5))
    write(here, "b.yaml", manifest("b", 5).replace("projectId: 5", "projectId: 5.0"))
    assert problems("a.yaml", "b.yaml") == [
        "b.yaml:6:14: spec.projectId: project 5 already has a manifest at a.yaml:6 "
        "(the API runs one live algorithm per project)"
    ]


def test_a_path_given_twice_is_read_once(here: Path) -> None:
    path = write(here, "d/a.yaml", manifest())
    report = validation.validate_paths(["d", path, "./d/a.yaml"])
    assert (report.files, report.documents, report.problems) == (1, 1, [])


def test_manifest_data_keeps_secret_references_and_positions(here: Path) -> None:
    write(here, "m.yaml", "# leading comment\n---\n" + manifest(brokerage=IB))
    report = validation.validate_paths(["m.yaml"])
    [found] = report.manifests
    assert (found.file, found.line) == ("m.yaml", 3)
    assert found.data["spec"]["brokerage"]["password"] == {"fromEnv": "IB_PASSWORD"}
    assert found.data["metadata"] == {"name": "algo"}


def test_merge_keys_are_resolved_and_located(here: Path) -> None:
    text = (
        "apiVersion: reconciler/v1\n"
        "kind: LiveDeployment\n"
        "metadata: {name: merged}\n"
        "spec:\n"
        "  projectId: 9\n"
        "  compileId: latest\n"
        f"  nodeId: {NODE}\n"
        "  brokerage:\n"
        "    <<: {id: Tradier, account: VA1, environment: prod}\n"  # line 9, prod at col 50
        "    token: {fromEnv: TRADIER_TOKEN}\n"
    )
    write(here, "m.yaml", text)
    assert problems("m.yaml") == [
        "m.yaml:9:50: spec.brokerage.environment: 'prod' is not one of ['live', 'paper']"
    ]
    write(here, "m.yaml", text.replace("prod", "paper"))
    [found] = validation.validate_paths(["m.yaml"]).manifests
    assert found.data["spec"]["brokerage"]["environment"] == "paper"


def test_problem_text_and_order() -> None:
    late = validation.Problem("a.yaml", 9, 1, "spec", "x")
    early = validation.Problem("a.yaml", 2, 5, "", "y")
    other = validation.Problem("B.yaml", 1, 1, "", "z")
    whole = validation.Problem("c.yaml", 0, 0, "", "no such file or directory")
    assert sorted([whole, late, early, other]) == [other, early, late, whole]
    assert str(late) == "a.yaml:9:1: spec: x"
    assert str(early) == "a.yaml:2:5: y"
    assert str(whole) == "c.yaml: no such file or directory"
