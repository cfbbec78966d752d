#!/usr/bin/env bash
# Run a command, or an array of jobs, on this machine. Kaldi run.pl-compatible subset:
#     run_local.sh [--gpu N] [--num_threads N] [JOB=a:b] <logfile> <command ...>
# With JOB=a:b, jobs a..b run in parallel, 'JOB' in <logfile> and in the command is replaced
# by the index, each job writes its own log, and the exit status is non-zero if any failed
# (the failed logs are named). Without it, the command's output also streams to stderr.
# --gpu N (N > 0): job i sees GPU i-1 only (CUDA_VISIBLE_DEVICES; one GPU per job, as
# the decoding uses it); --num_threads is accepted for Kaldi's contract and ignored here.
set -u
gpu=0
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu) gpu=$2; shift 2 ;;
        --num_threads) shift 2 ;;
        *) break ;;
    esac
done
range=""
case "${1:-}" in JOB=*:*) range=${1#JOB=}; shift ;; esac
if [ $# -lt 2 ]; then
    echo "Usage: $0 [JOB=a:b] <logfile> <command ...>" >&2; exit 2
fi
logfile=$1; shift

run_one() {  # <index or empty> <logfile> <command ...>
    local idx=$1 lf=$2; shift 2
    local args=() a
    for a in "$@"; do args+=("${a//JOB/${idx}}"); done
    lf=${lf//JOB/${idx}}
    mkdir -p "$(dirname "${lf}")"
    {
        echo "# ${args[*]}"
        echo "# Started at $(date)"
    } > "${lf}"
    local rc=0
    if [ "${gpu}" -gt 0 ]; then
        args=(env "CUDA_VISIBLE_DEVICES=$(( ${idx:-1} - 1 ))" "${args[@]}")
    fi
    if [ -z "${idx}" ]; then
        "${args[@]}" 2>&1 | tee -a "${lf}" >&2
        rc=${PIPESTATUS[0]}
    else
        "${args[@]}" >> "${lf}" 2>&1 || rc=$?
    fi
    echo "# Accounting: status=${rc}" >> "${lf}"
    echo "# Ended at $(date)" >> "${lf}"
    return ${rc}
}

if [ -z "${range}" ]; then
    run_one "" "${logfile}" "$@"
    exit $?
fi

first=${range%:*}; last=${range#*:}
pids=()
for i in $(seq "${first}" "${last}"); do
    run_one "${i}" "${logfile}" "$@" &
    pids+=($!)
done
failed=()
for k in "${!pids[@]}"; do
    wait "${pids[$k]}" || failed+=("${logfile//JOB/$((first + k))}")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "$0: ${#failed[@]} of ${#pids[@]} jobs failed; see ${failed[*]}" >&2
    for f in "${failed[@]}"; do tail -n 20 "${f}" >&2; done
    exit 1
fi
