"""The drift worker's RocksDB folder: emptied at each start, one worker at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundscape.errors import UserError
from soundscape.processors.drift.stream import fresh_state_dir


def test_start_empties_the_folder_and_keeps_a_second_worker_out(tmp_path: Path) -> None:
    state = tmp_path / "drift" / "app"
    (state / "drift-panes-0.db").mkdir(parents=True)
    (state / "drift-panes-0.db" / "000001.log").write_text("aborted changes")
    (state / "stray").write_text("x")
    lock = fresh_state_dir(state)
    try:
        assert [p.name for p in state.iterdir()] == [".lock"]
        with pytest.raises(UserError, match="another drift worker uses"):
            fresh_state_dir(state)
    finally:
        lock.close()
    fresh_state_dir(state).close()  # free again once the first worker is gone


def test_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot use the drift state folder"):
        fresh_state_dir(blocker / "app")
