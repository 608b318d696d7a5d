# Sourced by scripts/test.sh and scripts/demo.sh: create (if missing) and
# activate the project venv at .venv, then define pip_install.
# Expects to be sourced from the repository root.

VENV_DIR="${VENV_DIR:-.venv}"
if [ ! -x "$VENV_DIR/bin/python" ]; then
    python3 -m venv "$VENV_DIR"
fi
# shellcheck disable=SC1091
source "$VENV_DIR/bin/activate"

# Local wheels (e.g. the CPU torch build) live in /opt/wheels on our machines;
# pip's global config already points there, but be explicit when it exists.
PIP_EXTRA_ARGS=()
if [ -d /opt/wheels ]; then
    PIP_EXTRA_ARGS+=(--find-links /opt/wheels)
fi

pip_install() {
    python -m pip install -q "${PIP_EXTRA_ARGS[@]}" "$@"
}
