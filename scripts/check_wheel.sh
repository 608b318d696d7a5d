#!/usr/bin/env bash
# Packaging check: build graphdl's wheel, install it into a fresh virtual environment outside
# the source tree, and run from there what a user runs first: the README's first example, the
# `graphdl draw` command and gd.draw(...).render(format="svg"). Also checks that the wheel holds
# the package data (the CUDA .cu templates and the CPU emulation header).
#
#   bash scripts/check_wheel.sh          (PYTHON=python3.X to choose the interpreter)
#
# Dependencies come from pip's configured indexes (the machine's local ones where set).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d /tmp/graphdl-wheel.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "build the wheel"
rm -rf "$ROOT/build/wheel"
(cd "$ROOT" && "$PYTHON" -m pip wheel . -w build/wheel --no-deps -q)
WHEEL="$(ls "$ROOT"/build/wheel/graphdl-*.whl)"
echo "$WHEEL"

step "package data in the wheel"
"$PYTHON" - "$WHEEL" "$ROOT" <<'EOF'
import sys
import zipfile
from pathlib import Path

wheel = zipfile.ZipFile(sys.argv[1])
names = set(wheel.namelist())
root = Path(sys.argv[2])
# Every file of the source packages: modules, the CUDA .cu templates, cuda_cpu.h and the stub
# headers. The top-level codegen/ installs as graphdl.codegen.
files = [str(p.relative_to(root)) for folder in ("graphdl", "codegen")
         for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
expected = [("graphdl/" + f) if f.startswith("codegen/") else f for f in files]
absent = sorted(n for n in expected if n not in names)
assert not absent, f"missing from the wheel (pyproject's packages / package-data): {absent}"
templates = [n for n in expected if n.endswith(".cu")]
assert templates and "graphdl/codegen/cuda_backend/cpu/cuda_cpu.h" in expected
assert not any(n.startswith(("tests/", "examples/", "codegen/")) for n in names), \
    "the wheel holds files outside the graphdl package"
metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
extras = {line.split(":", 1)[1].strip() for line in metadata.splitlines()
          if line.startswith("Provides-Extra:")}
assert {"cuda", "onnx", "examples", "dev"} <= extras, f"the wheel's extras: {sorted(extras)}"
print(f"{len(expected)} files, {len(templates)} .cu templates and cuda_cpu.h among them: "
      f"present; extras {sorted(extras)}")
EOF

step "install into a fresh virtual environment"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$WHEEL"
"$WORK/venv/bin/python" -m pip list --format=freeze | grep -iE '^(graphdl|numpy|sympy|networkx|graphviz)=='

# Everything below runs from $WORK: no source tree on the path.
cd "$WORK"
PY="$WORK/venv/bin/python"

step "the README's first example"
awk '/^```python/ {inside = 1; next} /^```/ {if (inside) exit} inside' "$ROOT/README.md" \
    > readme_example.py
"$PY" readme_example.py > readme_example.out
head -n 3 readme_example.out
grep -q "0.88079708" readme_example.out

step "graphdl is imported from the wheel, not the source tree"
"$PY" -c 'import graphdl, sys; print(graphdl.__file__); sys.exit("/venv/" not in graphdl.__file__)'

step "graphdl draw"
cat > circuit.py <<'EOF'
import graphdl as gd

x = gd.input("x", (), "float64")
w = gd.input("w", (), "float64")
output = gd.sigmoid(w * x + 1.0)
values = {"x": -1.0, "w": 2.0}
EOF
FORMAT=svg
command -v dot > /dev/null || FORMAT=dot  # without Graphviz the CLI writes DOT source
"$WORK/venv/bin/graphdl" draw circuit.py -o "circuit.$FORMAT"
grep -q "0.27" "circuit.$FORMAT"  # σ(-1) on the output wire
echo "wrote circuit.$FORMAT"

step "gd.draw(...).render(format=\"svg\")"
if command -v dot > /dev/null; then
    "$PY" - <<'EOF'
import graphdl as gd

a = gd.input("a", (), "float64")
path = gd.draw(gd.exp(a) * a, {"a": 0.5}).render("drawn", format="svg")
text = open(path, encoding="utf-8").read()
assert path == "drawn.svg" and "<svg" in text and "0.82" in text, path  # 0.5 e^0.5
print(f"rendered {path}")
EOF
else
    echo "skipped: Graphviz's dot is not installed (apt-get install -y graphviz)"
fi

printf "\nOK: the wheel installs and runs outside the source tree\n"
