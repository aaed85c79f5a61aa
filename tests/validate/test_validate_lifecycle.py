"""`spec.onDelete` and `spec.protected`: what a prune does, and what is never stopped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from validate_support import REPO, manifest, problems, write

from reconciler import validation

IB = (
    "{id: Interactive, user: jdoe, account: DU1, password: {fromEnv: IB_PASSWORD}, "
    'weeklyRestartUtcTime: "22:00:00"}'
)
TRADIER_MODULE = (
    "{id: TradierBrokerage, tradier-account-id: VA1, tradier-access-token: {fromEnv: T}, "
    "tradier-environment: paper}"
)


@pytest.mark.parametrize("brokerage", [IB, TRADIER_MODULE, "{id: PaperTrading}"])
@pytest.mark.parametrize("on_delete", ["stop", "liquidate"])
@pytest.mark.parametrize("protected", ["true", "false"])
def test_both_fields_with_either_brokerage_form(
    here: Path, brokerage: str, on_delete: str, protected: str
) -> None:
    text = manifest(brokerage=brokerage) + f"  onDelete: {on_delete}\n  protected: {protected}\n"
    write(here, "m.yaml", text)
    report = validation.validate_paths(["m.yaml"])
    assert report.problems == []
    [found] = report.manifests
    assert found.data["spec"]["onDelete"] == on_delete
    assert found.data["spec"]["protected"] is (protected == "true")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  onDelete: delete\n", "m.yaml:10:13: spec.onDelete: 'delete' is not one of "
         "['stop', 'liquidate']"),
        ("  onDelete: Liquidate\n", "m.yaml:10:13: spec.onDelete: 'Liquidate' is not one of "
         "['stop', 'liquidate']"),
        ('  protected: "true"\n', "m.yaml:10:14: spec.protected: expected true or false, got a "
         "string 'true'"),
        ("  protected: 1\n", "m.yaml:10:14: spec.protected: expected true or false, got an "
         "integer 1"),
        ("  onDelet: stop\n", "m.yaml:10:3: spec.onDelet: unknown field 'onDelet'; did you mean "
         "'onDelete'?"),
    ],
)  # fmt: skip
def test_bad_values_point_at_the_value(here: Path, line: str, expected: str) -> None:
    write(here, "m.yaml", manifest() + line)
    assert problems("m.yaml") == [expected]


def test_protected_is_a_spec_field_not_a_brokerage_field(here: Path) -> None:
    write(here, "m.yaml", manifest(brokerage="{id: PaperTrading, protected: true}"))
    [problem] = problems("m.yaml")
    assert problem.startswith("m.yaml:9:33: spec.brokerage.protected: unknown field 'protected'")


def test_the_schema_documents_both_for_editors() -> None:
    spec = validation.schema()["$defs"]["spec"]["properties"]
    on_delete, protected = spec["onDelete"], spec["protected"]
    assert (on_delete["enum"], on_delete["default"]) == (["stop", "liquidate"], "stop")
    assert (protected["type"], protected["default"]) == ("boolean", False)
    hover = on_delete["description"]
    for words in ("prune", "apply --prune", "removed", "Recorded", "apply time", "liquidate"):
        assert words in hover
    hover = protected["description"]
    for words in ("never stops", "no replace", "no prune", "blocked", "removed"):
        assert words in hover


def test_every_example_shows_both_commented_out_and_stays_valid_uncommented(
    here: Path,
) -> None:
    for path in sorted((REPO / "deployments").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert re.search(r"^  # onDelete: (stop|liquidate) +# ", text, re.M), path.name
        assert re.search(r"^  # protected: true +# ", text, re.M), path.name
        uncommented = re.sub(r"^  # (onDelete|protected): ", r"  \1: ", text, flags=re.M)
        write(here, path.name, uncommented)
        report = validation.validate_paths([path.name])
        assert report.problems == [], path.name
        [found] = report.manifests
        assert found.data["spec"]["onDelete"] in ("stop", "liquidate")
        assert found.data["spec"]["protected"] is True
