#!/usr/bin/env bash
# The device benchmark (issue 22), one run, from the repository root:
#
#   bash bench/gpu.sh                      # on a GPU host: CUDA, the full-size bundles
#   DEVICE=cpu BATCHES=1,4 bash bench/gpu.sh   # anywhere (the tests run it so)
#
# 1. onnxruntime-gpu: when DEVICE is cuda/auto and onnxruntime does not see CUDA, it is
#    installed, from wheel parts carried in bench/wheels/ (the wheel is larger than one
#    transfer to a machine without an index: `split -b 60M onnxruntime_gpu-*.whl
#    bench/wheels/<wheel name>.part-`), joined here, else from PyPI.
# 2. Bundles: BUNDLES (space-separated folders), else the full-size fp32 bundle and its
#    fp16 and int8 variants under bench/bundles/ (made here with `models export --random`
#    and `models quantize` when PyTorch, the train extra, is importable), else the demo
#    bundle and its int8 variant.
# 3. `soundscape bench device`: PCM-to-probabilities chunks/s at each batch size, the
#    single-chunk p50/p99, the seed's setup, the seed-style baseline and the ratio, GPU
#    memory; the JSON report goes to OUT_DIR (bench/results)/device-<date>.json.
#    LATENCY_RUNS (50) and MIN_SECONDS (2) set how long each figure is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-auto}
BATCHES=${BATCHES:-1,32,256,1024}
BASELINE=${BASELINE_CHUNKS:-32}
OUT_DIR=${OUT_DIR:-bench/results}
MEASURE=(--latency-runs "${LATENCY_RUNS:-50}" --min-seconds "${MIN_SECONDS:-2}")

sees_cuda() {
  "$PY" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())'
}

if [[ "$DEVICE" != cpu ]] && ! sees_cuda; then
  shopt -s nullglob
  parts=(bench/wheels/onnxruntime_gpu-*.whl.part-*)
  if (( ${#parts[@]} )); then
    wheel="bench/wheels/$(basename "${parts[0]%.part-*}")"
    cat "${parts[@]}" > "$wheel"
    "$PY" -m pip install --no-deps --force-reinstall "$wheel"
  else
    "$PY" -m pip install "onnxruntime-gpu==$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)')"
  fi
  # onnxruntime-gpu replaces the CPU package's files; both installed break the import.
  sees_cuda || echo "warning: onnxruntime still sees no CUDA; measuring on $("$PY" -c 'import onnxruntime as o; print(o.get_available_providers())')" >&2
fi

if [[ -z "${BUNDLES:-}" ]]; then
  full=bench/bundles/full
  if [[ ! -f $full/bundle.json ]] && "$PY" -c 'import torch' 2>/dev/null; then
    "$PY" -m soundscape models export "$full" --random
    "$PY" -m soundscape models quantize "$full" "$full-fp16" --precision fp16
    "$PY" -m soundscape models quantize "$full" "$full-int8" --precision int8
  fi
  if [[ -f $full/bundle.json ]]; then
    BUNDLES="$full $full-fp16 $full-int8"
  else
    echo "no full-size bundle (needs the train extra once); measuring the demo bundle" >&2
    BUNDLES="models/bundles/demo models/bundles/demo-int8"
  fi
fi

mkdir -p "$OUT_DIR"
out=$OUT_DIR/device-$(date -u +%Y%m%dT%H%M%SZ).json
# shellcheck disable=SC2086  # BUNDLES is a list of folders
"$PY" -m soundscape bench device $BUNDLES --batch-sizes "$BATCHES" --device "$DEVICE" \
  --baseline-chunks "$BASELINE" "${MEASURE[@]}" --json > "$out"
"$PY" - "$out" <<'PYEOF'
import json, sys
from soundscape.models.device_bench import summary_lines
report = json.load(open(sys.argv[1]))
print("\n".join(summary_lines(report)))
print(f"report: {sys.argv[1]}")
PYEOF
