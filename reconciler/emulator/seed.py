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
can be given on every start of an emulator that persists its data. `load_seed_file` reads
one, `add_seed` adds what one describes to a world (the `seed` of the Python and admin API).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.emulator.world import World

SECTIONS = frozenset({"projects", "nodes", "compiles", "live"})


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


def add_seed(world: World, data: Mapping[str, Any]) -> None:
    """Add what a seed document describes, skipping what already exists; one save."""
    if not isinstance(data, Mapping):
        raise ValueError("a seed must be a mapping with projects, nodes, compiles, live")
    unknown = set(data) - SECTIONS
    if unknown:
        raise ValueError(f"unknown seed sections: {sorted(unknown)}")
    with world.batch():
        _add_items(world, data)


def _add_items(world: World, data: Mapping[str, Any]) -> None:
    # The add_* calls check each item; this says only which ones exist already and are skipped.
    for item in _items(data, "projects"):
        project_id = item.get("projectId")
        if isinstance(project_id, int) and world.has_project(project_id):
            continue
        world.add_project(
            project_id,  # type: ignore[arg-type]  # checked by add_project
            item.get("name"),
            fail_build=bool(item.get("failBuild", False)),
            fail_login=item.get("failLogin", False),
            description=str(item.get("description", "")),
        )
    for item in _items(data, "nodes"):
        if not world.has_node(item.get("id")):  # type: ignore[arg-type]
            world.add_node(item.get("id"), item.get("name"))  # type: ignore[arg-type]
    for item in _items(data, "compiles"):
        compile_id = item.get("compileId")
        if compile_id is None or not world.has_compile(compile_id):
            world.add_compile(
                item.get("projectId"),  # type: ignore[arg-type]
                compile_id,
                state=item.get("state", "BuildSuccess"),
            )
    for item in _items(data, "live"):
        project_id = item.get("projectId")
        if isinstance(project_id, int) and world.active(project_id) is not None:
            continue
        world.add_live(
            project_id,  # type: ignore[arg-type]
            item.get("nodeId"),  # type: ignore[arg-type]
            item.get("brokerage") or {"id": "QuantConnectBrokerage"},
            status=item.get("status", "Running"),
        )


def _items(data: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    items = data.get(section) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"seed section {section!r} must be a list of mappings")
    return items
