"""The seed's BaseLiveAlgorithmSettings shape, verbatim, for each of its five ids.

The seed documents `{id, user, password, environment, account}` for Interactive, FXCM,
Oanda, Tradier and PaperTrading, every field present, with "" where a brokerage has no use
for one. Such a manifest validates as written; a value in a field the brokerage has no
place for is refused (never dropped on the way to the API); the wire shape is the same as
for the equivalent manifest without the empty fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from validate_support import manifest, problems, run_cli, write

from reconciler import brokerages, manifests, validation

# Flow mappings on line 9 of `manifest()`; each has all five of the seed's fields.
SEED_SHAPES = {
    "Interactive": (
        "{id: Interactive, user: jdoe, password: {fromEnv: IB_PASSWORD}, environment: live, "
        'account: U1234567, weeklyRestartUtcTime: "22:00:00"}'
    ),
    "FXCM": (
        "{id: FXCM, user: jdoe, password: {fromEnv: FXCM_PASSWORD}, environment: paper, "
        'account: "1234567"}'
    ),
    "Oanda": (
        '{id: Oanda, user: "", password: {fromEnv: OANDA_TOKEN}, environment: live, '
        "account: 001-001-1234567-001}"
    ),
    "Tradier": (
        '{id: Tradier, user: "", password: {fromEnv: TRADIER_TOKEN}, environment: live, '
        'account: "123"}'
    ),
    "PaperTrading": '{id: PaperTrading, user: "", password: "", environment: paper, account: ""}',
}
# The seed's example body, as JSON (which YAML reads too), for a brokerage that takes a token.
SEED_JSON = (
    '{"id": "Tradier", "user": "", "password": {"fromEnv": "TRADIER_TOKEN"}, '
    '"environment": "live", "account": "123"}'
)
LITERAL = "Hunter2-do-not-print"


def seed_data(kind: str, tmp: Path) -> dict[str, Any]:
    write(tmp, f"{kind}.yaml", manifest(brokerage=SEED_SHAPES[kind]))
    report = validation.validate_paths([str(tmp / f"{kind}.yaml")])
    assert report.problems == []
    [found] = report.manifests
    brokerage: dict[str, Any] = found.data["spec"]["brokerage"]
    return brokerage


def resolved(brokerage: dict[str, Any]) -> dict[str, Any]:
    """Secret references replaced by values, as the client has them at apply time."""
    return {
        key: f"value-of-{value['fromEnv']}" if isinstance(value, dict) else value
        for key, value in brokerage.items()
    }


@pytest.mark.parametrize("kind", sorted(SEED_SHAPES))
def test_the_seed_shape_validates_verbatim_for_each_id(here: Path, kind: str) -> None:
    assert kind in brokerages.PORTABLE_IDS
    brokerage = seed_data(kind, here)
    assert set(brokerages.SEED_FIELDS) <= set(brokerage)  # nothing dropped on the way in


def test_the_five_seed_ids_are_the_portable_ids() -> None:
    assert set(SEED_SHAPES) == set(brokerages.PORTABLE_IDS)


def test_the_seed_example_as_json(here: Path) -> None:
    write(here, "m.yaml", manifest(brokerage=SEED_JSON))
    assert problems("m.yaml") == []


# ---- fields a brokerage has no place for ---------------------------------------------


@pytest.mark.parametrize(
    ("brokerage", "expected"),
    [
        (
            SEED_SHAPES["Tradier"].replace('user: ""', "user: jdoe"),
            "m.yaml:9:28: spec.brokerage.user: unknown field 'user' for Tradier, which takes "
            "account, environment and the access token (token or password): a value here "
            'would never be used; leave it empty (user: "", the seed\'s shape) or remove it',
        ),
        (
            SEED_SHAPES["Oanda"].replace('user: ""', "user: {fromEnv: OANDA_USER}"),
            "m.yaml:9:26: spec.brokerage.user: unknown field 'user' for Oanda, which takes "
            "account, environment and the access token (token or password): a value here "
            'would never be used; leave it empty (user: "", the seed\'s shape) or remove it',
        ),
        (
            SEED_SHAPES["PaperTrading"].replace('account: ""', "account: DU1"),
            "m.yaml:9:77: spec.brokerage.account: unknown field 'account' for PaperTrading, "
            "which takes no credentials, only environment (paper), cash and holdings: a value "
            'here would never be used; leave it empty (account: "", the seed\'s shape) or '
            "remove it",
        ),
        (
            SEED_SHAPES["PaperTrading"].replace('password: ""', f"password: {LITERAL}"),
            "m.yaml:9:43: spec.brokerage.password: unknown field 'password' for PaperTrading, "
            "which takes no credentials, only environment (paper), cash and holdings: a value "
            'here would never be used; leave it empty (password: "", the seed\'s shape) or '
            "remove it",
        ),
    ],
)
def test_a_value_where_the_brokerage_has_no_place_is_an_error(
    here: Path, brokerage: str, expected: str
) -> None:
    write(here, "m.yaml", manifest(brokerage=brokerage))
    assert problems("m.yaml") == [expected]


def test_every_unused_field_is_reported_and_no_value_is_repeated(here: Path) -> None:
    write(
        here,
        "m.yaml",
        manifest(
            brokerage=f"{{id: PaperTrading, user: {LITERAL}, password: {LITERAL}, "
            f"environment: paper, account: {LITERAL}}}"
        ),
    )
    found = problems("m.yaml")
    assert [p.split(": ", 2)[1] for p in found] == [
        "spec.brokerage.user",
        "spec.brokerage.password",
        "spec.brokerage.account",
    ]
    assert all("for PaperTrading, which takes no credentials" in p for p in found)
    assert not any(LITERAL in p for p in found)


def test_the_unused_field_error_in_every_format(here: Path) -> None:
    brokerage = SEED_SHAPES["Tradier"].replace('user: ""', f"user: {LITERAL}")
    write(here, "deployments/t.yaml", manifest(brokerage=brokerage))
    text = run_cli("validate", cwd=here)
    assert text.returncode == 1
    assert text.stdout.startswith(
        "deployments/t.yaml:9:28: spec.brokerage.user: unknown field 'user' for Tradier"
    )
    github = run_cli("validate", "--format", "github", cwd=here)
    assert github.stdout.startswith(
        "::error file=deployments/t.yaml,line=9,col=28::spec.brokerage.user: "
        "unknown field 'user' for Tradier"
    )
    for done in (text, github):
        assert LITERAL not in done.stdout + done.stderr


def test_empty_is_accepted_only_where_the_brokerage_has_no_use_for_the_field(here: Path) -> None:
    # Tradier's password is its access token: "" there is an empty secret, not the seed's blank.
    write(here, "t.yaml", manifest(brokerage=SEED_SHAPES["Tradier"].replace(
        "password: {fromEnv: TRADIER_TOKEN}", 'password: ""')))  # fmt: skip
    assert problems("t.yaml") == [
        "t.yaml:9:48: spec.brokerage.password: must not be empty: use {fromEnv: "
        "TRADIER_PASSWORD} or {fromFile: path/to/file}"
    ]
    write(here, "ib.yaml", manifest(brokerage=SEED_SHAPES["Interactive"].replace(
        "user: jdoe", 'user: ""')))  # fmt: skip
    assert problems("ib.yaml") == ["ib.yaml:9:38: spec.brokerage.user: must not be empty"]


def test_interactive_in_the_seed_shape_still_needs_the_weekly_restart_time(here: Path) -> None:
    without = SEED_SHAPES["Interactive"].replace(', weeklyRestartUtcTime: "22:00:00"', "")
    write(here, "m.yaml", manifest(brokerage=without))
    assert problems("m.yaml") == [
        "m.yaml:9:14: spec.brokerage: 'weeklyRestartUtcTime' is a required property: the "
        "current API requires it for Interactive (sent as ib-weekly-restart-utc-time), "
        "although the seed's shape has no such field; add e.g. weeklyRestartUtcTime: "
        '"22:00:00" (UTC)'
    ]


# ---- the schema and the tables agree --------------------------------------------------


def test_the_schema_takes_every_seed_field_and_empty_only_where_unused() -> None:
    schema = validation.schema()
    assert set(brokerages.UNUSED_SEED_FIELDS) <= set(brokerages.PORTABLE_IDS)
    for kind in brokerages.PORTABLE_IDS:
        node = schema["$defs"][f"portable.{kind}"]
        assert set(brokerages.SEED_FIELDS) <= set(node["properties"]), kind
        assert kind in brokerages.PORTABLE_TAKES
        check = Draft202012Validator({**node, "$defs": schema["$defs"]})
        [document] = manifests.load_bytes(f"b: {SEED_SHAPES[kind]}".encode()).documents
        seed = document.data["b"]
        assert check.is_valid(seed), kind
        unused = brokerages.UNUSED_SEED_FIELDS.get(kind, ())
        for field in brokerages.SEED_FIELDS[1:]:
            if field in unused:
                assert seed[field] == ""
                assert not check.is_valid({**seed, field: "x"}), (kind, field)
            else:  # a field the brokerage uses is never accepted empty
                assert not check.is_valid({**seed, field: ""}), (kind, field)


# ---- on the wire ----------------------------------------------------------------------

EQUIVALENT = {  # the same settings without the seed's empty fields
    "Oanda": {"id": "Oanda", "token": {"fromEnv": "OANDA_TOKEN"}, "environment": "live",
              "account": "001-001-1234567-001"},
    "Tradier": {"id": "Tradier", "token": {"fromEnv": "TRADIER_TOKEN"}, "environment": "live",
                "account": "123"},
    "PaperTrading": {"id": "PaperTrading", "environment": "paper"},
}  # fmt: skip
WIRE = {
    "Interactive": {
        "id": "InteractiveBrokersBrokerage",
        "ib-user-name": "jdoe",
        "ib-account": "U1234567",
        "ib-password": "value-of-IB_PASSWORD",
        "ib-weekly-restart-utc-time": "22:00:00",
    },
    "FXCM": {
        "id": "FXCM",
        "user": "jdoe",
        "password": "value-of-FXCM_PASSWORD",
        "environment": "paper",
        "account": "1234567",
    },
    "Oanda": {
        "id": "OandaBrokerage",
        "oanda-account-id": "001-001-1234567-001",
        "oanda-access-token": "value-of-OANDA_TOKEN",
        "oanda-environment": "Trade",
    },
    "Tradier": {
        "id": "TradierBrokerage",
        "tradier-account-id": "123",
        "tradier-access-token": "value-of-TRADIER_TOKEN",
        "tradier-environment": "live",
    },
    "PaperTrading": {"id": "QuantConnectBrokerage"},
}
IDENTITY = {
    "Interactive": ("InteractiveBrokersBrokerage", "live"),
    "FXCM": ("FXCM", "paper"),
    "Oanda": ("OandaBrokerage", "live"),
    "Tradier": ("TradierBrokerage", "live"),
    "PaperTrading": ("QuantConnectBrokerage", "paper"),
}


@pytest.mark.parametrize("kind", sorted(SEED_SHAPES))
def test_the_seed_shape_goes_on_the_wire_without_empty_fields(here: Path, kind: str) -> None:
    wire = brokerages.to_wire(resolved(seed_data(kind, here)))
    assert wire == WIRE[kind]
    assert "" not in wire.values()
    assert brokerages.identity(wire) == IDENTITY[kind]


@pytest.mark.parametrize("kind", sorted(EQUIVALENT))
def test_the_seed_shape_is_the_same_deployment_as_its_short_spelling(here: Path, kind: str) -> None:
    seed = seed_data(kind, here)
    short = EQUIVALENT[kind]
    write(here, "short.yaml", manifest(brokerage=repr(short).replace("'", '"')))
    assert problems("short.yaml") == []
    assert brokerages.to_wire(resolved(seed)) == brokerages.to_wire(resolved(short))
    assert brokerages.identity(brokerages.to_wire(resolved(seed))) == brokerages.identity(
        brokerages.to_wire(resolved(short))
    )
    # The password of the seed's shape is the token: compare with the seed's word for it.
    seed_word = {k: v for k, v in seed.items() if k != "password"}
    if "password" in seed and seed["password"] != "":
        seed_word["token"] = seed["password"]
    assert brokerages.normalised(seed_word) == dict(short)


def test_normalised_keeps_everything_that_says_something() -> None:
    tradier = {"id": "Tradier", "user": "", "password": {"fromEnv": "T"}, "account": "1"}
    assert brokerages.normalised(tradier) == {
        "id": "Tradier",
        "password": {"fromEnv": "T"},
        "account": "1",
    }
    fxcm = {"id": "FXCM", "user": "u", "password": "p", "environment": "live", "account": "a"}
    assert brokerages.normalised(fxcm) == fxcm
    module = {"id": "TradierBrokerage", "user": ""}  # not a portable id: left as written
    assert brokerages.normalised(module) == module


def test_an_empty_optional_is_not_sent() -> None:
    ib = resolved(
        {"id": "Interactive", "user": "u", "account": "a", "password": {"fromEnv": "P"},
         "weeklyRestartUtcTime": "22:00:00", "financialAdvisorsGroupFilter": ""}
    )  # fmt: skip
    assert "ib-financial-advisors-group-filter" not in brokerages.to_wire(ib)
    ib["financialAdvisorsGroupFilter"] = "g1"
    assert brokerages.to_wire(ib)["ib-financial-advisors-group-filter"] == "g1"
