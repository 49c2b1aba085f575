"""The training manifest of `models train`: parsing, every check naming its row, the
group split, and the cutting of spans into chunks (no audio read: file lengths are given)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soundscape.errors import UserError
from soundscape.models.training_manifest import (
    TRAIN,
    VALIDATION,
    Row,
    chunk_audio,
    chunk_specs,
    class_counts,
    cut_span,
    is_training_manifest,
    read_label_file,
    read_training_manifest,
    split_groups,
    split_warnings,
    targets,
)

HEADER = "path,start,end,labels,group\n"


def _write(tmp_path: Path, body: str, files: dict[str, float] | None = None,
           header: str = HEADER) -> tuple[Path, dict[Path, float]]:
    """A manifest in tmp_path and the lengths of the (empty) audio files it names."""
    lengths = {}
    default = {"a.wav": 60.0, "b.wav": 30.0, "c.wav": 12.0}
    for name, seconds in (default if files is None else files).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
        lengths[path.absolute()] = seconds
    manifest = tmp_path / "labels.csv"
    manifest.write_text(header + body)
    return manifest, lengths


def _read(tmp_path: Path, body: str, labels=None, files=None, header: str = HEADER):
    manifest, lengths = _write(tmp_path, body, files, header)
    return read_training_manifest(manifest, labels, durations=lambda p: lengths[p])


def _problems(tmp_path: Path, body: str, labels=None, files=None, header: str = HEADER) -> str:
    with pytest.raises(UserError) as caught:
        _read(tmp_path, body, labels, files, header)
    return caught.value.message


def test_a_good_manifest_parses_with_line_numbers_paths_and_defaults(tmp_path: Path) -> None:
    manifest = _read(tmp_path, "a.wav,0,30,warbler;low-hoot,site1\n"
                               "a.wav,30,40,,site1\n"
                               "\n"
                               "b.wav,,,cicada,\n")
    first, negative, whole = manifest.rows
    assert (first.line, negative.line, whole.line) == (2, 3, 5)
    assert first.path == (tmp_path / "a.wav").absolute() and first.text == "a.wav"
    assert first.labels == ("warbler", "low-hoot") and negative.labels == ()
    assert whole.group == "b.wav" and (whole.start, whole.end) == (None, None)
    assert manifest.span(whole) == (0.0, 30.0)
    assert manifest.labels == ("cicada", "low-hoot", "warbler")  # no set given: sorted union
    assert len(manifest.sha256) == 64
    assert manifest.groups == ("b.wav", "site1")


def test_the_web_apps_review_export_trains_as_it_is(tmp_path: Path) -> None:
    """`reviews export` writes station and recording, not group: recording is the group."""
    header = "path,start,end,labels,station,recording,chunk_id,reviewers,reviewed_at\n"
    manifest, lengths = _write(tmp_path, "a.wav,0,10,wren,st-1,st-1/2026-12-01,c1,ann,t\n"
                                         "b.wav,0,10,,st-1,st-1/2026-12-02,c2,bob,t\n"
                                         "c.wav,0,10,wren,st-2,,c3,ann,t\n", header=header)
    read = read_training_manifest(manifest, None, durations=lambda p: lengths[p])
    assert [r.group for r in read.rows] == ["st-1/2026-12-01", "st-1/2026-12-02", "st-2"]
    assert not any("ignoring" in note for note in read.warnings)


def test_the_digest_follows_the_bytes(tmp_path: Path) -> None:
    one = _read(tmp_path, "a.wav,0,30,warbler,s1\nb.wav,,,cicada,s2\n").sha256
    two = _read(tmp_path, "a.wav,0,31,warbler,s1\nb.wav,,,cicada,s2\n").sha256
    assert one != two


def test_missing_files_are_listed_by_row_up_to_ten(tmp_path: Path) -> None:
    body = "".join(f"gone{i}.wav,,,warbler,g{i}\n" for i in range(12))
    message = _problems(tmp_path, body + "a.wav,,,warbler,s\n")
    assert "12 row(s) name files that are missing or unreadable" in message
    assert "line 2 (gone0.wav): no such file" in message
    assert "line 11 (gone9.wav)" in message and "gone10.wav" not in message
    assert "and 2 more" in message and "nothing was trained" in message


def test_unreadable_audio_is_named(tmp_path: Path) -> None:
    manifest, _ = _write(tmp_path, "a.wav,,,warbler,s\n")

    def broken(path: Path) -> float:
        raise RuntimeError("Format not recognised.")

    with pytest.raises(UserError, match=r"line 2 \(a.wav\): cannot read it as audio"):
        read_training_manifest(manifest, durations=broken)


def test_bad_spans_name_their_rows(tmp_path: Path) -> None:
    message = _problems(tmp_path, "a.wav,20,10,warbler,s\n"
                                  "b.wav,0,45,warbler,s\n"
                                  "c.wav,13,,warbler,s\n"
                                  "a.wav,x,30,warbler,s\n"
                                  "a.wav,-1,5,warbler,s\n")
    assert "line 2 (a.wav): end 10 s is not after start 20 s" in message
    assert "line 3 (b.wav): end 45 s is past the file's end (30.00 s)" in message
    assert "line 4 (c.wav): start 13 s is past the file's end (12.00 s)" in message
    assert "line 5 (a.wav): start 'x' is not a number" in message
    assert "line 6 (a.wav): start '-1' is not a number of seconds >= 0" in message


def test_an_end_a_hair_past_the_file_is_rounding(tmp_path: Path) -> None:
    manifest = _read(tmp_path, "c.wav,0,12.03,warbler,s\nb.wav,,,x,t\n")
    assert manifest.span(manifest.rows[0]) == (0.0, 12.0)


def test_unknown_labels_are_named_with_their_rows(tmp_path: Path) -> None:
    message = _problems(tmp_path, "a.wav,0,10,warbler;warblr,s\nb.wav,,,cicadaa,t\n",
                        labels=("warbler", "cicada"))
    assert "label 'warblr' is not in the label set: line 2 (a.wav)" in message
    assert "label 'cicadaa' is not in the label set: line 3 (b.wav)" in message


def test_overlapping_spans_of_a_file_name_both_rows(tmp_path: Path) -> None:
    message = _problems(tmp_path, "a.wav,0,30,warbler,s\n"
                                  "a.wav,30,40,,s\n"  # meets the first: fine
                                  "a.wav,35,50,cicada,s\n"
                                  "b.wav,,,warbler,t\n"
                                  "b.wav,5,10,cicada,t\n")
    assert "line 4 (a.wav) overlaps line 3 (a.wav)" in message
    assert "line 6 (b.wav) overlaps line 5 (b.wav)" in message
    assert message.count("overlaps") == 2


def test_a_group_forced_into_both_splits_is_refused(tmp_path: Path) -> None:
    message = _problems(tmp_path, "a.wav,0,10,warbler,s1,train\n"
                                  "a.wav,10,20,warbler,s1,validation\n"
                                  "b.wav,,,warbler,s2,holdout\n",
                        header="path,start,end,labels,group,split\n")
    assert "group 's1' is put in both splits" in message
    assert "train: lines 2" in message and "validation: lines 3" in message
    assert "line 4 (b.wav): split 'holdout' is neither train nor validation" in message


def test_all_problems_come_in_one_error_bounded(tmp_path: Path) -> None:
    body = "".join(f"a.wav,{i},{i},warbler,s\n" for i in range(40))
    message = _problems(tmp_path, body)
    assert message.startswith(f"{tmp_path / 'labels.csv'}: ")
    assert "problem(s)" in message and "... and" in message


def test_a_header_without_the_columns_shows_the_format(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        _read(tmp_path, "a.wav,warbler\n", header="file,label\n")
    assert "lacks the column(s) path, labels" in caught.value.message
    assert "path,start,end,labels,group" in caught.value.hint


def test_unknown_columns_are_noted_not_fatal(tmp_path: Path) -> None:
    manifest = _read(tmp_path, "a.wav,,,warbler,s,x\nb.wav,,,warbler,t,y\n",
                     header="path,start,end,labels,group,notes\n")
    assert any("ignoring the column(s) notes" in w for w in manifest.warnings)


def test_a_label_with_one_example_is_a_warning(tmp_path: Path) -> None:
    manifest = _read(tmp_path, "a.wav,0,10,warbler;cicada,s1\nb.wav,,,warbler,s2\n",
                     labels=("warbler", "cicada", "owl"))
    text = " ".join(manifest.warnings)
    assert "label 'cicada' has one example (line(s) 2)" in text
    assert "trained on but not validated" in text
    assert "label 'owl' has no example" in text
    assert "'warbler'" not in text


def test_label_files_and_format_detection(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("warbler\n\ncicada\n")
    assert read_label_file(labels) == ("warbler", "cicada")
    labels.write_text("warbler\nwarbler\n")
    with pytest.raises(UserError, match="repeat"):
        read_label_file(labels)
    new, _ = _write(tmp_path, "a.wav,,,warbler,s\n")
    old = tmp_path / "old.csv"
    old.write_text("file,label\na.wav,warbler\n")
    assert is_training_manifest(new) and not is_training_manifest(old)


# ---- the split ---------------------------------------------------------------------------

def _rows(spec: dict[str, list[str]], split: dict[str, str] | None = None) -> list[Row]:
    """One row per (group, labels) entry."""
    rows = []
    for group, labels in spec.items():
        for i, names in enumerate(labels):
            rows.append(Row(len(rows) + 2, Path(f"/{group}-{i}.wav"), f"{group}-{i}.wav", None, None,
                            tuple(n for n in names.split(";") if n), group,
                            (split or {}).get(group)))
    return rows


def _sides(rows: list[Row], assignment: dict[str, str], side: str) -> set[str]:
    return {n for r in rows if assignment[r.group] == side for n in r.labels}


def test_the_split_is_by_group_deterministic_and_about_a_fifth() -> None:
    rows = _rows({f"g{i}": ["warbler", "cicada;owl", ""] for i in range(20)})
    first = split_groups(rows, seed=1)
    assert first == split_groups(rows, seed=1)
    assert set(first) == {f"g{i}" for i in range(20)}
    assert sum(s == VALIDATION for s in first.values()) == 4
    others = [split_groups(rows, seed=s) for s in range(2, 8)]
    assert any(o != first for o in others)


@pytest.mark.parametrize("seed", range(10))
def test_every_label_in_two_groups_lands_on_both_sides(seed: int) -> None:
    rows = _rows({"a": ["warbler", "owl"], "b": ["warbler"], "c": ["owl;cicada"],
                  "d": ["cicada"], "e": ["lonely"], "f": [""], "g": ["warbler"], "h": ["owl"],
                  "i": [""], "j": ["cicada"]})
    assignment = split_groups(rows, seed=seed)
    train, validation = _sides(rows, assignment, TRAIN), _sides(rows, assignment, VALIDATION)
    assert "lonely" in train and "lonely" not in validation  # one group: kept for training
    assert {"warbler", "owl", "cicada"} <= train & validation
    assert set(assignment.values()) == {TRAIN, VALIDATION}


def test_the_split_column_is_obeyed() -> None:
    rows = _rows({"a": ["warbler"], "b": ["warbler"], "c": ["warbler"], "d": ["warbler"]},
                 split={"a": VALIDATION, "b": TRAIN})
    assignment = split_groups(rows, seed=0)
    assert assignment["a"] == VALIDATION and assignment["b"] == TRAIN
    assert sum(s == VALIDATION for s in assignment.values()) == 1  # 20% of 4 -> 1, given


def test_one_group_cannot_be_split_and_a_forced_side_must_not_be_empty() -> None:
    with pytest.raises(UserError, match="at least two"):
        split_groups(_rows({"a": ["warbler", "cicada"]}), seed=0)
    with pytest.raises(UserError, match="no group for train"):
        split_groups(_rows({"a": ["warbler"], "b": ["warbler"]},
                           split={"a": VALIDATION, "b": VALIDATION}), seed=0)


def test_a_label_only_in_validation_is_warned() -> None:
    rows = _rows({"a": ["warbler"], "b": ["owl"]}, split={"a": TRAIN, "b": VALIDATION})
    warnings = split_warnings(rows, split_groups(rows, 0), ("warbler", "owl"))
    assert warnings == ["label 'owl' is only in validation groups: it is validated but never "
                        "trained on"]


# ---- chunks ------------------------------------------------------------------------------

def test_spans_are_cut_into_chunks_keeping_long_tails_only() -> None:
    assert cut_span(0, 10, 10) == [(0, 10)]
    assert cut_span(0, 3, 10) == [(0, 3)]  # shorter than a chunk: one, padded later
    assert cut_span(5, 30, 10) == [(5, 15), (15, 25), (25, 30)]  # 5 s tail kept
    assert cut_span(0, 24, 10) == [(0, 10), (10, 20)]  # 4 s tail dropped
    assert cut_span(0, 105.5, 10)[-1] == (100, 105.5)


def test_chunks_carry_their_rows_labels_and_groups(tmp_path: Path) -> None:
    manifest = _read(tmp_path, "a.wav,0,24,warbler,s1\nb.wav,,,,s2\nc.wav,,,cicada;warbler,s3\n",
                     labels=("warbler", "cicada"))
    chunks = chunk_specs(manifest, 10.0)
    assert [(c.row.line, c.position, c.start, c.end) for c in chunks] == [
        (2, 0, 0, 10), (2, 1, 10, 20), (3, 0, 0, 10), (3, 1, 10, 20), (3, 2, 20, 30),
        (4, 0, 0, 10)]  # the 4 s and 2 s tails are dropped
    assert chunks[0].group == "s1" and chunks[2].labels == ()
    truth = targets(chunks, manifest.labels)
    assert truth.tolist()[0] == [1.0, 0.0] and truth.tolist()[-1] == [1.0, 1.0]
    assert class_counts(chunks, manifest.labels) == {"warbler": 3, "cicada": 1, "(none)": 3}


def test_chunk_audio_reads_resamples_and_pads(tmp_path: Path) -> None:
    import soundfile as sf

    rate = 16_000
    tone = np.sin(np.arange(rate * 13) / rate * 2 * np.pi * 440).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.wav", np.stack([tone, tone], axis=1), rate)
    manifest = read_training_manifest(_write(tmp_path, "a.wav,,,warbler,s\n", files={})[0])
    chunks = chunk_specs(manifest, 1.0)
    assert len(chunks) == 13
    pcm = list(chunk_audio(chunks[:1], 32_000, 32_000))
    assert pcm[0].shape == (32_000,) and pcm[0].dtype == np.float32
    assert 0.3 < np.abs(pcm[0]).max() < 0.6
    short = chunk_specs(manifest, 10.0)[-1]  # 3 s tail, dropped; take a 10 s one
    (padded,) = chunk_audio([short], 32_000, 400_000)
    assert padded.shape == (400_000,) and not padded[330_000:].any()


def test_the_training_benchmarks_manifest_passes_its_own_checks(tmp_path: Path) -> None:
    from soundscape.models.train_bench import STATIONS, write_synthetic_manifest

    manifest = read_training_manifest(write_synthetic_manifest(tmp_path, 45), None)
    assert len(manifest.rows) == 45 and len(manifest.groups) == STATIONS
    assert all("only in group" in w or "one example" in w for w in manifest.warnings)
