"""The training manifest of `soundscape models train`: a CSV of labelled spans of recordings.

    path,start,end,labels,group[,split]
    site1/2025-05-01.wav,0,30,warbler;low-hoot,site1
    site1/2025-05-01.wav,30,40,,site1            <- no label: a checked negative
    site2/dawn.flac,,,cicada,site2               <- no start/end: the whole file

Everything here is plain logic (csv, numpy; soundfile and soxr only when audio is read),
so the checks run and are tested without PyTorch. A manifest is checked as a whole and
every problem is reported at once, each naming its CSV line and path, so a user fixes
them in one pass; nothing is ever trained on a row that failed a check.

The split is by group (a station, or one recording): chunks of one place or recording
are alike, so a group lies wholly on one side, or validation would measure memory.
Without a `group` column, `recording` then `station` name the group: the manifest
`soundscape reviews export` writes from the web app's reviews trains as it is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundscape.errors import UserError

COLUMNS = ("path", "start", "end", "labels", "group", "split")
#: Columns of `reviews export` that name a group when `group` does not, in this order.
GROUP_FALLBACKS = ("recording", "station")
#: Columns of `reviews export` that are known and not needed here.
REVIEW_EXPORT_EXTRAS = ("chunk_id", "reviewers", "reviewed_at")
REQUIRED = ("path", "labels")
TRAIN, VALIDATION = "train", "validation"
SPLITS = (TRAIN, VALIDATION)
#: Rows named per kind of problem, and problems listed in all, before "... and N more".
MAX_ROWS_LISTED = 10
MAX_PROBLEMS = 25
#: A span may end this far past the file's end (rounding of hand-written times).
END_TOLERANCE_S = 0.05
#: A span's last partial chunk is kept (zero-padded) when at least this long.
MIN_TAIL_S = 5.0
#: Share of the groups that go to validation.
VALIDATION_SHARE = 0.2
EXAMPLE = ("path,start,end,labels,group\n"
           "site1/2025-05-01.wav,0,30,warbler;low-hoot,site1\n"
           "site1/2025-05-01.wav,30,40,,site1\n"
           "site2/dawn.flac,,,cicada,site2")

Durations = Callable[[Path], float]


@dataclass(frozen=True)
class Row:
    """One manifest row, parsed (the path made absolute, relative to the CSV)."""

    line: int  # 1-based line of the CSV (the header is line 1)
    path: Path
    text: str  # the path as written
    start: float | None  # seconds; None: the file's start
    end: float | None  # seconds; None: the file's end
    labels: tuple[str, ...]
    group: str
    split: str | None = None  # forced by the `split` column

    def where(self) -> str:
        return f"line {self.line} ({self.text})"


@dataclass
class TrainingManifest:
    """A checked manifest: its rows, the files' lengths, the label set and its digest."""

    path: Path
    sha256: str
    rows: tuple[Row, ...]
    durations: dict[Path, float]
    labels: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)

    def span(self, row: Row) -> tuple[float, float]:
        """(start, end) seconds of a row, the file's bounds filling what it leaves out."""
        end = self.durations[row.path] if row.end is None else min(row.end, self.durations[row.path])
        return (row.start or 0.0), end

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(sorted({r.group for r in self.rows}))


def audio_duration(path: Path) -> float:
    """Seconds of audio in a file (from its header; raises if it cannot be read)."""
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def _bounded(items: Sequence[str], limit: int = MAX_ROWS_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _seconds(value: str, name: str, problems: list[str], where: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        problems.append(f"{where}: {name} {value!r} is not a number of seconds >= 0")
        return None
    return number


def _group(values: dict[str, str]) -> str:
    for column in ("group", *GROUP_FALLBACKS):
        if values.get(column):
            return values[column]
    return ""


def _parse(path: Path, text: str, problems: list[str], notes: list[str]) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text))
    header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UserError(f"{path}: the header lacks the column(s) {', '.join(missing)} "
                        f"(found: {', '.join(header) or 'nothing'})",
                        hint=f"the first line names the columns, e.g.\n{EXAMPLE}")
    extra = [c for c in header if c not in (*COLUMNS, *GROUP_FALLBACKS, *REVIEW_EXPORT_EXTRAS)]
    if extra:
        notes.append(f"ignoring the column(s) {', '.join(extra)} (known: {', '.join(COLUMNS)})")
    reader.fieldnames = header
    rows = []
    try:
        for record in reader:
            line = reader.line_num
            values = {k: (v or "").strip() if isinstance(v, str) else "" for k, v in record.items()
                      if k is not None}
            if not any(values.values()):
                continue  # a blank line
            text_path = values.get("path", "")
            where = f"line {line} ({text_path or 'no path'})"
            if not text_path:
                problems.append(f"{where}: the path is empty")
                continue
            file = Path(text_path).expanduser()
            file = file if file.is_absolute() else path.parent / file
            start = _seconds(values.get("start", ""), "start", problems, where)
            end = _seconds(values.get("end", ""), "end", problems, where)
            if start is not None and end is not None and end <= start:
                problems.append(f"{where}: end {end:g} s is not after start {start:g} s")
            labels = tuple(dict.fromkeys(n.strip() for n in values.get("labels", "").split(";")
                                         if n.strip()))
            split = values.get("split", "").lower() or None
            if split is not None and split not in SPLITS:
                problems.append(f"{where}: split {split!r} is neither train nor validation "
                                "(or empty, to let the split choose)")
                split = None
            rows.append(Row(line, file.absolute(), text_path, start, end, labels,
                            _group(values) or text_path, split))
    except csv.Error as exc:
        raise UserError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    return rows


