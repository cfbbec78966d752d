#!/usr/bin/env bash
# The test command: creates the environment on first use (tools/setup_env.sh), checks the
# code with ruff (lint and format, configured in pyproject.toml), then runs the test suite.
# Extra arguments go to pytest (e.g. tools/test.sh -m "not slow" -x). Fails if either fails.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "${root}"
tools/setup_env.sh
venv=${VENV_DIR:-${root}/.venv}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
set +e
lint=0
"${venv}/bin/ruff" check . || lint=1
"${venv}/bin/ruff" format --check . || lint=1
[ "${lint}" -eq 0 ] || echo "tools/test.sh: ruff found problems (fix: ruff check --fix . && ruff format .)" >&2
start=$(date +%s)
"${venv}/bin/python" -m pytest -ra --durations=15 "$@"
rc=$?
set -e
echo "tools/test.sh: ruff $([ "${lint}" -eq 0 ] && echo clean || echo FAILED); pytest exit ${rc} after $(( $(date +%s) - start )) s"
[ "${rc}" -ne 0 ] && exit ${rc}
exit ${lint}
