"""The worker's registry follower: what it loads, when, and what it keeps on failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from soundscape.processors import bundle_follower
from soundscape.processors.bundle_follower import BundleFollower, Wanted


class FakeScorer:
    def __init__(self, version: str) -> None:
        self.version = version


class Registry:
    def __init__(self) -> None:
        self.wanted: Wanted | None = None
        self.down = False

    def active(self) -> Wanted | None:
        if self.down:
            raise OSError("connection refused")
        return self.wanted


def make(registry: Registry, files: dict[str, str]) -> tuple[BundleFollower, list[Path]]:
    """A follower whose loader reads `files` (location -> version; missing: broken)."""
    loads: list[Path] = []

    def load(path: Path) -> Any:
        loads.append(path)
        if str(path) not in files:
            raise ValueError(f"{path}: sha256 does not match the manifest")
        return FakeScorer(files[str(path)])

    return BundleFollower(registry.active, load, "v1", poll_s=60), loads


def test_nothing_promoted_or_already_running_loads_nothing() -> None:
    registry = Registry()
    follower, loads = make(registry, {"/s/v1": "v1"})
    follower.check()
    assert follower.take() is None
    registry.wanted = Wanted("v1", "/s/v1")
    follower.check()
    assert follower.take() is None and loads == []


def test_a_promoted_version_is_loaded_once_and_handed_over_once() -> None:
    registry = Registry()
    follower, loads = make(registry, {"/s/v2": "v2"})
    registry.wanted = Wanted("v2", "/s/v2")
    follower.check()
    follower.check()  # ready and not yet taken: not loaded again
    assert loads == [Path("/s/v2")]
    taken = follower.take()
    assert taken is not None and taken.version == "v2"
    assert follower.take() is None
    follower.check()  # now current
    assert loads == [Path("/s/v2")] and follower.health()["active"] == "v2"


def test_a_rollback_before_the_switch_drops_the_loaded_bundle() -> None:
    registry = Registry()
    follower, _ = make(registry, {"/s/v2": "v2"})
    registry.wanted = Wanted("v2", "/s/v2")
    follower.check()
    registry.wanted = Wanted("v1", "/s/v1")
    follower.check()
    assert follower.take() is None


def test_a_bundle_that_fails_to_load_is_reported_and_not_retried_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    follower, loads = make(registry, {"/s/v3": "other-version"})
    registry.wanted = Wanted("v2", "/s/broken")
    follower.check()
    follower.check()
    assert follower.take() is None and len(loads) == 1
    assert "v2" in follower.health()["bundle_error"] and "sha256" in follower.health()["bundle_error"]
    monkeypatch.setattr(bundle_follower, "RETRY_FAILED_S", 0.0)
    follower.check()  # retried once the pause is over
    assert len(loads) == 2
    registry.wanted = Wanted("v3", "/s/v3")  # the files say another version: refused
    follower.check()
    assert follower.take() is None
    assert "other-version" in follower.health()["bundle_error"]
    registry.wanted = Wanted("v4", None)
    follower.check()
    assert "no location" in follower.health()["bundle_error"]


def test_an_unreachable_registry_changes_nothing() -> None:
    registry = Registry()
    follower, _ = make(registry, {"/s/v2": "v2"})
    registry.down = True
    follower.check()
    assert follower.take() is None and "refused" in follower.health()["registry_error"]
    registry.down = False
    registry.wanted = Wanted("v2", "/s/v2")
    follower.check()
    assert follower.health()["registry_error"] is None
    taken = follower.take()
    assert taken is not None and taken.version == "v2"
