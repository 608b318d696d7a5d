# Sourced by scripts/test.sh and scripts/demo.sh: create (if missing) and
# activate the project venv at .venv, then define pip_install.
# Expects to be sourced from the repository root.

VENV_DIR="${VENV_DIR:-.venv}"
if [ ! -x "$VENV_DIR/bin/python" ]; then
    if ! command -v python3 >/dev/null; then
        echo "error: python3 not found: graphdl needs Python >= 3.10" \
             "(Debian/Ubuntu: apt-get install python3 python3-venv)" >&2
        exit 1
    fi
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "error: graphdl needs Python >= 3.10; python3 is $(python3 -V 2>&1)" >&2
        exit 1
    fi
    venv_existed=0
    [ -e "$VENV_DIR" ] && venv_existed=1
    if ! python3 -m venv "$VENV_DIR"; then
        # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a package of its own.
        [ "$venv_existed" = 0 ] && rm -rf "$VENV_DIR"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "== python3 -m venv failed: installing python3-venv (apt-get, as root)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            python3 -m venv "$VENV_DIR"
        else
            echo "error: python3 -m venv failed. On Debian/Ubuntu its pip bootstrap is a" \
                 "package of its own: sudo apt-get install python3-venv, then run this again" >&2
            exit 1
        fi
    fi
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
