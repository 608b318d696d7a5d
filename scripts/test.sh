#!/usr/bin/env bash
# Project test command: unit tests, then every example in smoke mode.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

pip_install -e '.[test]'
pip_install torch==2.13.0

python -m pytest tests

shopt -s nullglob
examples=(examples/*.py)
for f in "${examples[@]}"; do
    echo "== smoke: $f"
    GRAPHDL_SMOKE=1 python "$f"
done

for model in "--model sg --loss ns" "--model cbow --loss hs" \
             "--model sg --loss ns --workers 2"; do
    echo "== smoke: python -m examples.word2vec.train --smoke $model (the Lee corpus)"
    # shellcheck disable=SC2086
    python -m examples.word2vec.train --smoke --no-progress $model
done
echo "== smoke: benchmarks/word2vec.py --smoke (every trainer and the step profile, seconds)"
PYTHONPATH=. python benchmarks/word2vec.py --smoke

# The CUDA backend's kernels on the CPU (no GPU needed): the CNN examples, as on a GPU.
if command -v g++ >/dev/null; then
    for f in examples/lenet_fashion_mnist.py examples/alexnet.py examples/localization.py \
             examples/detection.py; do
        echo "== smoke: $f --backend cuda --device cpu"
        GRAPHDL_SMOKE=1 python "$f" --backend cuda --device cpu
    done
fi
