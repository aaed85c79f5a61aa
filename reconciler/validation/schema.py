"""The manifest schemas: where their files are, in an installed package or a checkout.

One schema a kind: `livedeployment.schema.json` and `deploywindow.schema.json`
(`manifest.schema.json` joins them for editors)."""

from __future__ import annotations

import os

from reconciler.errors import ConfigError

SCHEMA_FILE = "livedeployment.schema.json"
WINDOW_SCHEMA_FILE = "deploywindow.schema.json"


def schema_text(name: str = SCHEMA_FILE) -> str:
    """The schema: inside the installed package, or `schemas/` of a source checkout.

    The wheel carries `schemas/` as `reconciler/_schemas/`.  A plain path beside the package
    is tried first (it costs no import); importlib.resources covers packages that do not
    live in a directory (zip imports); a source or editable checkout has `schemas/`.
    """
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # reconciler/
    installed = os.path.join(package, "_schemas", name)
    source = os.path.join(os.path.dirname(package), "schemas", name)
    for candidate in (installed, source):
        try:
            with open(candidate, encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            continue
    try:
        import importlib.resources

        packaged = importlib.resources.files("reconciler").joinpath("_schemas", name)
        return packaged.read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as error:
        raise ConfigError(f"manifest schema {name} not found: {error}") from None
