# Sourced by scripts/setup, run and test (not run by itself): sets PY, the Python
# interpreter the project is installed into and run with.
#
# - VPP_PYTHON=/path/to/python: that interpreter, as it is (no virtual environment);
# - an active virtual environment (VIRTUAL_ENV): its python;
# - otherwise .venv in the checkout, created on first use with python3 (or $PYTHON3).
#   Debian's own Python refuses pip installs outside a virtual environment (PEP 668,
#   "externally-managed-environment"), and lacks `python3 -m venv` until the python3-venv
#   package is installed: installed here, as root or with sudo, when it is missing.

apt_install() {
    if [[ $(id -u) == 0 ]]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

if [[ -n ${VPP_PYTHON:-} ]]; then
    PY=$VPP_PYTHON
elif [[ -n ${VIRTUAL_ENV:-} ]]; then
    PY=$VIRTUAL_ENV/bin/python
else
    PY=$PWD/.venv/bin/python
    if [[ ! -x $PY ]]; then
        base=${PYTHON3:-python3}
        # ensurepip is what Debian moves into python3-venv: without it `venv` fails.
        if ! "$base" -c 'import ensurepip, venv' 2>/dev/null; then
            echo "scripts: installing python3-venv (Debian) for a virtual environment" >&2
            apt_install python3-venv
        fi
        echo "scripts: creating the virtual environment .venv ($("$base" --version))" >&2
        "$base" -m venv .venv
    fi
fi
export PY
