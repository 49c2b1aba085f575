"""The replay checkpoint advances only over chunks acknowledged without a hole."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundscape.errors import UserError
from soundscape.producers.replay_checkpoint import ReplayCheckpoint, checkpoint_path


def test_acked_through_advances_only_over_contiguous_acks(tmp_path: Path) -> None:
    cp = ReplayCheckpoint(tmp_path / "cp.json")
    for start in (10, 20, 30):
        cp.sent("s", start)
    cp.acked("s", 20)
    assert "s" not in cp.acked_through  # 10 is still out
    cp.acked("s", 10)
    assert cp.acked_through["s"] == 20
    assert not cp.all_acked("s")
    cp.acked("s", 30)
    assert cp.acked_through["s"] == 30 and cp.all_acked("s")
    assert cp.already_acked("s", 30) and not cp.already_acked("s", 40)


def test_saved_and_loaded(tmp_path: Path) -> None:
    cp = ReplayCheckpoint(tmp_path / "cp.json")
    cp.sent("s", 10)
    cp.acked("s", 10)
    cp.files_done(["a|1|2"])
    cp.save(force=True)
    again = ReplayCheckpoint(tmp_path / "cp.json")
    assert again.resuming and again.acked_through == {"s": 10} and again.done_files == {"a|1|2"}


@pytest.mark.parametrize("text", ['{"version": 99}', "[1, 2]", '"text"', "{half",
                                  '{"version": 1, "acked_through_ns": [], "done_files": []}',
                                  '{"version": 1, "acked_through_ns": {"s": "x"}, '
                                  '"done_files": []}'])
def test_unreadable_checkpoint_is_a_user_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cp.json"
    path.write_text(text)
    with pytest.raises(UserError, match="--restart"):
        ReplayCheckpoint(path)


def test_one_checkpoint_per_input_set(tmp_path: Path) -> None:
    a = checkpoint_path(tmp_path, [Path("/x/a.wav"), Path("/x/b.wav")], None)
    assert a == checkpoint_path(tmp_path, [Path("/x/b.wav"), Path("/x/a.wav")], None)
    assert a != checkpoint_path(tmp_path, [Path("/x/a.wav")], None)
    assert a != checkpoint_path(tmp_path, [Path("/x/a.wav"), Path("/x/b.wav")], "s2")
