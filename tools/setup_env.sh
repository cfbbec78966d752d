#!/usr/bin/env bash
# Create (first use) or reuse the project's Python environment, and the system tools
# the recipe needs. Idempotent: a second call with nothing changed returns in well
# under a second. Used by path.sh (the recipe) and tools/test.sh (the tests).
#
#   VENV_DIR   where the environment lives (default: <repo>/.venv)
#   PYTHON     interpreter to build it from (default: python3.12/3.13 on PATH, then pyenv)
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
venv=${VENV_DIR:-${root}/.venv}

log() { echo "[setup_env] $*" >&2; }

# --- system tools -----------------------------------------------------------------
# espeak-ng synthesizes the embedded corpus. Nothing else is needed from the system:
# libsndfile ships inside the soundfile wheel (FLAC, WAV, MP3).
if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing espeak-ng (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    log "ERROR: espeak-ng is missing and this user cannot install it. Run:"
    log "  sudo apt-get install -y espeak-ng"
    exit 1
  fi
fi

# --- python environment -------------------------------------------------------------
stamp_key=$(cat "${root}/pyproject.toml" | sha1sum | cut -c1-12)
stamp=${venv}/.espnet_ext-${stamp_key}
if [ -f "${stamp}" ] && [ -x "${venv}/bin/python" ]; then
  exit 0
fi

find_python() {
  if [ -n "${PYTHON:-}" ]; then echo "${PYTHON}"; return; fi
  local c
  for c in python3.12 python3.13; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys' >/dev/null 2>&1; then
      command -v "$c"; return
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    local v
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[23]\.[0-9]+$' | sort -V); do
      echo "$(pyenv prefix "$v")/bin/python3"; return
    done
  fi
  return 1
}

if [ ! -x "${venv}/bin/python" ]; then
  py=$(find_python) || {
    log "ERROR: ESPnet 202611 needs Python 3.12 or 3.13 and none was found."
    log "  Install one (e.g. 'pyenv install 3.12.1') or set PYTHON=/path/to/python3.12"
    exit 1
  }
  log "creating ${venv} with $("${py}" --version 2>&1)"
  "${py}" -m venv "${venv}"
fi

log "installing espnet_ext and its pinned dependencies into ${venv} (first run: ~2-4 min)"
start=$(date +%s)
"${venv}/bin/python" -m pip install -q --upgrade pip
"${venv}/bin/python" -m pip install -q -e "${root}[test]"
rm -f "${venv}"/.espnet_ext-*
touch "${stamp}"
log "environment ready in $(( $(date +%s) - start )) s"
