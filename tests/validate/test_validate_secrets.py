"""Secrets are references, never literals; messages say how to fix and never echo a value."""

from __future__ import annotations

from pathlib import Path

import pytest
from validate_support import manifest, problems, run_cli, write

from reconciler import validation

LITERAL = "Hunter2-do-not-print"


def ib(password: str) -> str:
    return (
        f"{{id: Interactive, user: jdoe, account: DU1, password: {password}, "
        'weeklyRestartUtcTime: "22:00:00"}'
    )


def test_a_literal_password_is_an_error_that_says_how_to_fix_it(here: Path) -> None:
    write(here, "m.yaml", manifest(brokerage=ib(LITERAL)))
    assert problems("m.yaml") == [
        "m.yaml:9:68: spec.brokerage.password: secrets must not be literals in git; "
        "use {fromEnv: IB_PASSWORD} or {fromFile: path/to/file}"
    ]


@pytest.mark.parametrize(
    ("brokerage", "field", "env"),
    [
        (
            f"{{id: Tradier, account: VA1, environment: paper, token: {LITERAL}}}",
            "token",
            "TRADIER_TOKEN",
        ),
        (
            f"{{id: Oanda, account: a, environment: live, password: {LITERAL}}}",
            "password",
            "OANDA_PASSWORD",
        ),
        (
            "{id: TradierBrokerage, tradier-account-id: VA1, tradier-environment: live, "
            f"tradier-access-token: {LITERAL}}}",
            "tradier-access-token",
            "TRADIER_ACCESS_TOKEN",
        ),
        (
            f"{{id: BitfinexBrokerage, bitfinex-api-key: {LITERAL}, "
            "bitfinex-api-secret: {fromEnv: S}}",
            "bitfinex-api-key",
            "BITFINEX_API_KEY",
        ),
        (
            "{id: CoinbaseBrokerage, coinbase-api-name: n, "
            f"coinbase-api-private-key: '{LITERAL}'}}",
            "coinbase-api-private-key",
            "COINBASE_API_PRIVATE_KEY",
        ),
    ],
)
def test_literal_secrets_in_any_form(here: Path, brokerage: str, field: str, env: str) -> None:
    write(here, "m.yaml", manifest(brokerage=brokerage))
    [problem] = problems("m.yaml")
    assert f"spec.brokerage.{field}: secrets must not be literals in git; " in problem
    assert f"use {{fromEnv: {env}}} or {{fromFile: path/to/file}}" in problem
    assert LITERAL not in problem


def test_a_literal_data_provider_key(here: Path) -> None:
    text = manifest() + (
        "  dataProviders:\n"
        f"    PolygonDataFeed: {{id: Polygon, polygon-api-key: {LITERAL}}}\n"  # line 11
    )
    write(here, "m.yaml", text)
    assert problems("m.yaml") == [
        "m.yaml:11:53: spec.dataProviders.PolygonDataFeed.polygon-api-key: secrets must not "
        "be literals in git; use {fromEnv: POLYGON_API_KEY} or {fromFile: path/to/file}"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12345", "secrets must not be literals in git; use {fromEnv: IB_PASSWORD}"),
        ("true", "secrets must not be literals in git; use {fromEnv: IB_PASSWORD}"),
        ('""', "must not be empty: use {fromEnv: IB_PASSWORD} or {fromFile: path/to/file}"),
        ("[12345]", "must be a secret reference: {fromEnv: IB_PASSWORD}"),
        ("{}", "a secret reference has exactly one of fromEnv or fromFile"),
        ("{fromEnv: A, fromFile: b}", "a secret reference has exactly one of fromEnv or fromFile"),
        (
            "{fromEnv: A, value: 12345}",
            "a secret reference has only fromEnv or fromFile, not value",
        ),
        ("{fromEnv: 9LIVES}", "fromEnv must name an environment variable"),
        ("{fromEnv: 12345}", "fromEnv must name an environment variable"),
        ('{fromFile: ""}', "fromFile must be a non-empty path"),
    ],
)
def test_malformed_references(here: Path, value: str, expected: str) -> None:
    write(here, "m.yaml", manifest(brokerage=ib(value)))
    [problem] = problems("m.yaml")
    assert problem.startswith("m.yaml:9:")
    assert f"spec.brokerage.password: {expected}" in problem
    assert "12345" not in problem