def _check_files(rows: list[Row], durations: Durations, problems: list[str]) -> dict[Path, float]:
    lengths: dict[Path, float] = {}
    bad: list[str] = []
    why: dict[Path, str] = {}
    for row in rows:
        if row.path not in lengths and row.path not in why:
            if not row.path.is_file():
                why[row.path] = "no such file"
            else:
                try:
                    lengths[row.path] = durations(row.path)
                except Exception as exc:  # soundfile: LibsndfileError, RuntimeError, OSError
                    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                    reason = reason.rsplit("': ", 1)[-1]  # soundfile repeats the path first
                    why[row.path] = f"cannot read it as audio ({reason[:100]})"
        if row.path in why:
            bad.append(f"{row.where()}: {why[row.path]}")
    if bad:
        problems.append(f"{len(bad)} row(s) name files that are missing or unreadable: "
                        + _bounded(bad))
    for row in rows:
        length = lengths.get(row.path)
        if length is None:
            continue
        if row.start is not None and row.start >= length:
            problems.append(f"{row.where()}: start {row.start:g} s is past the file's end "
                            f"({length:.2f} s)")
        elif row.end is not None and row.end > length + END_TOLERANCE_S:
            problems.append(f"{row.where()}: end {row.end:g} s is past the file's end "
                            f"({length:.2f} s)")
    return lengths


def _check_overlaps(rows: list[Row], lengths: dict[Path, float], problems: list[str]) -> None:
    """Two rows may not cover the same audio: it would count twice, with other labels."""
    by_file: dict[Path, list[tuple[float, float, Row]]] = defaultdict(list)
    for row in rows:
        if row.start is not None and row.end is not None and row.end <= row.start:
            continue  # already refused as such
        end = row.end if row.end is not None else lengths.get(row.path, math.inf)
        by_file[row.path].append((row.start or 0.0, end, row))
    for spans in by_file.values():
        spans.sort(key=lambda s: (s[0], s[1], s[2].line))
        reach_end, reach_row = -math.inf, None
        for start, end, row in spans:
            if reach_row is not None and start < reach_end:
                problems.append(f"{row.where()} overlaps line {reach_row.line} "
                                f"({reach_row.text}): the same audio in two rows; merge them "
                                "into one row with both labels, or make the spans meet")
            if end > reach_end:
                reach_end, reach_row = end, row


def _check_forced_groups(rows: list[Row], problems: list[str]) -> None:
    sides: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.split is not None:
            sides[row.group][row.split].append(row.line)
    for group, split in sorted(sides.items()):
        if len(split) > 1:
            problems.append(f"group {group!r} is put in both splits by the split column "
                            f"(train: lines {_bounded([str(n) for n in split[TRAIN]])}; "
                            f"validation: lines {_bounded([str(n) for n in split[VALIDATION]])}): "
                            "a group lies wholly on one side")


def _raise(path: Path, problems: list[str], extra_hint: str | None = None) -> None:
    shown = problems[:MAX_PROBLEMS]
    more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    hint = "fix these rows and run again (lines count from 1, the header)"
    raise UserError(f"{path}: {len(problems)} problem(s); nothing was trained:\n  - "
                    + "\n  - ".join(shown) + more,
                    hint=f"{hint}; {extra_hint}" if extra_hint else hint)


