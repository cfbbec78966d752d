# Sourced by every stage: puts the project's environment first on PATH.
# Creates the environment on first use (tools/setup_env.sh).
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
export MAIN_ROOT
"${MAIN_ROOT}/tools/setup_env.sh" || return 1 2>/dev/null || exit 1
export PATH="${VENV_DIR:-${MAIN_ROOT}/.venv}/bin:${MAIN_ROOT}/utils:${PATH}"
export PYTHONIOENCODING=UTF-8
# Threads: training uses every core (torch default); parallel jobs set OMP_NUM_THREADS=1 themselves.
