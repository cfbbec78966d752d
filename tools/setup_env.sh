#!/usr/bin/env bash
# Set-up: create (first use) or update the project's Python environment, and install the
# system tool the embedded corpus needs. The README's first command runs it before ./run.sh;
# tools/test.sh runs it before the tests. path.sh only activates what this creates.
# Idempotent: a second call with nothing changed returns in well under a second.
#
#   VENV_DIR         where the environment lives (default: <repo>/.venv)
#   PYTHON           interpreter to build it from (default: python3.12/3.13 on PATH, then pyenv)
#   TORCH_INDEX_URL  a PyTorch wheel index (e.g. one ending in /whl/cu126): torch and torchaudio,
#                    at their pinned versions, come from there instead of PyPI (whose torch is a
#                    CUDA 13 build: NVIDIA driver >= 580). Changing it re-installs them.
#   SKIP_ESPEAK_NG=1 do not try to install espeak-ng (needed only to synthesize the embedded
#                    corpus: stage 1 with --corpus embedded; LibriSpeech runs do without it)
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
venv=${VENV_DIR:-${root}/.venv}
torch_index=${TORCH_INDEX_URL:-}

log() { echo "[setup_env] $*" >&2; }

# --- system tools -----------------------------------------------------------------
# espeak-ng synthesizes the embedded corpus. Nothing else is needed from the system:
# libsndfile ships inside the soundfile wheel (FLAC, WAV, MP3). Without it everything but
# the embedded corpus's synthesis works, so a missing espeak-ng is a warning, not a failure.
espeak_hint="the embedded corpus (./run.sh stage 1) needs it: sudo apt-get install -y espeak-ng"
if command -v espeak-ng >/dev/null 2>&1; then
  :
elif [ "${SKIP_ESPEAK_NG:-0}" != 0 ]; then
  log "espeak-ng not installed (SKIP_ESPEAK_NG=${SKIP_ESPEAK_NG}); ${espeak_hint}"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing espeak-ng (apt-get)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; }; then
    log "WARNING: apt-get could not install espeak-ng; ${espeak_hint}"
  fi
else
  log "WARNING: espeak-ng is missing and cannot be installed here (needs root and apt-get); ${espeak_hint}"
fi

# --- python environment -------------------------------------------------------------
# The stamp names what was installed: pyproject.toml's hash (path.sh checks it), and the
# torch index when one is set.
stamp_key=$("${root}/tools/env_key.sh")  # a change to pyproject.toml, setup.py or the .pth re-installs
[ -n "${torch_index}" ] && stamp_key=${stamp_key}-torch-$(printf '%s' "${torch_index}" | sha1sum | cut -c1-8)
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
if [ -n "${torch_index}" ]; then
  # The pinned versions, from that index (its builds carry a local label, e.g. 2.14.1+cu126,
  # which the pins accept); the project's install below then keeps them.
  pins=$(grep -oE '"(torch|torchaudio)==[^"]+"' "${root}/pyproject.toml" | tr -d '"' | tr '\n' ' ')
  log "installing ${pins}from TORCH_INDEX_URL=${torch_index}"
  "${venv}/bin/python" -m pip uninstall -q -y torch torchaudio >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  "${venv}/bin/python" -m pip install -q ${pins} --index-url "${torch_index}"
elif ls "${venv}"/.espnet_ext-*-torch-* >/dev/null 2>&1; then
  log "TORCH_INDEX_URL unset: replacing the index's torch build with the pinned one from PyPI"
  "${venv}/bin/python" -m pip uninstall -q -y torch torchaudio >/dev/null 2>&1 || true
fi
"${venv}/bin/python" -m pip install -q -e "${root}[test]"
rm -f "${venv}"/.espnet_ext-*
touch "${stamp}"
log "environment ready in $(( $(date +%s) - start )) s"
