"""The schema ships inside the wheel: build it, install it into a fresh virtualenv, and
validate from outside the source tree."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from validate_support import REPO, manifest

pytestmark = pytest.mark.slow

# The wheel's runtime dependencies for `validate`, taken from this environment so that the
# test needs no network once the wheel is built.
DEPENDENCIES = ("yaml", "jsonschema", "referencing", "rpds", "attrs", "jsonschema_specifications")


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_installed_wheel_validates_the_examples(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = run(
        sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "-q", "-w", wheels, cwd=tmp_path
    )
    if build.returncode != 0:
        pytest.skip(
            "cannot build the wheel here (pip needs the hatchling build backend, usually "
            f"from PyPI): {build.stderr.strip()[-400:]}"
        )
    [wheel] = wheels.glob("qc_live_reconciler-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "reconciler/_schemas/livedeployment.schema.json" in archive.namelist()

    venv = tmp_path / "venv"
    created = run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    installed = run(python, "-m", "pip", "install", "--no-deps", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    purelib = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).stdout.strip()
    )
    places = set()
    for name in DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        places.add(str(Path(spec.origin).parent.parent))
    (purelib / "deps-from-test-env.pth").write_text("\n".join(sorted(places)) + "\n")

    outside = tmp_path / "elsewhere"
    shutil.copytree(REPO / "deployments", outside / "deployments")
    where = run(python, "-c", "import reconciler; print(reconciler.__file__)", cwd=outside)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr

    reconciler = venv / "bin" / "reconciler"
    valid = run(reconciler, "validate", cwd=outside)
    assert (valid.returncode, valid.stdout, valid.stderr) == (
        0,
        "3 files, 3 documents: all valid\n",
        "",
    )
    (outside / "deployments" / "bad.yaml").write_text(manifest("bad", 0))
    invalid = run(reconciler, "validate", "--format", "github", cwd=outside)
    assert invalid.returncode == 1, invalid.stderr
    assert invalid.stdout.splitlines()[0] == (
        "::error file=deployments/bad.yaml,line=6,col=14::spec.projectId: "
        "0 is less than the minimum of 1"
    )
