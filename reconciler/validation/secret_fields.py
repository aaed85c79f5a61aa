"""Secret fields: written as references (`{fromEnv: NAME}` / `{fromFile: PATH}`), never as
values, and their messages never repeat what was written (it may be the secret itself).

`--check-secrets` also reports referenced environment variables that are unset and
referenced files that do not exist; the values are never read into a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reconciler import manifests
from reconciler.validation.report import Problem

if TYPE_CHECKING:
    from reconciler.validation.schema_check import SchemaError

SECRET_WORDS = ("password", "token", "secret", "key")
_PORTABLE_PREFIX = {
    "Interactive": "IB",
    "FXCM": "FXCM",
    "Oanda": "OANDA",
    "Tradier": "TRADIER",
    "PaperTrading": "PAPER",
}


def is_secret_field(name: object) -> bool:
    return isinstance(name, str) and any(word in name.lower() for word in SECRET_WORDS)


def secret_field(path: Sequence[str | int]) -> int | None:
    """Index in `path` of a secret field of the brokerage or of a data provider."""
    if len(path) >= 3 and path[:2] == ["spec", "brokerage"] and is_secret_field(path[2]):
        return 2
    if len(path) >= 4 and path[:2] == ["spec", "dataProviders"] and is_secret_field(path[3]):
        return 3
    return None


def secret_message(
    data: Mapping[str, Any],
    field_path: Sequence[str | int],
    path: Sequence[str | int],
    error: SchemaError,
) -> str:
    """Never includes what was written: it may be the secret itself."""
    how = f"{{fromEnv: {_env_suggestion(data, field_path)}}} or {{fromFile: path/to/file}}"
    instance = error.instance
    if len(path) > len(field_path):
        inner = path[len(field_path)]
        if inner == "fromEnv":
            return (
                "fromEnv must name an environment variable: letters, digits and _, "
                "not starting with a digit"
            )
        if inner == "fromFile":
            return "fromFile must be a non-empty path, relative to the manifest's directory"
        return f"a secret reference is {how}"
    if isinstance(instance, dict):
        if error.validator == "additionalProperties":
            extra = sorted(str(k) for k in instance if k not in ("fromEnv", "fromFile"))
            return f"a secret reference has only fromEnv or fromFile, not {', '.join(extra)}"
        return f"a secret reference has exactly one of fromEnv or fromFile: {how}"
    if instance is None or instance == "":
        return f"must not be empty: use {how}"
    if isinstance(instance, list):
        return f"must be a secret reference: {how}"
    return f"secrets must not be literals in git; use {how}"


def _env_suggestion(data: Mapping[str, Any], field_path: Sequence[str | int]) -> str:
    name = str(field_path[-1])
    if field_path[1] == "brokerage":
        spec = data.get("spec")
        brokerage = spec.get("brokerage") if isinstance(spec, dict) else None
        kind = brokerage.get("id") if isinstance(brokerage, dict) else None
        prefix = _PORTABLE_PREFIX.get(kind) if isinstance(kind, str) else None
        if prefix:
            name = f"{prefix}_{name}"
    env = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()
    return env if env and not env[0].isdigit() else "SECRET"


# ---- --check-secrets --------------------------------------------------------------------


def secret_problems(file: str, document: manifests.Document) -> Iterator[Problem]:
    """Referenced variables that are unset or empty, referenced files that cannot be read."""
    spec = document.data["spec"]
    base = "." if file == manifests.STDIN_NAME else (os.path.dirname(file) or ".")
    roots = [("brokerage", spec.get("brokerage")), ("dataProviders", spec.get("dataProviders"))]
    for key, value in roots:
        for path, source, name in _secret_refs(value, ["spec", key]):
            if source == "fromEnv":
                if os.environ.get(name):
                    continue
                state = "is empty" if name in os.environ else "is not set"
                message = f"environment variable {name} {state}"
            else:
                target = os.path.join(base, name)
                if os.path.isfile(target) and os.access(target, os.R_OK):
                    continue
                state = "is not readable" if os.path.exists(target) else "does not exist"
                message = f"secret file {target} {state}"
            at = manifests.value_at(document.root, path)
            yield Problem(file, at.line, at.column, manifests.dotted(path[:-1]), message)


def _secret_refs(value: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], str, str]]:
    if isinstance(value, dict):
        if len(value) == 1:
            ((source, name),) = value.items()
            if source in ("fromEnv", "fromFile") and isinstance(name, str):
                yield [*path, source], source, name
                return
        for key, item in value.items():
            yield from _secret_refs(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_refs(item, [*path, index])
