"""What a station remembers across restarts: the next seq and where its last chunk ended.

Written atomically after every chunk is spooled, so after a crash, a power cut or a
clean stop the next chunk continues the seq and its `gap_ns` measures the real gap.
The spool is consulted too: a chunk spooled just before the state was written counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from soundscape.errors import UserError


@dataclass
class StationState:
    station_id: str
    next_seq: int = 0
    last_chunk_end_ns: int | None = None

    @classmethod
    def load(cls, path: Path, station_id: str) -> StationState:
        if not path.exists():
            return cls(station_id)
        try:
            data = json.loads(path.read_text())
            state = cls(data["station_id"], int(data["next_seq"]), data.get("last_chunk_end_ns"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(
                f"station state {path} is unreadable: {exc}",
                hint="move it aside to start the seq anew (the spool is kept and still sent)",
            ) from None
        if state.station_id != station_id:
            raise UserError(
                f"{path} belongs to station {state.station_id!r}, not {station_id!r}",
                hint="each station needs its own state folder (SOUNDSCAPE_STATION__DATA_DIR)",
            )
        return state

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
