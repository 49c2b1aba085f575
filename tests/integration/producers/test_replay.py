"""Archive replay into the real broker: an hour of recordings gives exactly 360 abutting
chunks with the right stations and times; bad files are skipped with reasons; a stopped
replay continues from its checkpoint; replaying again gives the same chunk ids."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundscape.producers.archive import Naming
from soundscape.producers.replay import Replay
from soundscape.settings import Settings

from conftest import cli_env, read_topic

T0 = 1_714_541_400 * 10**9  # 2024-05-01 05:30:00 UTC
CHUNK_NS = 10 * 10**9
SECOND = 10**9


def _audio(seconds: int, rate: int, channels: int, seed: int) -> np.ndarray:
    """Field-like noise, cheap to make in bulk: one generated second, varied per second."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rate, channels)).astype(np.float32) * 0.02
    gains = rng.uniform(0.5, 1.5, seconds).astype(np.float32)
    return (np.tile(base, (seconds, 1)) * np.repeat(gains, rate)[:, None]).astype(np.float32)


def _write(path: Path, seconds: int, rate: int, channels: int = 1, seed: int = 0,
           **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _audio(seconds, rate, channels, seed), rate, **kw)
    return path


def _stamp(offset_s: int) -> str:
    from datetime import datetime, timezone

    moment = datetime.fromtimestamp(T0 // SECOND + offset_s, tz=timezone.utc)
    return moment.strftime("%Y%m%d_%H%M%S")


@pytest.fixture(scope="module")
def hour_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recorders, 30 minutes each, split into files whose lengths are not multiples
    of 10 s, at different rates, channel counts and formats."""
    root = tmp_path_factory.mktemp("hour")
    offset = 0
    # An AudioMoth card: station from the folder, UTC times in the names.
    for seconds, rate, channels, suffix in ((595, 48_000, 2, "WAV"), (605, 44_100, 1, "flac"),
                                            (600, 32_000, 1, "wav")):
        _write(root / "Marsh-03" / f"{_stamp(offset)}.{suffix}", seconds, rate, channels, offset)
        offset += seconds
    # A Song Meter: station from the prefix.
    offset = 0
    for seconds, rate, suffix in ((583, 48_000, "flac"), (617, 24_000, "wav"),
                                  (600, 44_100, "flac")):
        _write(root / "card-b" / f"SMA01234_{_stamp(offset)}.{suffix}", seconds, rate, 1,
               1000 + offset)
        offset += seconds
    return root


def test_an_hour_of_archive_gives_exactly_360_abutting_chunks(
    kafka_settings: Settings, hour_archive: Path, tmp_path: Path,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_cli(["replay", str(hour_archive), "--json"], cli_env(kafka_settings, tmp_path),
                     timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    print(f"\nhour replay: {summary['chunks']} chunks, {summary['megabytes']} MB in "
          f"{summary['seconds']} s, {summary['chunks_per_s']} chunks/s")
    assert summary["chunks"] == 360 and summary["files_replayed"] == 6
    assert summary["skipped"] == [] and summary["partial"] == []
    assert summary["padded_chunks"] == 0 and summary["dropped_remainders"] == 0

    records = read_topic(kafka_settings, kafka_settings.topics.audio, expected=360)
    assert len(records) == 360
    by_station: dict[str, list] = defaultdict(list)
    for record in records:
        envelope = record.envelope()
        assert envelope.source == "replay" and envelope.sample_rate == 32_000
        assert record.header("padded_samples") is None
        by_station[envelope.station_id].append(envelope)
    assert sorted(by_station) == ["marsh-03", "sma01234"]
    for envelopes in by_station.values():
        envelopes.sort(key=lambda e: e.chunk_start)
        assert [e.chunk_start for e in envelopes] == [T0 + k * CHUNK_NS for k in range(180)]
        assert [e.seq for e in envelopes] == list(range(180))
        assert all(e.gap_ns == 0 for e in envelopes)
    assert len({r.envelope().chunk_id for r in records}) == 360


@pytest.fixture
def mixed_archive(tmp_path: Path) -> Path:
    """Good files in four formats, and the bad: corrupt, empty, truncated, too short."""
    root = tmp_path / "archive"
    pond = root / "pond"
    _write(pond / f"{_stamp(0)}.WAV", 65, 48_000, 2, 1)          # 05:30:00 .. 05:31:05
    _write(pond / f"{_stamp(65)}.flac", 37, 44_100, 1, 2)        # continues: 102 s in all
    _write(pond / f"{_stamp(600)}.wav", 4, 32_000, 1, 3)         # alone, 4 s: padded
    _write(pond / f"{_stamp(700)}.wav", 1, 32_000, 1, 4)         # alone, 1 s: dropped
    _write(root / "sm" / f"SMB00001_{_stamp(0)}.ogg", 25, 44_100, 1, 5)
    _write(root / "sm" / f"SMB00001_{_stamp(60)}.mp3", 25, 44_100, 1, 6)
    truncated = _write(root / "sm" / f"SMB00001_{_stamp(120)}.flac", 40, 32_000, 1, 7)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / "sm" / f"SMB00001_{_stamp(200)}.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    (root / "sm" / f"SMB00001_{_stamp(300)}.wav").write_bytes(b"")
    (root / "sm" / "notes.txt").write_text("field notes")
    return root


def _replay(settings: Settings, archive: Path, tmp_path: Path, **kw: object) -> object:
    run_settings = settings.model_copy(update={
        "replay": settings.replay.model_copy(update={"checkpoint_dir": tmp_path / "cp"})})
    return Replay(run_settings, [str(archive)], Naming(), progress=False, **kw).run()  # type: ignore[arg-type]


def test_bad_files_resume_and_same_ids_on_replaying_again(
    kafka_settings: Settings, mixed_archive: Path, tmp_path: Path,
) -> None:
    first = _replay(kafka_settings, mixed_archive, tmp_path, limit=4)
    assert first.chunks == 4 and first.stopped_early  # type: ignore[attr-defined]
    second = _replay(kafka_settings, mixed_archive, tmp_path)
    s = second  # type: ignore[assignment]
    reasons = {item.path.name: item.reason for item in s.skipped}  # type: ignore[attr-defined]
    assert "empty" in reasons[f"SMB00001_{_stamp(300)}.wav"]
    assert "not readable audio" in reasons[f"SMB00001_{_stamp(200)}.wav"]
    assert [p.path.name for p in s.partial] == [f"SMB00001_{_stamp(120)}.flac"]  # type: ignore[attr-defined]
    # pond: 102 s -> 10 chunks + a 2 s tail (padded); 4 s alone (padded); 1 s (dropped).
    # sm: ogg and mp3, 25 s each -> 2 + 1 padded each; the truncated flac's readable part.
    assert s.dropped_remainders >= 1  # type: ignore[attr-defined]
    third = _replay(kafka_settings, mixed_archive, tmp_path)
    assert third.chunks == 0  # type: ignore[attr-defined]  # everything was acked already

    records = read_topic(kafka_settings, kafka_settings.topics.audio)
    ids = [r.envelope().chunk_id for r in records]
    assert len(ids) == len(set(ids)) == 4 + s.chunks  # type: ignore[attr-defined]
    pond = sorted((r.envelope() for r in records if r.key == b"pond"), key=lambda e: e.chunk_start)
    assert [e.chunk_start for e in pond] == [T0 + k * CHUNK_NS for k in range(11)] + [
        T0 + 600 * SECOND]
    padded = {e.chunk_start: r.header("padded_samples") for r in records
              if (e := r.envelope()).station_id == "pond"}
    assert padded[T0 + 100 * SECOND] == str(8 * 32_000)  # the 2 s tail of the run
    assert padded[T0 + 600 * SECOND] == str(6 * 32_000)  # the 4 s file
    assert pond[-1].gap_ns == 600 * SECOND - 110 * SECOND
    sm = sorted(r.envelope().chunk_start for r in records if r.key == b"smb00001")
    assert sm[:6] == [T0 + k * CHUNK_NS for k in range(3)] + [
        T0 + (60 + 10 * k) * SECOND for k in range(3)]

    again = _replay(kafka_settings, mixed_archive, tmp_path, restart=True)
    assert again.chunks == len(ids)  # type: ignore[attr-defined]
    repeated = read_topic(kafka_settings, kafka_settings.topics.audio, expected=2 * len(ids))
    assert sorted(str(r.envelope().chunk_id) for r in repeated) == sorted(
        str(i) for i in ids * 2)  # the same ids, each twice: idempotent downstream


def test_a_replay_signs_with_its_archive_key(kafka_settings: Settings, tmp_path: Path) -> None:
    """With SOUNDSCAPE_REPLAY__SIGNING_KEY every chunk carries archive:<name>'s valid
    signature; a bad key is refused before anything is sent."""
    from pydantic import SecretStr

    from soundscape.chunk_signing import (
        SIGNER_HEADER,
        SignerKey,
        new_private_key_text,
        private_key_from_text,
        verify,
    )
    from soundscape.envelope import ChunkEnvelope
    from soundscape.errors import UserError

    archive = tmp_path / "a"
    _write(archive / "Pond-01" / f"{_stamp(0)}.wav", 30, 32_000)
    key = new_private_key_text()
    signed = kafka_settings.model_copy(update={"replay": kafka_settings.replay.model_copy(
        update={"signing_key": SecretStr(key), "archive_name": "ponds-2024"})})
    summary = _replay(signed, archive, tmp_path)
    assert summary.chunks == 3  # type: ignore[attr-defined]
    public = SignerKey("archive:ponds-2024", private_key_from_text(key).public_key())
    records = read_topic(kafka_settings, kafka_settings.topics.audio, expected=3)
    for record in records:
        envelope = ChunkEnvelope.from_headers(record.headers, record.value, record.key)
        assert dict(envelope.extra)[SIGNER_HEADER] == b"archive:ponds-2024"
        assert verify(envelope, lambda s: public if s == public.signer else None, True) is None

    broken = signed.model_copy(update={"replay": signed.replay.model_copy(
        update={"signing_key": SecretStr("not-a-key")})})
    with pytest.raises(UserError, match="signing key is unusable"):
        _replay(broken, archive, tmp_path / "again")
