#!/usr/bin/env bash
# The CUDA backend on a borrowed GPU machine, in one run of under 8 minutes:
#   1. install graphdl (pip install -e . into the Python that has CuPy and PyTorch)
#   2. build: every test model's generated .cu through nvcc -cubin for the card's architecture
#      (registers, shared memory, spills)
#   3. correctness: backend="cuda" on the GPU against the NumPy backend (MLP and LeNet training
#      steps, the lecture's sigmoid neuron), and tests/test_cuda_gpu.py (CuPy arrays fed as they
#      are, updated in place on the GPU)
#   4. compute-sanitizer --tool memcheck, then --tool racecheck, over small-shape runs of them
#   5. timings against PyTorch (TF32 off and on): fused elementwise chain (GB/s against a copy),
#      MLP and LeNet training steps, AlexNet's conv layers and training step at batch 128,
#      a word2vec skip-gram step (pairs/s, words/s); one summary table with the card, the
#      commit and the ratios
#
# Usage (repository root or anywhere):  benchmarks/gpu_check.sh [--no-gpu]
#   --no-gpu   what needs no GPU: install, nvcc for sm_80 and sm_90, the correctness checks with
#              device="cpu" (the emulator, two thread orders)
# Environment: PYTHON (default: python3 on a GPU machine, the repository's .venv with --no-gpu),
#              GPU_CHECK_SECONDS (default 470: the whole run's budget; the timings get what is left)
set -uo pipefail
cd "$(dirname "$0")/.."

NO_GPU=0
case "${1:-}" in
    --no-gpu) NO_GPU=1 ;;
    "") ;;
    *) echo "usage: $0 [--no-gpu]" >&2; exit 2 ;;
esac
BUDGET=${GPU_CHECK_SECONDS:-470}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ $NO_GPU = 1 ] && [ -x .venv/bin/python ]; then PY=$PWD/.venv/bin/python
else PY=python3
fi
MODELS=(benchmarks/gpu_models.py)
RESULTS=()
FAILED=0
export PYTHONUNBUFFERED=1

left() { echo $((BUDGET - SECONDS)); }

# step NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS (less if the budget is short)
step() {
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    if [ "$(left)" -lt "$limit" ]; then limit=$(left); fi
    if [ "$limit" -lt 10 ]; then
        RESULTS+=("$name: not run (time budget spent)"); FAILED=1; return
    fi
    echo; echo "== $name (limit ${limit} s)"
    if declare -F "$1" >/dev/null; then "$@"  # a function of this script: pip bounds itself
    else timeout "$limit" "$@"
    fi
    rc=$?
    if [ $rc = 0 ]; then RESULTS+=("$name: ok ($((SECONDS - start)) s)")
    elif [ $rc = 124 ]; then RESULTS+=("$name: TIMED OUT after ${limit} s"); FAILED=1
    else RESULTS+=("$name: FAILED, exit status $rc ($((SECONDS - start)) s)"); FAILED=1
    fi
}

install() {
    # From /tmp, so that the checkout's folders do not shadow the installed package.
    if (cd /tmp && "$PY" -c "import graphdl.codegen.cuda_backend") 2>/dev/null; then return 0; fi
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . || return 1
    (cd /tmp && "$PY" -c "import graphdl.codegen.cuda_backend")
}

need_cupy() {
    if "$PY" -c "import cupy" 2>/dev/null; then return 0; fi
    echo "CuPy is missing: pip install cupy-cuda13x"
    "$PY" -m pip install -q cupy-cuda13x
}

gpu_tests() {
    if ! "$PY" -c "import pytest, hypothesis" 2>/dev/null; then
        "$PY" -m pip install -q pytest hypothesis || { echo "no pytest/hypothesis here"; return 1; }
    fi
    timeout 80 "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda_gpu.py
}

echo "== gpu_check: graphdl $(git describe --always --dirty 2>/dev/null || echo '(no git)'), $PY"
"$PY" --version
command -v nvcc >/dev/null && nvcc --version | tail -1
if [ $NO_GPU = 0 ]; then
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv
fi

step "install graphdl" 120 install
if [ $NO_GPU = 1 ]; then
    step "nvcc sm_80 sm_90 (no spills)" 150 "$PY" "${MODELS[@]}" nvcc --arch sm_80 sm_90
    step "correctness, device=cpu" 120 "$PY" "${MODELS[@]}" check --device cpu
    NOT_RUN="CUDA on the GPU against NumPy, compute-sanitizer memcheck and racecheck, timings"
else
    CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
    step "cupy" 120 need_cupy
    step "nvcc sm_${CAP} (no spills)" 90 "$PY" "${MODELS[@]}" nvcc --arch "sm_${CAP}"
    step "correctness, device=gpu" 90 "$PY" "${MODELS[@]}" check --device gpu
    step "GPU tests (CuPy feeds and updates)" 90 gpu_tests
    step "compute-sanitizer memcheck" 90 compute-sanitizer --tool memcheck --error-exitcode 3 \
        --print-limit 20 "$PY" "${MODELS[@]}" sanitize
    step "compute-sanitizer racecheck" 120 compute-sanitizer --tool racecheck \
        --error-exitcode 3 --print-limit 20 "$PY" "${MODELS[@]}" sanitize
    SUMMARY=$(mktemp)
    # the timings take what is left, less a margin for the table and this script's end
    step "timings against PyTorch" 300 bash -c "set -o pipefail; '$PY' ${MODELS[*]} bench \
        --budget $(( $(left) - 40 )) | tee '$SUMMARY'"
fi

echo
echo "== steps ($SECONDS s in all)"
printf '  %s\n' "${RESULTS[@]}"
[ -n "${NOT_RUN:-}" ] && echo "  not run here (needs a GPU): $NOT_RUN"
if [ -n "${SUMMARY:-}" ] && grep -q "^== summary" "$SUMMARY"; then
    sed -n '/^== summary/,$p' "$SUMMARY"
fi
exit $FAILED
