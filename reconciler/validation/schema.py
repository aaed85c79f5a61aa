"""The manifest schema: where its one file is, in an installed package or a checkout."""

from __future__ import annotations

import os

from reconciler.errors import ConfigError

SCHEMA_FILE = "livedeployment.schema.json"


def schema_text() -> str:
    """The schema: inside the installed package, or `schemas/` of a source checkout.

    The wheel carries `schemas/` as `reconciler/_schemas/`.  A plain path beside the package
    is tried first (it costs no import); importlib.resources covers packages that do not
    live in a directory (zip imports); a source or editable checkout has `schemas/`.
    """
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # reconciler/
    installed = os.path.join(package, "_schemas", SCHEMA_FILE)
    source = os.path.join(os.path.dirname(package), "schemas", SCHEMA_FILE)
    for candidate in (installed, source):
        try:
            with open(candidate, encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            continue
    try:
        import importlib.resources

        packaged = importlib.resources.files("reconciler").joinpath("_schemas", SCHEMA_FILE)
        return packaged.read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as error:
        raise ConfigError(f"manifest schema {SCHEMA_FILE} not found: {error}") from None
