#!/usr/bin/env bash
# Project test command. From the repository root, as a normal user or root (it installs into
# .venv only; as root it apt-gets python3-venv if `python3 -m venv` needs it):
#   bash scripts/test.sh           the full tier (CI's): every test, on every core (pytest-xdist),
#                                  then every example in smoke mode
#   bash scripts/test.sh --quick   the quick tier: the tests not marked slow, on every core; no
#                                  example runs
# Other arguments go to pytest (e.g. `-x`, `-k name`, `-n 0` for one process).
#
# Every stage runs even when an earlier one failed; the summary at the end names the failed
# stages, and the exit status is 1 when any failed.
#
# Optional system packages: without them the tests that need them skip, saying so, and the
# examples fall back (see scripts/install_system.sh, which installs them as root or via sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
pytest_args=()
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) pytest_args+=("$arg") ;;
    esac
done

source scripts/_venv.sh
# the distributed extra: torch 2.13 (CPU; the PyTorch comparisons, torch.distributed) and
# ray[train] (tests/test_distributed.py's Ray Train run)
pip_install -e '.[test,distributed]'
# torchvision's models for tests/test_onnx_models.py; without its dependencies, so that pip
# keeps the torch above (its C extension may not load beside it; the models need none of it)
pip_install --no-deps torchvision==0.28.0

# What this machine lacks, and what the run does without it.
fmnist="${GRAPHDL_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
echo "== optional system packages (apt-get install ...; or bash scripts/install_system.sh)"
optional() {  # optional WHAT PACKAGES WITHOUT_IT FOUND
    if [ "$4" = 1 ]; then
        printf '   found    %s\n' "$1"
    else
        printf '   MISSING  %-34s %s (apt: %s)\n' "$1" "$3" "$2"
    fi
}
optional "dot (Graphviz)" graphviz "drawing tests skip; drawings are DOT source" \
    "$(command -v dot >/dev/null && echo 1 || echo 0)"
optional "g++" g++ "CUDA-on-the-CPU tests and example runs skip" \
    "$(command -v g++ >/dev/null && echo 1 || echo 0)"
optional "chromium, chromedriver" "chromium chromium-driver" "browser tests skip" \
    "$( (command -v chromium || command -v chromium-browser) >/dev/null \
        && command -v chromedriver >/dev/null && echo 1 || echo 0)"
optional "Fashion-MNIST ($fmnist)" dataset-fashion-mnist \
    "the CNN examples use scikit-learn's 8x8 digits" \
    "$([ "$fmnist" != none ] && [ -f "$fmnist/train-images-idx3-ubyte.gz" ] && echo 1 || echo 0)"

failed=()
timings=()
record() {  # record NAME STATUS SECONDS
    if [ "$2" != 0 ]; then
        echo "== FAILED: $1" >&2
        failed+=("$1")
    fi
    timings+=("$(printf '%5d s  %s' "$3" "$1")")
}
stage() {  # stage NAME COMMAND...: run it here, its output as it comes
    local name="$1" began=$SECONDS status=0
    shift
    echo "== $name"
    "$@" || status=$?
    record "$name" "$status" $((SECONDS - began))
}
# The smoke runs are mostly one process each: they run side by side, one per core, each into
# its own log; `smoke_results` prints the logs in the order the runs were started.
lanes=$(nproc 2>/dev/null || echo 1)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
smoke_names=()
smoke() {  # smoke NAME COMMAND...: start it once a core is free
    local k=${#smoke_names[@]}
    smoke_names+=("$1")
    shift
    while [ "$(jobs -rp | wc -l)" -ge "$lanes" ]; do
        wait -n || true
    done
    (began=$SECONDS; status=0; "$@" >"$logs/$k.log" 2>&1 || status=$?
     echo "$status $((SECONDS - began))" >"$logs/$k.done") &
}
smoke_results() {
    wait
    local k status took
    for k in "${!smoke_names[@]}"; do
        echo "== ${smoke_names[$k]}"
        cat "$logs/$k.log"
        read -r status took <"$logs/$k.done"
        record "${smoke_names[$k]}" "$status" "$took"
    done
}
start=$SECONDS

if [ "$quick" = 1 ]; then
    stage "pytest (quick tier: -m 'not slow')" \
        python -m pytest tests -n auto -m "not slow" -rfEs ${pytest_args[@]+"${pytest_args[@]}"}
else
    stage "pytest (full)" \
        python -m pytest tests -n auto -rfEs ${pytest_args[@]+"${pytest_args[@]}"}

    echo "== the smoke runs, $lanes at a time (each one's output follows when all are done)"
    # The CUDA backend's kernels on the CPU (no GPU needed), as on a GPU: the CNN examples and
    # the transformer, the longest runs, first. Detection and the transformer take 10 steps,
    # not their smoke runs' 30 and 20: a step through the kernels on the CPU takes seconds.
    if command -v g++ >/dev/null; then
        for run in "examples/detection.py --steps 10" "examples/char_transformer.py --steps 10" \
                   examples/alexnet.py examples/localization.py examples/lenet_fashion_mnist.py; do
            # shellcheck disable=SC2086
            smoke "smoke: $run --backend cuda --device cpu" \
                env GRAPHDL_SMOKE=1 python $run --backend cuda --device cpu
        done
    else
        echo "== skipped: the examples with --backend cuda --device cpu (g++ is missing)"
    fi
    shopt -s nullglob
    for f in examples/*.py; do
        smoke "smoke: $f" env GRAPHDL_SMOKE=1 python "$f"
    done
    # data-parallel: two processes by torchrun, gloo (~10 s, mostly importing torch)
    smoke "smoke: examples/lenet_fashion_mnist.py --workers 2" \
        env GRAPHDL_SMOKE=1 python examples/lenet_fashion_mnist.py --workers 2
    for model in "--model sg --loss ns" "--model cbow --loss hs" \
                 "--model sg --loss ns --workers 2" \
                 "--model sg --loss hs --workers 2 --distributed"; do
        # shellcheck disable=SC2086
        smoke "smoke: python -m examples.word2vec.train --smoke $model (the Lee corpus)" \
            python -m examples.word2vec.train --smoke --no-progress $model
    done
    smoke "smoke: benchmarks/word2vec.py --smoke (every trainer and the step profile, seconds)" \
        env PYTHONPATH=. python benchmarks/word2vec.py --smoke
    smoke "smoke: benchmarks/char_transformer.py --smoke (graphdl against PyTorch, seconds)" \
        env PYTHONPATH=. python benchmarks/char_transformer.py --smoke
    smoke "smoke: benchmarks/distributed.py --quick (two gloo workers against DDP, seconds)" \
        env PYTHONPATH=. python benchmarks/distributed.py --quick
    smoke_results
fi

tier=$([ "$quick" = 1 ] && echo quick || echo full)
echo "== time per stage, longest first"
printf '%s\n' "${timings[@]}" | sort -rn

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== scripts/test.sh ($tier): ${#failed[@]} stage(s) FAILED in $((SECONDS - start)) s:" >&2
    printf '   %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "== scripts/test.sh ($tier): every stage passed in $((SECONDS - start)) s"
