"""Where kept clips live on disk: one folder (`clips.dir`, <state_dir>/clips by default)
shared by the clip keeper that writes them and the web app that serves them."""

from __future__ import annotations

from pathlib import Path

from soundscape.settings import Settings


def clips_dir(settings: Settings) -> Path:
    return settings.clips.dir or settings.state_dir / "clips"


def resolve(root: Path, relative: str) -> Path:
    """The file of a stored relative path; refuses one that leaves the clips folder."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"clip path {relative!r} leaves {root}")
    return path
