"""Find recordings, probe them, and read them as blocks, turning bad files into reasons.

Shared by the replay and by stations that record to SD card first and feed the files.
Anything unreadable (corrupt, truncated, empty, no permission, no start time) becomes a
`Skipped` with a reason for the summary; nothing here stops a run.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

import soundfile as sf

from soundscape.errors import UserError
from soundscape.producers import file_times
from soundscape.producers.blocks import Block
from soundscape.producers.chunker import MODEL_RATE

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
#: frames read at once: bounds memory for hour-long, multi-channel, high-rate files
READ_SECONDS = 10


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    path: Path
    station_id: str
    start_ns: int
    frames: int
    sample_rate: int
    channels: int
    size: int
    mtime_ns: int

    @property
    def duration_ns(self) -> int:
        return self.frames * 1_000_000_000 // self.sample_rate

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    @property
    def key(self) -> str:
        """Identity for checkpoints: a file changed since is a different file."""
        return f"{self.path}|{self.size}|{self.mtime_ns}"


@dataclass(frozen=True, slots=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class Naming:
    """How start times and station ids are found (see file_times)."""

    station: str | None = None
    start_ns: int | None = None
    time_format: str | None = None
    tz: tzinfo | None = None


def discover(specs: Iterable[str]) -> tuple[list[Path], list[Skipped]]:
    """Files named by paths, folders (searched recursively) and globs, each once, sorted."""
    found: dict[Path, None] = {}
    skipped: list[Skipped] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if any(ch in spec for ch in "*?["):
            matches = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
            if not matches:
                raise UserError(f"{spec!r} matches no file", hint="check the pattern and quoting")
            candidates = [p for m in matches for p in (_walk(m) if m.is_dir() else [m])]
            for candidate in candidates:
                if candidate.suffix.lower() in AUDIO_SUFFIXES:
                    found[candidate.absolute()] = None
        elif path.is_dir():
            for candidate in _walk(path):
                found[candidate.absolute()] = None
        elif path.exists() or path.is_symlink():
            if path.suffix.lower() in AUDIO_SUFFIXES:
                found[path.absolute()] = None
            else:
                skipped.append(Skipped(path, f"not a {'/'.join(AUDIO_SUFFIXES)} file"))
        else:
            raise UserError(f"{spec} does not exist", hint="give files, folders or globs")
    return sorted(found), skipped


def _walk(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )


def probe(path: Path, naming: Naming) -> ArchiveFile | Skipped:
    """Read the header and decide station and start; a reason instead if that fails."""
    try:
        stat = path.stat()
    except OSError as exc:
        return Skipped(path, f"cannot read: {exc.strerror or exc}")
    if stat.st_size == 0:
        return Skipped(path, "empty file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as handle:
            frames, rate, channels = handle.frames, handle.samplerate, handle.channels
            metadata = {k: v for k, v in handle.copy_metadata().items() if v}
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        return Skipped(path, f"not readable audio: {_reason(exc)}")
    if frames <= 0:
        return Skipped(path, "no audio frames")
    station = naming.station or file_times.station_from_path(path)
    if station is None:
        return Skipped(path, "no station id in the name or folder; give --station")
    start = _start(path, metadata, naming)
    if start is None:
        return Skipped(
            path, "no start time in the name or metadata; give --start or --time-format"
        )
    return ArchiveFile(path, station, start, frames, rate, channels, stat.st_size, stat.st_mtime_ns)


def _start(path: Path, metadata: dict[str, str], naming: Naming) -> int | None:
    tz = naming.tz or file_times.zone("UTC")
    if naming.start_ns is not None:
        return naming.start_ns
    if naming.time_format:
        return file_times.start_from_pattern(path.name, naming.time_format, tz)
    return file_times.start_from_metadata(metadata) or file_times.start_from_name(path.stem, tz)


def read_blocks(archive: ArchiveFile, seconds: int = READ_SECONDS) -> Iterator[Block]:
    """The file's audio as blocks of native rate and channels; the first carries its start.

    Raises ArchiveReadError if the file turns out truncated or corrupt part-way: blocks
    already yielded stay valid.
    """
    step = max(1, archive.sample_rate * seconds)
    first = True
    read = 0
    try:
        with sf.SoundFile(str(archive.path)) as handle:
            while True:
                data = handle.read(step, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                read += data.shape[0]
                yield Block(data, archive.sample_rate, archive.start_ns if first else None)
                first = False
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise ArchiveReadError(
            f"read error after {read / archive.sample_rate:.1f} s: {_reason(exc)}", read
        ) from None
    if read < archive.frames:
        raise ArchiveReadError(
            f"truncated: {read / archive.sample_rate:.1f} of "
            f"{archive.frames / archive.sample_rate:.1f} s readable", read
        )


class ArchiveReadError(Exception):
    def __init__(self, reason: str, frames_read: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.frames_read = frames_read


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def probe_all(paths: Iterable[Path], naming: Naming) -> tuple[list[ArchiveFile], list[Skipped]]:
    files: list[ArchiveFile] = []
    skipped: list[Skipped] = []
    for path in paths:
        result = probe(path, naming)
        (files if isinstance(result, ArchiveFile) else skipped).append(result)  # type: ignore[arg-type]
    if naming.start_ns is not None:
        files = _continue_from(files, naming.start_ns)
    return files, skipped


def _continue_from(files: list[ArchiveFile], start_ns: int) -> list[ArchiveFile]:
    """With an explicit start, each station's files (by name) are one continuous recording."""
    from dataclasses import replace

    out: list[ArchiveFile] = []
    next_start: dict[str, int] = {}
    for item in sorted(files, key=lambda f: (f.station_id, f.path.name)):
        begin = next_start.get(item.station_id, start_ns)
        moved = replace(item, start_ns=begin)
        next_start[item.station_id] = moved.end_ns
        out.append(moved)
    return out


def plan_runs(
    files: Iterable[ArchiveFile], tolerance_ns: int
) -> tuple[list[list[ArchiveFile]], list[Skipped]]:
    """Each station's files in time order, grouped into continuous runs.

    A file that starts within `tolerance_ns` of where the previous one ends continues
    its run (recorders that split a continuous recording into files); a later one
    starts a new run after a gap; one that starts earlier overlaps what was already
    recorded and is skipped with the reason.
    """
    runs: list[list[ArchiveFile]] = []
    skipped: list[Skipped] = []
    last: dict[str, ArchiveFile] = {}
    for item in sorted(files, key=lambda f: (f.station_id, f.start_ns, f.path.name)):
        previous = last.get(item.station_id)
        if previous is not None and item.start_ns < previous.end_ns - tolerance_ns:
            overlap = (previous.end_ns - item.start_ns) / 1e9
            skipped.append(
                Skipped(item.path, f"overlaps {previous.path.name} by {overlap:.1f} s")
            )
            continue
        if previous is not None and item.start_ns <= previous.end_ns + tolerance_ns:
            runs[-1].append(item)
        else:
            runs.append([item])
        last[item.station_id] = item
    return runs, skipped


def model_rate_blocks(archive: ArchiveFile, seconds: int = READ_SECONDS) -> Iterator[Block]:
    """The file as mono blocks at the model rate; the first carries the file's start.

    Raises ArchiveReadError part-way for a damaged file, after yielding what was good.
    """
    from soundscape.producers.resample import StreamResampler

    resampler = StreamResampler(archive.sample_rate, MODEL_RATE)
    for block in read_blocks(archive, seconds):
        out = resampler.process(block)
        if out.frames:
            yield out
    tail = resampler.flush()
    if tail.size:
        yield Block(tail, MODEL_RATE)
