"""The microphone path through a real PortAudio capture device (a PulseAudio null sink's
monitor): a 1 kHz tone played into the sink arrives in Kafka as a 32 kHz FLAC chunk."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from soundscape.audio_codec import decode
from soundscape.settings import Settings

from conftest import cli_env, read_topic


def test_tone_from_a_48_khz_device_arrives_resampled_to_32_khz(
    kafka_settings: Settings, pulse_mic: dict[str, str], tmp_path: Path,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    tone = tmp_path / "tone.wav"
    t = np.arange(48_000 * 30) / 48_000
    sf.write(tone, (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 48_000)
    player = subprocess.Popen(["paplay", "--device=mic", str(tone)], env=cli_env(
        kafka_settings, tmp_path) | pulse_mic)
    try:
        before = time.time_ns()
        env = cli_env(kafka_settings, tmp_path / "state") | pulse_mic
        result = run_cli(["station", "--station", "mic-test", "--source", "mic", "--device",
                          "pulse", "--capture-rate", "48000", "--chunks", "1", "--json"],
                         env, timeout=60)
    finally:
        player.terminate()
        player.wait(timeout=10)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["chunks_captured"] == 1 and report["chunks_acked"] == 1
    assert report["spool_depth"] == 0 and report["overruns"] == 0

    records = read_topic(kafka_settings, kafka_settings.topics.audio, expected=1)
    assert len(records) == 1
    envelope = records[0].envelope()
    assert (envelope.station_id, envelope.source, envelope.sample_rate) == ("mic-test", "live",
                                                                            32_000)
    assert before - 5 * 10**9 < envelope.chunk_start < before + 10 * 10**9
    audio = decode(records[0].value, envelope.codec)
    assert audio.frames == 320_000 and audio.sample_rate == 32_000
    mono = audio.mono()
    assert np.sqrt(np.mean(mono[-32_000 * 5 :] ** 2)) > 0.05, "the device recorded silence"
    spectrum = np.abs(np.fft.rfft(mono[-32_000 * 5 :]))
    assert abs(np.argmax(spectrum) / 5 - 1000) <= 2  # 5 s window: 0.2 Hz bins
