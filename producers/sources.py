"""Where a station's audio comes from: a microphone, recorded files, or the generator.

Every source yields `Block`s and counts what it could not deliver. A microphone's
overruns (PortAudio's input_overflow, or a full hand-off queue when the pipeline falls
behind) are counted and mark the next block `lost_before`, so the gap is recorded,
never silently closed. Files and the generator are paced by `speed` (0: as fast as
possible), which lets tests and SD-card uploads run minutes of audio in seconds.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from soundscape.errors import UserError
from soundscape.logs import get_logger
from soundscape.producers.archive import (
    ArchiveReadError,
    Naming,
    discover,
    model_rate_blocks,
    plan_runs,
    probe_all,
)
from soundscape.producers.blocks import Block
from soundscape.producers.chunker import MODEL_RATE
from soundscape.producers.pacing import Pacer
from soundscape.synthetic import field_chunk

log = get_logger(__name__)

#: rates tried, in order, when the capture rate is not configured: 32 kHz needs no
#: resampling; 48 and 44.1 kHz are what most USB and I2S devices offer.
PREFERRED_RATES = (MODEL_RATE, 48_000, 44_100)


class AudioSource(Protocol):
    sample_rate: int
    description: str
    overruns: int
    dropped_frames: int

    def blocks(self, stop: threading.Event) -> Iterator[Block]: ...


class MicSource:
    """A PortAudio input device through sounddevice (callback thread -> bounded queue)."""

    def __init__(self, device: str | None, capture_rate: int = 0, block_ms: int = 100,
                 queue_seconds: float = 30.0) -> None:
        self._sd = _sounddevice()
        self.device = int(device) if device and device.isdigit() else device
        self.sample_rate = self._choose_rate(capture_rate)
        self.blocksize = max(1, self.sample_rate * block_ms // 1000)
        self.description = f"microphone {self.device or '(default input)'} at {self.sample_rate} Hz"
        max_blocks = max(1, int(queue_seconds * 1000 / block_ms))
        self.handoff = CaptureHandoff(self.sample_rate, max_blocks)

    @property
    def overruns(self) -> int:
        return self.handoff.overruns

    @property
    def dropped_frames(self) -> int:
        return self.handoff.dropped_frames

    def _choose_rate(self, wanted: int) -> int:
        rates = (wanted,) if wanted else PREFERRED_RATES
        problems = []
        for rate in rates:
            try:
                self._sd.check_input_settings(device=self.device, channels=1, samplerate=rate,
                                              dtype="float32")
                return rate
            except Exception as exc:  # noqa: BLE001 - PortAudio says why in its message
                problems.append(f"{rate} Hz: {exc}")
        raise UserError(
            f"input device {self.device or '(default)'} takes none of the rates tried: "
            + "; ".join(problems),
            hint="list devices with `python -m sounddevice`; set SOUNDSCAPE_STATION__DEVICE "
            "or SOUNDSCAPE_STATION__CAPTURE_RATE",
        )

    def _callback(self, indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
        self.handoff.push(indata[:, 0], when.inputBufferAdcTime, when.currentTime,
                          bool(status.input_overflow))

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        try:
            stream = self._sd.InputStream(
                device=self.device, channels=1, samplerate=self.sample_rate, dtype="float32",
                blocksize=self.blocksize, callback=self._callback,
                # A station needs no low latency; PortAudio's ALSA path polls far less with
                # large buffers (about a tenth of the CPU through PulseAudio, measured).
                latency="high",
            )
        except Exception as exc:  # noqa: BLE001 - PortAudio's errors are plain Exceptions
            raise UserError(f"cannot open {self.description}: {exc}",
                            hint="check the device name with `python -m sounddevice`") from None
        with stream:
            while not stop.is_set():
                block = self.handoff.get(timeout_s=0.5)
                if block is not None:
                    yield block
                elif not stream.active:
                    raise UserError(f"{self.description} stopped delivering audio")


class CaptureHandoff:
    """From the capture callback (PortAudio's thread, which must never block) to the
    pipeline: stamps each block with its measured time and keeps the books on loss.

    An input overflow reported by the device, or a full queue because the pipeline fell
    behind, counts as an overrun; the next block that gets through is `lost_before`.
    """

    def __init__(self, sample_rate: int, max_blocks: int) -> None:
        self.sample_rate = sample_rate
        self.overruns = 0
        self.dropped_frames = 0
        self._queue: queue.Queue[Block] = queue.Queue(maxsize=max_blocks)
        self._lost = False

    def push(self, samples: np.ndarray, adc_time: float, current_time: float,
             overflow: bool, now_ns: int | None = None) -> None:
        now = time.time_ns() if now_ns is None else now_ns
        frames = int(samples.shape[0])
        if adc_time > 0 and 0 <= current_time - adc_time < 5:
            start = now - int((current_time - adc_time) * 1e9)
        else:  # a host API without timestamps: the block ended about now
            start = now - frames * 1_000_000_000 // self.sample_rate
        lost = self._lost
        if overflow:
            self.overruns += 1
            lost = True
        try:
            self._queue.put_nowait(Block(np.array(samples, np.float32), self.sample_rate,
                                         start, lost))
            self._lost = False
        except queue.Full:
            self.overruns += 1
            self.dropped_frames += frames
            self._lost = True

    def get(self, timeout_s: float) -> Block | None:
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None


class SyntheticSource:
    """Field-like generated audio (soundscape.synthetic), endless, at any capture rate."""

    def __init__(self, sample_rate: int = MODEL_RATE, start_ns: int | None = None,
                 speed: float = 1.0, seed: int = 0) -> None:
        self.sample_rate = sample_rate or MODEL_RATE
        self.start_ns = start_ns if start_ns is not None else time.time_ns()
        self.speed = speed
        self.seed = seed
        self.description = f"synthetic audio at {self.sample_rate} Hz, speed {speed:g}"
        self.overruns = 0
        self.dropped_frames = 0

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        pacer = Pacer(self.speed, stop)
        step = self.sample_rate  # one-second blocks, like a capture callback's, only larger
        index = 0
        while not stop.is_set():
            audio = field_chunk(self.seed + index, sample_rate=self.sample_rate)
            for offset in range(0, audio.size, step):
                pacer.wait((index * audio.size + offset) / self.sample_rate)
                if stop.is_set():
                    return
                start = self.start_ns if index == 0 and offset == 0 else None
                yield Block(audio[offset : offset + step], self.sample_rate, start)
            index += 1


class FileSource:
    """Recordings on disk (an SD card's folder), in time order, at the model rate."""

    def __init__(self, paths: list[str], station_id: str, speed: float = 0.0,
                 join_tolerance_ns: int = 1_000_000_000, naming: Naming | None = None) -> None:
        found, skipped = discover(paths)
        files, bad = probe_all(found, naming or Naming(station=station_id))
        self.runs, overlapping = plan_runs(files, join_tolerance_ns)
        self.skipped = skipped + bad + overlapping
        for item in self.skipped:
            log.warning("file skipped", path=str(item.path), reason=item.reason)
        if not self.runs:
            raise UserError(f"no usable recordings in {', '.join(paths)}",
                            hint="see the warnings above for each file's reason")
        self.sample_rate = MODEL_RATE
        self.speed = speed
        self.description = f"{sum(len(r) for r in self.runs)} files, speed {speed:g}"
        self.overruns = 0
        self.dropped_frames = 0

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        pacer = Pacer(self.speed, stop)
        seconds = 0.0
        for run in self.runs:
            broken = True  # the first file of a run follows a gap; the rest continue it
            for archive in run:
                first = True
                try:
                    for block in model_rate_blocks(archive):
                        if stop.is_set():
                            return
                        if first:
                            block = Block(block.samples, block.sample_rate,
                                          archive.start_ns if broken else None, broken)
                            first = broken = False
                        pacer.wait(seconds)
                        seconds += block.seconds
                        yield block
                except ArchiveReadError as exc:
                    log.warning("file ended early", path=str(archive.path), reason=exc.reason)
                    broken = True  # what follows does not continue the lost audio


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise UserError("the microphone needs the `sounddevice` package",
                        hint="pip install 'soundscape[station]'") from None
    except OSError as exc:
        raise UserError(f"PortAudio is missing: {exc}",
                        hint="apt-get install libportaudio2 (infra/setup.sh does)") from None
    return sounddevice


def open_source(spec: str, *, station_id: str, device: str | None, capture_rate: int,
                speed: float, start_ns: int | None, join_tolerance_ns: int,
                naming: Naming | None = None) -> AudioSource:
    """`mic`, `synthetic`, or a file / folder / glob of recordings."""
    if spec == "mic":
        return MicSource(device, capture_rate)
    if spec == "synthetic":
        return SyntheticSource(capture_rate or MODEL_RATE, start_ns, speed)
    if not any(ch in spec for ch in "*?[") and not Path(spec).exists():
        raise UserError(f"source {spec!r} is neither mic, synthetic, nor an existing path",
                        hint="--source mic | synthetic | PATH (a file, folder or glob)")
    return FileSource([spec], station_id, speed, join_tolerance_ns, naming)


class NoSource:
    """No capture at all: a station run that only sends what its spool holds."""

    sample_rate = MODEL_RATE
    description = "none (drain the spool only)"
    overruns = 0
    dropped_frames = 0

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        return iter(())


class DeviceLikeSource:
    """Pre-generated audio handed out in callback-sized blocks, for benchmarks.

    Generation happens up front, so what a benchmark measures is the station's work on
    audio as a capture device delivers it, not the generator's.
    """

    def __init__(self, sample_rate: int, block_ms: int = 100, distinct_chunks: int = 3) -> None:
        self.sample_rate = sample_rate
        self.description = f"prepared device-like audio at {sample_rate} Hz"
        self.overruns = 0
        self.dropped_frames = 0
        self._audio = [field_chunk(seed, sample_rate=sample_rate)
                       for seed in range(distinct_chunks)]
        self._step = max(1, sample_rate * block_ms // 1000)

    def blocks(self, stop: threading.Event) -> Iterator[Block]:
        start = time.time_ns()
        index = 0
        while not stop.is_set():
            audio = self._audio[index % len(self._audio)]
            for offset in range(0, audio.size, self._step):
                yield Block(audio[offset : offset + self._step].copy(), self.sample_rate,
                            start if index == 0 and offset == 0 else None)
            index += 1
