"""Seed files: the projects, nodes, compiles and live deployments to start with.

    projects:
      - {projectId: 1001, name: paper-spy-momentum}
      - {projectId: 1002, name: broken, failBuild: true}
    nodes:
      - {id: LN-64d4787830461ee45574254f643f69b3, name: L-MICRO}
    compiles:
      - {projectId: 1001, compileId: "...", state: BuildSuccess}
    live:
      - {projectId: 1001, nodeId: LN-..., brokerage: {id: QuantConnectBrokerage}}

YAML or JSON (JSON is YAML). Loading an existing item again is skipped, so the same seed
can be given on every start of an emulator that persists its data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_seed_file(path: str) -> dict[str, Any]:
    """The seed document in `path`; ValueError with a one-line reason otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read seed file {path}: {error}") from None
    data: Any
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError(f"seed file {path} is not JSON: {error}") from None
    else:
        # The emulator stands apart from the reconciler (it shares none of its code), so it
        # reads its own seed files rather than going through the manifest loader.
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"seed file {path} is not YAML: {error}".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"seed file {path} must hold a mapping (projects, nodes, ...)")
    return data
