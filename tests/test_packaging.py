"""The wheel ships every package: a folder with an __init__.py that pyproject.toml does not
list works in an editable install and is missing from `pip install .` (README command 1 broke
that way once, with autotune.sidecar)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for top in ("autotune", "strategies") for init in (ROOT / top).rglob("__init__.py")}
    # the migrations and workloads are mapped from other folders (package-dir)
    assert found - listed == set(), found - listed