def read_training_manifest(path: Path, labels: Sequence[str] | None = None, *,
                           durations: Durations = audio_duration,
                           label_source: str = "the label set",
                           unknown_hint: str | None = None) -> TrainingManifest:
    """Read and check a manifest; raise one UserError listing every problem found.

    `labels`: the label set the model will have (a --labels file, the parent bundle's);
    None takes the manifest's own labels (sorted). `durations` gives a file's length in
    seconds (injectable for tests); `unknown_hint` joins the hint when labels are unknown.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text", hint="save the CSV as UTF-8") from None
    problems: list[str] = []
    notes: list[str] = []
    rows = _parse(path, text, problems, notes)
    if not rows and not problems:
        raise UserError(f"{path}: no rows", hint=f"one row per labelled span, e.g.\n{EXAMPLE}")
    lengths = _check_files(rows, durations, problems)
    if labels is not None:
        known = set(labels)
        unknown: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            for name in row.labels:
                if name not in known:
                    unknown[name].append(row.where())
        for name, where in sorted(unknown.items()):
            problems.append(f"label {name!r} is not in {label_source}: {_bounded(where, 5)}")
        if not unknown:
            unknown_hint = None
    _check_overlaps(rows, lengths, problems)
    _check_forced_groups(rows, problems)
    if problems:
        _raise(path, problems, unknown_hint if labels is not None else None)
    label_set = tuple(labels) if labels is not None else tuple(sorted({n for r in rows for n in r.labels}))
    if not label_set:
        raise UserError(f"{path}: no row has a label", hint="name each span's species in the "
                        "labels column, ';'-separated; leave it empty only for negatives")
    manifest = TrainingManifest(path, hashlib.sha256(data).hexdigest(), tuple(rows), lengths,
                                label_set, notes)
    manifest.warnings += example_warnings(manifest.rows, label_set)
    return manifest


def example_warnings(rows: Iterable[Row], labels: Sequence[str]) -> list[str]:
    """Labels that cannot be validated: only one group (or none) has them."""
    groups: dict[str, dict[str, list[int]]] = {name: defaultdict(list) for name in labels}
    for row in rows:
        for name in row.labels:
            if name in groups:
                groups[name][row.group].append(row.line)
    warnings = []
    for name in labels:
        found = groups[name]
        if not found:
            warnings.append(f"label {name!r} has no example: it is trained as absent everywhere")
        elif len(found) == 1:
            ((group, lines),) = found.items()
            kind = "one example" if len(lines) == 1 else f"examples only in group {group!r}"
            warnings.append(f"label {name!r} has {kind} (line(s) {_bounded([str(n) for n in lines])})"
                            ": it cannot be in both splits, so it is trained on but not validated")
    return warnings


# ---- the split ---------------------------------------------------------------------------

def split_groups(rows: Sequence[Row], seed: int, share: float = VALIDATION_SHARE) -> dict[str, str]:
    """{group: "train" | "validation"}: about `share` of the groups (at least one) to
    validation, none on both sides, deterministic for a seed.

    Groups the `split` column names stay where it puts them. The others are chosen
    greedily, in a seeded order: each step takes the group that brings the most labels
    not yet validated, never one that would leave a label without a training group, so
    every label found in two or more groups is on both sides where the groups allow.
    """
    label_groups: dict[str, set[str]] = defaultdict(set)
    group_labels: dict[str, set[str]] = defaultdict(set)
    forced: dict[str, str] = {}
    for row in rows:
        group_labels[row.group].update(row.labels)
        for name in row.labels:
            label_groups[name].add(row.group)
        if row.split is not None:
            forced[row.group] = row.split
    groups = sorted(group_labels)
    if len(groups) < 2:
        raise UserError(f"the manifest has {len(groups)} group(s); validation needs at least two",
                        hint="give the group column a station or recording name per row, or list "
                             "more recordings (each file is its own group by default)")
    assignment = dict(forced)
    target = min(len(groups) - 1, max(1, round(len(groups) * share)))
    order = [groups[i] for i in np.random.default_rng([seed, 2]).permutation(len(groups))]
    free = [g for g in order if g not in forced]
    validated = {n for g, s in forced.items() if s == VALIDATION for n in group_labels[g]}
    in_train = {name: {g for g in found if assignment.get(g) != VALIDATION}
                for name, found in label_groups.items()}

    def loses(group: str) -> int:
        """Labels that would have no training group left if `group` went to validation."""
        return sum(1 for name in group_labels[group] if in_train[name] <= {group})

    while sum(1 for s in assignment.values() if s == VALIDATION) < target and free:
        candidates = [g for g in free if loses(g) == 0]
        if not candidates:
            if any(s == VALIDATION for s in assignment.values()):
                break
            candidates = sorted(free, key=loses)[:1]  # one validation group, whatever it costs
        best = max(candidates, key=lambda g: len(group_labels[g] - validated))  # first on ties
        assignment[best] = VALIDATION
        validated |= group_labels[best]
        for name in group_labels[best]:
            in_train[name].discard(best)
        free.remove(best)
    for group in groups:
        assignment.setdefault(group, TRAIN)
    if VALIDATION not in assignment.values() or TRAIN not in assignment.values():
        side = TRAIN if VALIDATION in assignment.values() else VALIDATION
        raise UserError(f"the split column leaves no group for {side}",
                        hint="leave the split column empty for some rows to let the split choose")
    return dict(sorted(assignment.items()))


def split_warnings(rows: Sequence[Row], assignment: dict[str, str], labels: Sequence[str]) -> list[str]:
    """Labels the split leaves without training examples (validated, never learnt)."""
    trained = {n for r in rows if assignment[r.group] == TRAIN for n in r.labels}
    validated = {n for r in rows if assignment[r.group] == VALIDATION for n in r.labels}
    return [f"label {name!r} is only in validation groups: it is validated but never trained on"
            for name in labels if name in validated and name not in trained]


# ---- chunks ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkSpec:
    """One 10 s chunk of a row: seconds [start, end) of its file (shorter ones are padded)."""

    row: Row
    position: int  # the chunk's order within its row
    start: float
    end: float

    @property
    def labels(self) -> tuple[str, ...]:
        return self.row.labels

    @property
    def group(self) -> str:
        return self.row.group


def cut_span(start: float, end: float, chunk_s: float, min_tail_s: float = MIN_TAIL_S
             ) -> list[tuple[float, float]]:
    """A span as chunks of `chunk_s` seconds; a last partial one is kept when at least
    `min_tail_s` long, and a span shorter than one chunk is one (padded) chunk."""
    length = end - start
    full = int(math.floor(length / chunk_s + 1e-9))
    spans = [(start + i * chunk_s, start + (i + 1) * chunk_s) for i in range(full)]
    tail = length - full * chunk_s
    if tail > 1e-9 and (tail >= min_tail_s or not spans):
        spans.append((start + full * chunk_s, end))
    return spans


def chunk_specs(manifest: TrainingManifest, chunk_s: float,
                rows: Iterable[Row] | None = None) -> list[ChunkSpec]:
    """Every row's chunks, in row order."""
    return [ChunkSpec(row, i, s, e)
            for row in (manifest.rows if rows is None else rows)
            for i, (s, e) in enumerate(cut_span(*manifest.span(row), chunk_s))]


