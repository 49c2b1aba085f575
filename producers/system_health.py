"""What a station reports about its machine: disk, CPU temperature, clock synchronisation.

Each reading returns None where the machine cannot say (no thermal zone, a clock that
is not NTP-synchronised): a heartbeat states what is known and never invents a value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from pathlib import Path

THERMAL_ROOT = Path("/sys/class/thermal")
_TIME_ERROR = 5  # adjtimex state: clock not synchronised
_STA_NANO = 0x2000


def disk_free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


def cpu_temperature_c(root: Path = THERMAL_ROOT) -> float | None:
    """The CPU's thermal zone in °C (a Pi's `cpu-thermal`), else the first readable zone."""
    zones = sorted(root.glob("thermal_zone*"))
    preferred = [z for z in zones if "cpu" in _read(z / "type").lower()]
    for zone in preferred + [z for z in zones if z not in preferred]:
        text = _read(zone / "temp")
        try:
            return round(int(text) / 1000.0, 1)
        except ValueError:
            continue
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex (Linux, glibc), read-only use: modes = 0."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


def clock_offset_ms() -> float | None:
    """The kernel's NTP offset estimate (ms) when the clock is synchronised, else None.

    Read with adjtimex(2) (modes 0: no change, no privilege needed); chrony and
    systemd-timesyncd both keep it up to date.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0 or state == _TIME_ERROR:
        return None
    scale = 1e-6 if timex.status & _STA_NANO else 1e-3
    return round(timex.offset * scale, 3)
