"""The drift checks by name: the values of a drift report's `check` (and of the
drift_reports table's `check_name`), which the dashboards, the CLI and the checks
themselves (processors/drift) share."""

from __future__ import annotations

#: check -> (kind, the setting holding its threshold, what the value is)
CHECKS: dict[str, tuple[str, str, str]] = {
    "level": ("input", "level_db", "median RMS level of the window minus the reference's (dB)"),
    "noise_floor": ("input", "noise_floor_db", "median noise floor minus the reference's (dB)"),
    "spectral_centroid": ("input", "centroid_change",
                          "median spectral centroid relative to the reference's, minus 1"),
    "clipping": ("input", "clipping_increase", "rise of the mean share of clipped samples"),
    "silence": ("input", "silence_change", "change of the mean share of silent frames"),
    "label_js": ("prediction", "label_js",
                 "Jensen-Shannon divergence (bits) of the top-label distributions"),
    "label_psi": ("prediction", "label_psi", "population stability index of the top labels"),
    "confidence_ks": ("prediction", "confidence_ks",
                      "Kolmogorov-Smirnov D between the top-confidence distributions"),
    "gaps": ("health", "gap_ratio", "share of the window's chunks that never arrived"),
    "silent": ("health", "silent_after_s", "seconds without any chunk from the station"),
}
