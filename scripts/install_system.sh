#!/usr/bin/env bash
# The optional system packages (Debian/Ubuntu), for the tests and examples that use them:
#   graphviz               `dot`: drawings as SVG (without it: DOT source; its tests skip)
#   g++                    CUDA kernels run on the CPU (device="cpu"; without it those tests skip)
#   dataset-fashion-mnist  the CNN examples' data (without it: scikit-learn's 8x8 digits)
#   chromium chromium-driver  the HTML stepper's browser tests (without them: skipped)
#   python3-venv           what scripts/_venv.sh needs to create .venv
# Runs apt-get as root, or through sudo; a package apt cannot install is reported and skipped.
# Neither scripts/test.sh nor scripts/demo.sh needs it: both pass without these packages.
set -euo pipefail

packages=(python3-venv graphviz g++ dataset-fashion-mnist chromium chromium-driver)

if [ "$(id -u)" = 0 ]; then
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
elif command -v sudo >/dev/null; then
    apt=(sudo env DEBIAN_FRONTEND=noninteractive apt-get)
else
    echo "error: installing system packages needs root (or sudo); as root run:" >&2
    echo "  apt-get update && apt-get install -y ${packages[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "error: apt-get not found: install the equivalents of ${packages[*]}" >&2
    exit 1
fi

"${apt[@]}" update -qq
missing=()
for p in "${packages[@]}"; do
    if ! "${apt[@]}" install -y -qq "$p"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "WARNING: could not install: ${missing[*]} (the tests that need them skip)" >&2
fi