def targets(chunks: Sequence[ChunkSpec], labels: Sequence[str]) -> np.ndarray:
    """[n, C] float32 multi-hot truth of the chunks."""
    index = {name: i for i, name in enumerate(labels)}
    out = np.zeros((len(chunks), len(labels)), np.float32)
    for row, chunk in enumerate(chunks):
        for name in chunk.labels:
            if name in index:
                out[row, index[name]] = 1.0
    return out


def class_counts(chunks: Iterable[ChunkSpec], labels: Sequence[str]) -> dict[str, int]:
    """Chunks per label, and `(none)` for the chunks with no label (negatives)."""
    counts = dict.fromkeys(labels, 0)
    counts["(none)"] = 0
    for chunk in chunks:
        names = [n for n in chunk.labels if n in counts]
        for name in names:
            counts[name] += 1
        if not names:
            counts["(none)"] += 1
    return counts


def read_span(path: Path, start: float, end: float, sample_rate: int) -> np.ndarray:
    """Mono float32 audio of [start, end) seconds of a file, at `sample_rate`."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as handle:
        rate = handle.samplerate
        first = int(round(start * rate))
        handle.seek(min(first, handle.frames))
        audio = handle.read(max(0, int(round(end * rate)) - first), dtype="float32",
                            always_2d=True)
    mono = audio.mean(axis=1).astype(np.float32)
    if rate != sample_rate:
        import soxr

        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    return mono


def chunk_audio(chunks: Sequence[ChunkSpec], sample_rate: int, samples: int) -> Iterator[np.ndarray]:
    """Each chunk's audio, [samples] float32, zero-padded at the end when short."""
    for chunk in chunks:
        pcm = read_span(chunk.row.path, chunk.start, chunk.end, sample_rate)[:samples]
        yield np.pad(pcm, (0, samples - len(pcm))) if len(pcm) < samples else pcm


def read_label_file(path: Path) -> tuple[str, ...]:
    """Labels, one a line (blank lines skipped), as `--labels FILE` gives them."""
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it as a label file ({exc})") from None
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{path}: labels repeat: {', '.join(repeated[:5])}")
    if not names:
        raise UserError(f"{path}: no labels", hint="one label per line")
    return tuple(names)


def is_training_manifest(path: Path) -> bool:
    """Whether a CSV's header is this format (path and labels columns), not evaluate's
    older `file,label` one."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    names = {h.strip().lower() for h in header}
    return "path" in names and "labels" in names
