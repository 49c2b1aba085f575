"""Field-like test audio made from a seed: the same seed always gives the same samples.

Used by the demo, the tests and benchmarks wherever real recordings are not at hand:
`field_chunk` (an unlabelled field-sized chunk, for transport), `soundscape_chunk`
(labelled synthetic species over field backgrounds, for models) and `write_archive`
(long recordings named like AudioMoth files, for replay demos and load tests).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from soundscape.audio_codec import to_int16
from soundscape.envelope import Codec

SAMPLE_RATE = 32_000
CHUNK_SECONDS = 10


def pink_noise(rng: np.random.Generator, frames: int) -> np.ndarray:
    """1/f noise (wind-like), unit RMS, shaped in the frequency domain."""
    spectrum = rng.standard_normal(frames // 2 + 1) + 1j * rng.standard_normal(frames // 2 + 1)
    freqs = np.arange(frames // 2 + 1, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=frames)
    return (noise / (np.std(noise) + 1e-12)).astype(np.float32)


def chirp(
    rng: np.random.Generator,
    sample_rate: int,
    seconds: float,
    f_low: float,
    f_high: float,
) -> np.ndarray:
    """A frequency-modulated whistle with a smooth onset and decay."""
    t = np.arange(int(seconds * sample_rate), dtype=np.float64) / sample_rate
    sweep = f_low + (f_high - f_low) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 8) * t))
    phase = 2 * np.pi * np.cumsum(sweep) / sample_rate
    envelope = np.sin(np.pi * t / seconds) ** 2
    return (envelope * np.sin(phase)).astype(np.float32)


def field_chunk(
    seed: int,
    sample_rate: int = SAMPLE_RATE,
    seconds: int = CHUNK_SECONDS,
    noise_dbfs: float = -36.0,
    calls: int = 3,
) -> np.ndarray:
    """Mono float32 audio: pink background at `noise_dbfs` plus a few bird-like calls.

    At the defaults a 10 s chunk encodes to roughly 400 KB of FLAC, the size of real
    field audio (the noise floor, not the calls, decides FLAC's size).
    """
    rng = np.random.default_rng(seed)
    frames = sample_rate * seconds
    audio = pink_noise(rng, frames) * np.float32(10 ** (noise_dbfs / 20))
    audio += rng.standard_normal(frames).astype(np.float32) * np.float32(
        10 ** ((noise_dbfs - 6) / 20)
    )
    for _ in range(calls):
        length = rng.uniform(0.3, 1.5)
        start = int(rng.uniform(0, seconds - length) * sample_rate)
        f_low = rng.uniform(1500, 5000)
        call = chirp(rng, sample_rate, length, f_low, f_low * rng.uniform(1.2, 1.8))
        audio[start : start + call.size] += call * np.float32(10 ** (rng.uniform(-24, -8) / 20))
    return np.clip(audio, -1.0, 1.0)


# ---- labelled synthetic soundscapes ---------------------------------------------------------
# A dozen parametric "species", each with its own band, call shape, duration and
# repetition, mixed at random times and signal-to-noise ratios into field-like
# backgrounds. The labels are known exactly, so the demo bundle can be trained on them and
# every end-to-end test can check that the right species come out.

Voice = Callable[[np.random.Generator, float, int], np.ndarray]


def _envelope(frames: int, attack: float = 0.1) -> np.ndarray:
    """Raised-cosine onset and decay over `attack` of the call each side."""
    ramp = max(1, int(frames * attack))
    env = np.ones(frames)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[:ramp] = rise
    env[frames - ramp :] = rise[::-1]
    return env


def _tone(freq: np.ndarray, sample_rate: int) -> np.ndarray:
    """A sine following the instantaneous frequency track `freq` (Hz per sample)."""
    return np.sin(2 * np.pi * np.cumsum(freq) / sample_rate)


def _sweep(f_start: float, f_end: float, jitter: float = 0.05) -> Voice:
    """A whistle gliding from f_start to f_end (log-frequency glide), +-jitter per call."""

    def voice(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
        frames = int(seconds * sr)
        a, b = (f * rng.uniform(1 - jitter, 1 + jitter) for f in (f_start, f_end))
        freq = a * (b / a) ** np.linspace(0, 1, frames)
        return _envelope(frames) * _tone(freq, sr)

    return voice


def _warble(centre: float, depth: float, rate: tuple[float, float]) -> Voice:
    """Sinusoidal frequency modulation around `centre` (a vibrato-like song)."""

    def voice(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
        frames = int(seconds * sr)
        t = np.arange(frames) / sr
        freq = centre + depth * np.sin(2 * np.pi * rng.uniform(*rate) * t + rng.uniform(0, 6.28))
        return _envelope(frames, 0.05) * _tone(freq, sr)

    return voice


def _trill(f_high: float, f_low: float, note_s: float, rate: tuple[float, float]) -> Voice:
    """A train of short down-slurred notes at `rate` notes per second."""

    def voice(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
        frames = int(seconds * sr)
        out = np.zeros(frames)
        note = int(note_s * sr)
        period = int(sr / rng.uniform(*rate))
        shape = _sweep(f_high, f_low, jitter=0.02)
        for start in range(0, frames - note, max(period, note + 1)):
            out[start : start + note] += shape(rng, note_s, sr)[:note]
        return out * _envelope(frames, 0.05)

    return voice


def _stack(f0: tuple[float, float], harmonics: int, rise: float = 1.0) -> Voice:
    """A harmonic stack: f0 and its overtones, amplitude falling with order."""

    def voice(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
        frames = int(seconds * sr)
        base = rng.uniform(*f0) * np.linspace(1.0, rise, frames)
        out = sum(_tone(base * h, sr) / h for h in range(1, harmonics + 1))
        return _envelope(frames, 0.15) * out

    return voice


def _band_noise(rng: np.random.Generator, frames: int, sr: int, lo: float, hi: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(frames))
    freqs = np.fft.rfftfreq(frames, 1 / sr)
    spectrum[(freqs < lo) | (freqs > hi)] = 0
    noise = np.fft.irfft(spectrum, n=frames)
    return noise / (np.std(noise) + 1e-12)


def _buzz(lo: float, hi: float, pulse_hz: tuple[float, float]) -> Voice:
    """Band-limited noise chopped into pulses (insect-like or a buzzy song)."""

    def voice(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
        frames = int(seconds * sr)
        t = np.arange(frames) / sr
        pulses = np.clip(np.sin(2 * np.pi * rng.uniform(*pulse_hz) * t), 0, None) ** 2
        return _envelope(frames, 0.05) * pulses * _band_noise(rng, frames, sr, lo, hi)

    return voice


def _pulsed_tone(freq: tuple[float, float], pulse_hz: tuple[float, float]) -> Voice:
    """A steady high tone switched on and off quickly (cicada-like)."""

    def voice(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
        frames = int(seconds * sr)
        t = np.arange(frames) / sr
        gate = (np.sin(2 * np.pi * rng.uniform(*pulse_hz) * t) > 0).astype(float)
        gate = np.convolve(gate, np.hanning(64) / np.hanning(64).sum(), mode="same")
        return _envelope(frames, 0.05) * gate * _tone(np.full(frames, rng.uniform(*freq)), sr)

    return voice


def _two_note(high: float, low: float) -> Voice:
    """'tee-too': a high note, a short pause, a lower note."""

    def voice(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
        frames = int(seconds * sr)
        first, gap = int(frames * 0.4), int(frames * 0.15)
        tee = _sweep(high, high * 0.97, 0.02)(rng, first / sr, sr)
        too = _sweep(low, low * 0.95, 0.02)(rng, (frames - first - gap) / sr, sr)
        return np.concatenate([tee, np.zeros(gap), too])

    return voice


@dataclass(frozen=True)
class Species:
    """One synthetic species: what a call sounds like and how it is repeated."""

    name: str
    kind: str  # whistle, trill, stack, buzz, ...
    band_hz: tuple[float, float]  # where (nearly) all of its energy lies
    call_s: tuple[float, float]  # duration of one call
    calls: tuple[int, int]  # calls per bout
    gap_s: tuple[float, float]  # silence between calls
    voice: Voice = field(repr=False, compare=False)

    def bout(self, rng: np.random.Generator, sample_rate: int, max_s: float) -> np.ndarray:
        """One bout of calls, unit RMS over its voiced part, at most `max_s` long."""
        parts: list[np.ndarray] = []
        for index in range(int(rng.integers(self.calls[0], self.calls[1] + 1))):
            if index:
                parts.append(np.zeros(int(rng.uniform(*self.gap_s) * sample_rate)))
            parts.append(self.voice(rng, rng.uniform(*self.call_s), sample_rate))
        audio = np.concatenate(parts)[: int(max_s * sample_rate)]
        voiced = np.abs(audio) > 1e-6
        rms = np.sqrt(np.mean(audio[voiced] ** 2)) if voiced.any() else 1.0
        return audio / rms


SPECIES: tuple[Species, ...] = (
    Species("rising-whistle", "whistle", (2000, 4200), (0.35, 0.6), (2, 4), (0.25, 0.5),
            _sweep(2200, 3800)),
    Species("falling-whistle", "whistle", (4000, 7000), (0.2, 0.4), (2, 4), (0.2, 0.4),
            _sweep(6500, 4400)),
    Species("warbler", "whistle", (6300, 9200), (0.8, 1.4), (1, 2), (0.3, 0.6),
            _warble(7700, 550, (10, 16))),
    Species("fast-trill", "trill", (4700, 6200), (1.0, 2.0), (1, 1), (0.0, 0.0),
            _trill(5800, 5000, 0.02, (18, 25))),
    Species("slow-trill", "trill", (1400, 2200), (1.5, 2.5), (1, 1), (0.0, 0.0),
            _trill(2050, 1600, 0.06, (6, 8))),
    Species("low-hoot", "stack", (300, 2000), (0.4, 0.7), (2, 4), (0.4, 0.8),
            _stack((350, 450), 4)),
    Species("harmonic-chatter", "stack", (1000, 4200), (0.15, 0.3), (3, 6), (0.1, 0.2),
            _stack((1100, 1250), 3, rise=1.06)),
    Species("low-buzz", "buzz", (750, 1650), (1.0, 2.0), (1, 1), (0.0, 0.0),
            _buzz(900, 1500, (80, 120))),
    Species("high-buzz", "buzz", (8900, 11100), (0.5, 1.0), (1, 3), (0.2, 0.5),
            _buzz(9000, 11000, (40, 60))),
    Species("chip-series", "chips", (3500, 6500), (0.012, 0.02), (4, 9), (0.08, 0.3),
            _sweep(6000, 4000, 0.05)),
    Species("two-note", "whistle", (2700, 4500), (0.45, 0.6), (2, 3), (0.4, 0.7),
            _two_note(4200, 3000)),
    Species("cicada", "pulsed", (11500, 13500), (2.0, 4.0), (1, 1), (0.0, 0.0),
            _pulsed_tone((12000, 13000), (30, 50))),
)
SPECIES_NAMES: tuple[str, ...] = tuple(s.name for s in SPECIES)
BACKGROUNDS: tuple[str, ...] = ("pink-wind", "brown-rain", "distant-hum", "silence")


def _brown_noise(rng: np.random.Generator, frames: int, sample_rate: int) -> np.ndarray:
    """1/f^2 noise above 20 Hz (rain-like rumble), unit RMS."""
    spectrum = rng.standard_normal(frames // 2 + 1) + 1j * rng.standard_normal(frames // 2 + 1)
    freqs = np.fft.rfftfreq(frames, 1 / sample_rate)
    noise = np.fft.irfft(spectrum / np.maximum(freqs, 20.0), n=frames)
    return noise / (np.std(noise) + 1e-12)


def background(
    kind: str, rng: np.random.Generator, frames: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """A unit-RMS field background (`silence` is a -90 dBFS recorder floor, not unit)."""
    if kind == "pink-wind":
        gusts = np.interp(np.arange(frames), np.linspace(0, frames, 12),
                          rng.uniform(0.4, 1.6, 12))
        noise = pink_noise(rng, frames) * gusts
    elif kind == "brown-rain":
        noise = _brown_noise(rng, frames, sample_rate)
        count = int(rng.uniform(50, 400) * frames / sample_rate)  # drops per chunk
        drops = np.zeros(frames)
        drops[rng.integers(0, frames, count)] = rng.uniform(-6, 6, count)
        decay = np.exp(-np.arange(int(0.004 * sample_rate)) / (0.0008 * sample_rate))
        noise = noise + np.convolve(drops, decay)[:frames]
    elif kind == "distant-hum":
        t = np.arange(frames) / sample_rate
        mains = rng.choice([50.0, 60.0])
        noise = sum(np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 6.28)) / h
                    for h in range(1, 6)) + 0.3 * pink_noise(rng, frames)
    elif kind == "silence":
        return rng.standard_normal(frames) * 10 ** (-90 / 20)
    else:
        raise ValueError(f"unknown background {kind!r}; expected one of {', '.join(BACKGROUNDS)}")
    return noise / (np.std(noise) + 1e-12)


@dataclass(frozen=True)
class CallEvent:
    species: str
    start_s: float
    end_s: float
    snr_db: float


@dataclass(frozen=True)
class SyntheticChunk:
    audio: np.ndarray  # float32 [seconds * sample_rate], peak <= 0.99
    labels: tuple[str, ...]  # species present, in SPECIES order
    events: tuple[CallEvent, ...]
    background: str
    background_dbfs: float
    seed: int

    def multi_hot(self) -> np.ndarray:
        return multi_hot(self.labels)


def multi_hot(labels: Sequence[str]) -> np.ndarray:
    """float32 [len(SPECIES)] with 1 where a species is present."""
    unknown = set(labels) - set(SPECIES_NAMES)
    if unknown:
        raise ValueError(f"unknown species {sorted(unknown)}")
    return np.array([name in labels for name in SPECIES_NAMES], dtype=np.float32)


def soundscape_chunk(
    seed: int,
    *,
    species: Sequence[str] | None = None,
    background_kind: str | None = None,
    max_species: int = 3,
    snr_db: tuple[float, float] = (0.0, 20.0),
    background_dbfs: tuple[float, float] = (-50.0, -30.0),
    sample_rate: int = SAMPLE_RATE,
    seconds: int = CHUNK_SECONDS,
) -> SyntheticChunk:
    """A labelled chunk: 0..max_species species at random times and SNRs over a background.

    `species` and `background_kind` force the choice (for tests and demos); everything
    else follows from `seed`, so the same arguments always give the same samples.
    SNR is a bout's RMS over its voiced part against the background's RMS (against
    -45 dBFS over `silence`).
    """
    rng = np.random.default_rng(seed)
    frames = sample_rate * seconds
    kind = background_kind or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    if species is None:
        count = int(rng.integers(0, max_species + 1))
        chosen = [SPECIES_NAMES[i] for i in rng.choice(len(SPECIES), count, replace=False)]
    else:
        multi_hot(species)  # validates the names
        chosen = list(species)
    level_db = float(rng.uniform(*background_dbfs)) if kind != "silence" else -90.0
    audio = background(kind, rng, frames, sample_rate) * 10 ** (level_db / 20)
    reference_db = level_db if kind != "silence" else -45.0
    events = []
    by_name = {s.name: s for s in SPECIES}
    for name in chosen:
        bout = by_name[name].bout(rng, sample_rate, max_s=seconds * 0.9)
        snr = float(rng.uniform(*snr_db))
        start = int(rng.integers(0, frames - bout.size + 1))
        audio[start : start + bout.size] += bout * 10 ** ((reference_db + snr) / 20)
        events.append(CallEvent(name, start / sample_rate, (start + bout.size) / sample_rate, snr))
    peak = float(np.max(np.abs(audio)))
    if peak > 0.99:
        audio *= 0.99 / peak
    labels = tuple(n for n in SPECIES_NAMES if n in chosen)
    return SyntheticChunk(
        audio=audio.astype(np.float32),
        labels=labels,
        events=tuple(sorted(events, key=lambda e: e.start_s)),
        background=kind,
        background_dbfs=level_db,
        seed=seed,
    )


def chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk `index` of a data set: independent streams, stable forever."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def soundscape_chunks(
    count: int, seed: int = 0, start: int = 0, **kwargs: Any
) -> Iterator[SyntheticChunk]:
    """Chunks `start` .. `start + count - 1` of the data set named by `seed`."""
    for index in range(start, start + count):
        yield soundscape_chunk(chunk_seed(seed, index), **kwargs)


# ---- files: labelled chunk sets and AudioMoth-style archives ----------------------------------
LABELS_FILE = "labels.csv"
_LABEL_COLUMNS = ("file", "offset_s", "chunk_start_utc", "labels", "background", "seed")


def _labels_row(file: str, offset_s: int, start: datetime | None, chunk: SyntheticChunk) -> dict:
    return {
        "file": file,
        "offset_s": offset_s,
        "chunk_start_utc": start.strftime("%Y-%m-%dT%H:%M:%SZ") if start else "",
        "labels": ";".join(chunk.labels),
        "background": chunk.background,
        "seed": chunk.seed,
    }


def _suffix(codec: Codec) -> str:
    if codec not in ("flac", "wav"):
        raise ValueError(f"unknown codec {codec!r}; expected flac or wav")
    return codec.upper()


def write_chunks(
    folder: Path, count: int, seed: int = 0, codec: Codec = "flac",
    progress: bool = False, **chunk_kwargs: Any,
) -> Path:
    """`count` labelled 10 s files plus labels.csv (one row each); returns the CSV's path."""
    folder.mkdir(parents=True, exist_ok=True)
    labels_path = folder / LABELS_FILE
    if labels_path.exists():
        raise FileExistsError(labels_path)
    with labels_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, _LABEL_COLUMNS)
        writer.writeheader()
        chunks = soundscape_chunks(count, seed, **chunk_kwargs)
        for index, chunk in enumerate(tqdm(chunks, total=count, disable=not progress,
                                           unit="chunk", desc="chunks")):
            name = f"chunk-{index:06d}.{codec}"
            sf.write(folder / name, to_int16(chunk.audio), SAMPLE_RATE,
                     format=_suffix(codec), subtype="PCM_16")
            writer.writerow(_labels_row(name, 0, None, chunk))
    return labels_path


