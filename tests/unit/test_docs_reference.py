"""The documentation: the generated reference pages are complete and up to date, the
README stays a short front door, every relative link points at a file, and the MkDocs
site builds without a warning."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from settings_names import env_names

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
GENERATOR = DOCS / "gen_reference.py"
GENERATED = ("configuration.md", "cli.md")

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every markdown link outside fenced code and code spans."""
    found = []
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            continue
        text = re.sub(r"`[^`]*`", "", line)
        found += [(number, match.group(1)) for match in LINK.finditer(text)]
    return found


def test_configuration_reference_lists_every_setting() -> None:
    from soundscape.settings import Settings

    page = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    names = env_names(Settings)
    assert len(names) > 100  # the walk went into the sections
    missing = [env for env in names if f"`{env}`" not in page]
    assert not missing, f"docs/reference/configuration.md lacks {missing}: run gen_reference.py"


def test_generated_reference_pages_are_up_to_date(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GENERATED)
    stale = [
        name for name in GENERATED
        if (tmp_path / name).read_text(encoding="utf-8")
        != (DOCS / "reference" / name).read_text(encoding="utf-8")
    ]
    assert not stale, (
        f"docs/reference/{stale} differ from the code: run .venv/bin/python docs/gen_reference.py"
    )


def test_readme_is_a_short_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move detail into docs/"
    text = "\n".join(lines)
    for must in ("make demo", "make test", "docs/index.md"):
        assert must in text


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(path: Path) -> None:
    broken = []
    for number, target in _links(path):
        if SCHEME.match(target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#", 1)[0]).resolve()
        if not file.exists():
            broken.append(f"line {number}: {target}")
        elif path.is_relative_to(DOCS) and not file.is_relative_to(DOCS):
            # MkDocs cannot follow a link out of docs/: write such paths as code spans.
            broken.append(f"line {number}: {target} leaves docs/")
    assert not broken, f"{path.relative_to(ROOT)}: {broken}"


def test_link_scanner_sees_links_but_not_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text('[a](x.md) `[b](y.md)` ![c](img/z.png "t")\n```\n[d](w.md)\n```\n[e](#f)\n')
    assert _links(page) == [(1, "x.md"), (1, "img/z.png"), (5, "#f")]


def test_site_builds_strict(tmp_path: Path) -> None:
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            assert not os.environ.get("CI"), f"{module} missing: the dev extra installs it"
            pytest.skip(f"{module} is not installed (pip install 'mkdocs>=1.6' "
                        "'mkdocs-material>=9.5'): the site build is not checked")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
