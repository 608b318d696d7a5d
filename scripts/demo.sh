#!/usr/bin/env bash
# Full (non-smoke) lecture demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

pip_install -e '.[examples]'
python examples/lecture_two_layer.py "$@"