def archive_name(start: datetime, codec: Codec = "flac") -> str:
    """AudioMoth's file name: the UTC start as YYYYMMDD_HHMMSS, upper-case extension."""
    return f"{start.astimezone(timezone.utc):%Y%m%d_%H%M%S}.{_suffix(codec)}"


def write_archive(
    folder: Path,
    start: datetime,
    seconds: int,
    file_seconds: int = 600,
    seed: int = 0,
    codec: Codec = "flac",
    progress: bool = False,
    **chunk_kwargs: Any,
) -> list[Path]:
    """Long recordings of consecutive labelled chunks, AudioMoth-named, plus labels.csv.

    Each file holds `file_seconds` (the last may be shorter) and carries AudioMoth's
    "Recorded at HH:MM:SS DD/MM/YYYY (UTC)" comment; labels.csv has one row per 10 s
    chunk with its file, offset and start, so a replay can be checked chunk by chunk.
    A naive `start` is taken as UTC. Existing files are never overwritten.
    """
    for name, value in (("seconds", seconds), ("file_seconds", file_seconds)):
        if value <= 0 or value % CHUNK_SECONDS:
            raise ValueError(f"{name} must be a positive multiple of {CHUNK_SECONDS}, got {value}")
    start = (start if start.tzinfo else start.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    if start.microsecond:
        raise ValueError("start must be a whole second (AudioMoth names have no fraction)")
    per_file = file_seconds // CHUNK_SECONDS
    total = seconds // CHUNK_SECONDS
    starts = [start + timedelta(seconds=f * file_seconds) for f in range(-(-total // per_file))]
    paths = [folder / archive_name(s, codec) for s in starts]
    labels_path = folder / LABELS_FILE
    for path in [*paths, labels_path]:
        if path.exists():
            raise FileExistsError(path)
    folder.mkdir(parents=True, exist_ok=True)
    handle: sf.SoundFile | None = None
    with labels_path.open("w", newline="") as labels:
        writer = csv.DictWriter(labels, _LABEL_COLUMNS)
        writer.writeheader()
        try:
            for index in tqdm(range(total), disable=not progress, unit="chunk", desc="archive"):
                file_index, position = divmod(index, per_file)
                if position == 0:
                    if handle is not None:
                        handle.close()
                    handle = sf.SoundFile(paths[file_index], "w", SAMPLE_RATE, 1,
                                          format=_suffix(codec), subtype="PCM_16")
                    handle.comment = (
                        f"Recorded at {starts[file_index]:%H:%M:%S %d/%m/%Y} (UTC) "
                        "by soundscape synth"
                    )
                chunk = soundscape_chunk(chunk_seed(seed, index), **chunk_kwargs)
                assert handle is not None
                handle.write(to_int16(chunk.audio))
                offset = position * CHUNK_SECONDS
                writer.writerow(_labels_row(paths[file_index].name, offset,
                                            starts[file_index] + timedelta(seconds=offset), chunk))
        finally:
            if handle is not None:
                handle.close()
    return paths
