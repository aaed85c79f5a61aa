"""Resolving secret references, at apply time only, and keeping values out of output.

A manifest names secrets (`{fromEnv: NAME}`, `{fromFile: path}`); values are read just
before the API call that needs them and never stored, logged, planned or printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.errors import SecretError
from reconciler.model import Deployment, SecretRef

MAX_SECRET_FILE_BYTES = 64 * 1024


def resolve_ref(ref: SecretRef, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if ref.source == "env":
        value = env.get(ref.name)
        if value is None or value == "":
            raise SecretError(
                f"secret {ref.placeholder()}: environment variable {ref.name} is not set"
            )
        return value
    path = Path(ref.base_dir) / ref.name
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as error:
        raise SecretError(
            f"secret {ref.placeholder()}: cannot read {path}: {error.strerror}"
        ) from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SecretError(f"secret {ref.placeholder()}: {path} is larger than 64 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"secret {ref.placeholder()}: {path} is not UTF-8 text") from None
    # A trailing newline is an artefact of editors and `echo`, never part of a password.
    text = text.rstrip("\r\n")
    if not text:
        raise SecretError(f"secret {ref.placeholder()}: {path} is empty")
    return text


def resolve(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """The value with every SecretRef replaced by the secret it names."""
    if isinstance(value, SecretRef):
        return resolve_ref(value, environ)
    if isinstance(value, Mapping):
        return {key: resolve(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, environ) for item in value]
    return value


def refs(value: Any) -> list[SecretRef]:
    """Every SecretRef inside a value."""
    if isinstance(value, SecretRef):
        return [value]
    if isinstance(value, Mapping):
        return [ref for item in value.values() for ref in refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in refs(item)]
    return []


# ---- keeping values out of output ----------------------------------------------------

MASK = "[redacted]"


def referenced(deployments: Iterable[Deployment]) -> frozenset[SecretRef]:
    """Every secret reference of these deployments."""
    return frozenset(
        ref for d in deployments for ref in refs([d.brokerage, d.data_providers or {}])
    )


def known_values(references: Iterable[SecretRef]) -> list[str]:
    """The values of the references that resolve here (and the API token), longest first:
    what `mask` hides. An API message may echo a value back (a failed brokerage login)."""
    values = set()
    for ref in references:
        try:
            values.add(resolve_ref(ref))
        except SecretError:
            continue  # not resolvable here: not sent either, so not echoed
    token = os.environ.get("QC_API_TOKEN", "").strip()
    if token:
        values.add(token)
    return sorted((v for v in values if v), key=len, reverse=True)


def mask(text: str, values: Sequence[str]) -> str:
    for value in values:
        text = text.replace(value, MASK)
    return text
