"""Which local images count as current: digests of their sources, not of file times."""

from __future__ import annotations

import zipfile
from pathlib import Path

from soundscape.infra.images.builder import HERE, folder_members, members_digest


def zip_members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(name, archive.read(name)) for name in archive.namelist()]


def test_digest_ignores_order_and_file_times_and_sees_contents(tmp_path: Path) -> None:
    """Two clones build wheels whose zip entries differ only in time: same digest."""
    files = [("pkg/x.py", "x = 1\n"), ("pkg/y.py", "y = 2\n")]
    for name, when, order in (("a.whl", (2020, 1, 1, 0, 0, 0), files),
                              ("b.whl", (2026, 11, 23, 9, 0, 0), files[::-1])):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            for member, text in order:
                archive.writestr(zipfile.ZipInfo(member, when), text)
    assert (tmp_path / "a.whl").read_bytes() != (tmp_path / "b.whl").read_bytes()
    first, second = (members_digest(zip_members(tmp_path / n)) for n in ("a.whl", "b.whl"))
    assert first == second
    changed = [(n, c + b"#") if n == "pkg/y.py" else (n, c)
               for n, c in zip_members(tmp_path / "a.whl")]
    assert members_digest(changed) != first
    renamed = [(n.replace("x.py", "z.py"), c) for n, c in zip_members(tmp_path / "a.whl")]
    assert members_digest(renamed) != first


def test_postgres_image_sources_are_its_folder() -> None:
    names = {name for name, _ in folder_members(HERE / "postgres")}
    assert names == {"Dockerfile", "docker-entrypoint.sh"}