def test_an_empty_secret_is_tolerated_only_where_the_field_is_optional(here: Path) -> None:
    write(here, "paper.yaml", manifest(brokerage='{id: PaperTrading, password: ""}'))
    write(here, "paper-ref.yaml", manifest("p2", 2, "{id: PaperTrading, password: {fromEnv: X}}"))
    assert problems("paper.yaml", "paper-ref.yaml") == []
    write(
        here,
        "fxcm.yaml",
        manifest(brokerage='{id: FXCM, user: u, account: a, environment: live, password: ""}'),
    )
    [problem] = problems("fxcm.yaml")
    assert "spec.brokerage.password: must not be empty" in problem


def test_a_literal_is_never_printed_in_any_format(here: Path) -> None:
    write(here, "deployments/m.yaml", manifest(brokerage=ib(LITERAL)))
    for fmt in ("text", "json", "github"):
        done = run_cli("validate", "--format", fmt, cwd=here)
        assert done.returncode == 1
        assert "secrets must not be literals in git" in done.stdout
        assert LITERAL not in done.stdout + done.stderr


# ---- --check-secrets -----------------------------------------------------------------


def test_plain_validate_does_not_look_at_the_environment(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IB_PASSWORD", raising=False)
    write(here, "m.yaml", manifest(brokerage=ib("{fromEnv: IB_PASSWORD}")))
    assert problems("m.yaml") == []


def test_check_secrets_reports_unset_and_empty_variables(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IB_PASSWORD", raising=False)
    monkeypatch.setenv("TRADIER_TOKEN", "")
    write(here, "ib.yaml", manifest(brokerage=ib("{fromEnv: IB_PASSWORD}")))
    write(
        here,
        "tradier.yaml",
        manifest(
            "t",
            2,
            "{id: Tradier, account: VA1, environment: paper, token: {fromEnv: TRADIER_TOKEN}}",
        ),
    )
    assert problems("ib.yaml", "tradier.yaml", check_secrets=True) == [
        "ib.yaml:9:78: spec.brokerage.password: environment variable IB_PASSWORD is not set",
        "tradier.yaml:9:79: spec.brokerage.token: environment variable TRADIER_TOKEN is empty",
    ]
    monkeypatch.setenv("IB_PASSWORD", LITERAL)
    monkeypatch.setenv("TRADIER_TOKEN", LITERAL)
    assert problems("ib.yaml", "tradier.yaml", check_secrets=True) == []


def test_check_secrets_looks_for_files_beside_the_manifest(here: Path) -> None:
    write(here, "deployments/ib.yaml", manifest(brokerage=ib("{fromFile: secrets/ib.txt}")))
    found = problems("deployments", check_secrets=True)
    assert found == [
        "deployments/ib.yaml:9:79: spec.brokerage.password: secret file "
        "deployments/secrets/ib.txt does not exist"
    ]
    write(here, "secrets/ib.txt", LITERAL)  # beside the working directory: not the one
    assert problems("deployments", check_secrets=True) == found
    write(here, "deployments/secrets/ib.txt", LITERAL + "\n")
    assert problems("deployments", check_secrets=True) == []


def test_check_secrets_through_the_cli_never_prints_values(here: Path) -> None:
    write(here, "deployments/ib.yaml", manifest(brokerage=ib("{fromEnv: IB_PASSWORD}")))
    missing = run_cli("validate", "--check-secrets", cwd=here, env={"IB_PASSWORD": ""})
    assert missing.returncode == 1
    assert "environment variable IB_PASSWORD is empty" in missing.stdout
    present = run_cli("validate", "--check-secrets", cwd=here, env={"IB_PASSWORD": LITERAL})
    assert present.returncode == 0, present.stdout
    assert LITERAL not in present.stdout + present.stderr
    assert present.stdout == "1 file, 1 document: all valid\n"


def test_secret_fields_are_recognised_by_name() -> None:
    for name in ("password", "token", "ib-password", "tt-rest-app-key", "bitfinex-api-secret"):
        assert validation.is_secret_field(name)
    for name in ("user", "account", "tradier-account-id", "binance-exchange-name"):
        assert not validation.is_secret_field(name)
