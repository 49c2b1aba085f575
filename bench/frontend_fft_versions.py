"""The FFT front-end of another commit against this one's, in one process (the machine's
load drifts between runs; alternating in one process measures the ratio, not the load).

    git show ef8ae26:soundscape/frontend_fft.py > /tmp/old_frontend_fft.py
    .venv/bin/python bench/frontend_fft_versions.py /tmp/old_frontend_fft.py [--chunks 16] [--rounds 5]

Prints ms per chunk of each (one thread, numpy's BLAS at one thread as the worker runs
it), their ratio, and the largest difference between their outputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from soundscape.frontend_fft import FFTFrontEnd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", help="a frontend_fft.py of another commit")
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("other_frontend_fft", args.other)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {args.other}")
    other = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = other
    spec.loader.exec_module(other)

    threadpool_limits(1)
    pcm = (np.random.default_rng(0).standard_normal((args.chunks, 320_000)) * 0.1
           ).astype(np.float32)
    versions = {"other": other.FFTFrontEnd(threads=1), "this": FFTFrontEnd(threads=1)}
    outputs = {name: fe.run(pcm) for name, fe in versions.items()}
    diff = {key: float(np.abs(outputs["this"][key] - outputs["other"][key]).max())
            for key in outputs["this"]}
    times: dict[str, list[float]] = {name: [] for name in versions}
    for _ in range(args.rounds):
        for name, fe in versions.items():
            started = time.perf_counter()
            fe.run(pcm)
            times[name].append((time.perf_counter() - started) / args.chunks * 1e3)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: {medians[name]:.1f} ms per chunk (rounds: "
              f"{', '.join(f'{x:.1f}' for x in t)})")
    print(f"other / this: {medians['other'] / medians['this']:.2f}x")
    print("largest output difference:", {k: f"{v:.2g}" for k, v in diff.items()})


if __name__ == "__main__":
    main()
