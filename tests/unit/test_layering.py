"""The layering of docs/architecture.md, checked on every test run: import-linter's
contracts (pyproject.toml, [tool.importlinter]) and no private name across rooms.

The rooms install under `soundscape` from top folders (package-dir), which import-linter
cannot follow in an editable install, so the test lays the package out as it installs
(the .py files only) in a temporary folder and lints that.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
ROOMS = ("app", "producers", "processors", "sinks", "models", "infra", "web", "synthetic")


def _installed_layout(target: Path) -> Path:
    for package, folder in sorted(PACKAGE_DIRS.items()):
        source = ROOT / folder
        dest = target.joinpath(*package.split("."))
        for path in source.rglob("*.py"):
            relative = path.relative_to(source)
            if any(part in ("__pycache__",) for part in relative.parts):
                continue
            out = dest / relative
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out)
    return target


def test_import_contracts_hold(tmp_path: Path) -> None:
    tree = _installed_layout(tmp_path / "site")
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), str(ROOT / "pyproject.toml"), "--no-cache"],
                            cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=300)
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout


def _room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "soundscape" and parts[1] in ROOMS else "core"


def test_no_private_name_crosses_a_room() -> None:
    """`from soundscape.sinks.cli import _helper` in another room couples it to an
    internal; what rooms share lives in the core, under a public name."""
    crossings = []
    for package, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            here = _room_of(f"{package}.{path.relative_to(ROOT / folder).with_suffix('')}".replace("/", "."))
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                        and node.module.startswith("soundscape"):
                    there = _room_of(node.module)
                    private = [a.name for a in node.names
                               if a.name.startswith("_") and not a.name.startswith("__")]
                    if there != here and private:
                        crossings.append(f"{path.relative_to(ROOT)}: {node.module} {private}")
    assert not crossings, "\n".join(crossings)


def test_the_core_contract_names_every_core_module() -> None:
    """A new module in soundscape/ is core: the forbidden contract must cover it."""
    contract = next(c for c in PYPROJECT["tool"]["importlinter"]["contracts"]
                    if c["type"] == "forbidden")
    listed = set(contract["source_modules"])
    core = {f"soundscape.{p.stem}" for p in (ROOT / "soundscape").glob("*.py")
            if p.stem not in ("__init__", "__main__")}
    assert core - listed == set(), f"add to [tool.importlinter] core contract: {core - listed}"
    assert listed - core - {"soundscape"} == set(), "listed modules that no longer exist"
