#!/usr/bin/env bash
# The test command: creates the environment on first use (tools/setup_env.sh), then runs
# the test suite. Extra arguments go to pytest (e.g. tools/test.sh -m "not slow" -x).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "${root}"
tools/setup_env.sh
venv=${VENV_DIR:-${root}/.venv}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)
set +e
"${venv}/bin/python" -m pytest -ra --durations=15 "$@"
rc=$?
set -e
echo "tools/test.sh: pytest exit ${rc} after $(( $(date +%s) - start )) s"
exit ${rc}
