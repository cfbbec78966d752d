# Sourced by every stage (and by every node of a multi-node launch): activates the project's
# environment and installs nothing. Set-up is tools/setup_env.sh (README "The two commands").
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
export MAIN_ROOT
_venv=${VENV_DIR:-${MAIN_ROOT}/.venv}
if [ ! -x "${_venv}/bin/python" ] || ! ls "${_venv}"/.espnet_ext-* > /dev/null 2>&1; then
    echo "path.sh: no ready Python environment at ${_venv}." >&2
    echo "path.sh: create it first (once; nodes sharing this file system share it): ${VENV_DIR:+VENV_DIR=${VENV_DIR} }${MAIN_ROOT}/tools/setup_env.sh" >&2
    unset _venv
    return 1 2>/dev/null || exit 1
fi
if ! ls "${_venv}/.espnet_ext-$("${MAIN_ROOT}/tools/env_key.sh")"* > /dev/null 2>&1; then
    echo "path.sh: warning: pyproject.toml, setup.py or espnet_ext.pth changed since ${_venv} was set up; update it: ${MAIN_ROOT}/tools/setup_env.sh" >&2
fi
export PATH="${_venv}/bin:${MAIN_ROOT}/utils:${PATH}"
unset _venv
export PYTHONIOENCODING=UTF-8
# Threads: training uses every core (torch default); parallel jobs set OMP_NUM_THREADS=1 themselves.
