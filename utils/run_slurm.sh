#!/usr/bin/env bash
# Run a command, or an array of jobs, through Slurm's srun. Same contract as run_local.sh:
#     run_slurm.sh [--srun-option=value ...] [JOB=a:b] <logfile> <command ...>
# Each job is 'srun --ntasks=1 --nodes=1 <options> <command>' (a one-task allocation of its
# own, started from here); with JOB=a:b the jobs run in parallel, each with its own log
# (utils/run_local.sh does the job array and the logs), and the exit status is non-zero if
# any failed. Options go in --name=value form (cmd.sh passes ${slurm_opts}, e.g.
# --partition=cpu --time=4:00:00).
set -u
opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        -*) opts+=("$1"); shift ;;
        *) break ;;
    esac
done
range=()
case "${1:-}" in JOB=*:*) range=("$1"); shift ;; esac
if [ $# -lt 2 ]; then
    echo "Usage: $0 [--srun-option=value ...] [JOB=a:b] <logfile> <command ...>" >&2; exit 2
fi
logfile=$1; shift
exec "$(dirname "$0")/run_local.sh" "${range[@]}" "${logfile}" srun --ntasks=1 --nodes=1 "${opts[@]}" "$@"
