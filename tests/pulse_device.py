"""A real PulseAudio capture device for tests of the microphone path: the station's own
(tests/integration/producers) and the enrolled station's over SASL_SSL (infra)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def pulse_device(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PulseAudio daemon with a null sink "mic": what is played into it, its monitor
    source (the default input) records; PortAudio reaches it as device `pulse`.

    Yields the environment a client needs (PULSE_RUNTIME_PATH); the daemon is ours alone
    and is stopped by its pid.
    """
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `bash infra/setup.sh`")
    runtime = tmp_path / "pulse"
    runtime.mkdir()
    env = dict(os.environ) | {"PULSE_RUNTIME_PATH": str(runtime),
                              "PULSE_STATE_PATH": str(runtime / "state")}
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--disable-shm=yes",
         "--load=module-null-sink sink_name=mic rate=48000",
         "--load=module-native-protocol-unix"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PulseAudio did not start: "
                                   + (daemon.stderr.read().decode() if daemon.stderr else ""))
            time.sleep(0.2)
        subprocess.run(["pactl", "set-default-sink", "mic"], env=env, check=True)
        subprocess.run(["pactl", "set-default-source", "mic.monitor"], env=env, check=True)
        yield {"PULSE_RUNTIME_PATH": str(runtime), "PULSE_STATE_PATH": str(runtime / "state")}
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
