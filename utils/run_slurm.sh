#!/usr/bin/env bash
# Run a command, or an array of jobs, through Slurm. Same contract as run_local.sh:
#     run_slurm.sh [--gpu N] [--num_threads N] [--srun-option=value ...] [JOB=a:b] <logfile> <command ...>
# One command: 'srun --ntasks=1 --nodes=1 <options> <command>' (an allocation of its own),
# its output in <logfile>. With JOB=a:b: one job array, 'sbatch --wait --array=a-b', each task
# on a node of its own choosing with its own log ('JOB' in <logfile> and in the command is the
# task index); the exit status is non-zero if any task failed (sbatch --wait returns the
# highest task status). --gpu N asks for N GPUs per job (--gres=gpu:N), --num_threads N for N
# CPUs (--cpus-per-task=N), as Kaldi's slurm.pl; other options go in --name=value form (cmd.sh
# passes ${slurm_opts}, e.g. --partition=cpu --time=4:00:00).
set -u
opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu) [ "$2" -gt 0 ] && opts+=("--gres=gpu:$2"); shift 2 ;;
        --num_threads) opts+=("--cpus-per-task=$2"); shift 2 ;;
        -*) opts+=("$1"); shift ;;
        *) break ;;
    esac
done
range=""
case "${1:-}" in JOB=*:*) range=${1#JOB=}; shift ;; esac
if [ $# -lt 2 ]; then
    echo "Usage: $0 [--gpu N] [--num_threads N] [--srun-option=value ...] [JOB=a:b] <logfile> <command ...>" >&2; exit 2
fi
logfile=$1; shift
if [ -z "${range}" ]; then
    exec "$(dirname "$0")/run_local.sh" "${logfile}" srun --ntasks=1 --nodes=1 "${opts[@]}" "$@"
fi

first=${range%:*}; last=${range#*:}
mkdir -p "$(dirname "${logfile}")"
script=$(dirname "${logfile}")/$(basename "${logfile//JOB/array}" .log).sbatch
{
    echo "#!/usr/bin/env bash"
    echo "#SBATCH --job-name=$(basename "${logfile//.JOB/}" .log)"
    echo "#SBATCH --array=${first}-${last}"
    echo "#SBATCH --ntasks=1"
    echo "#SBATCH --output=${logfile//JOB/%a}"
    for o in "${opts[@]}"; do echo "#SBATCH ${o}"; done
    echo "cd $(printf '%q' "$(pwd)")"
    echo "[ -f ./path.sh ] && . ./path.sh"
    printf 'args=('; printf ' %q' "$@"; printf ' )\n'
    # shellcheck disable=SC2016
    echo 'cmd=(); for a in "${args[@]}"; do cmd+=("${a//JOB/${SLURM_ARRAY_TASK_ID}}"); done'
    # shellcheck disable=SC2016
    echo 'echo "# ${cmd[*]}"; echo "# Started at $(date)"'
    echo '"${cmd[@]}"; rc=$?'
    # shellcheck disable=SC2016
    echo 'echo "# Accounting: status=${rc}"; echo "# Ended at $(date)"; exit ${rc}'
} > "${script}"
rc=0
sbatch --wait "${script}" > /dev/null || rc=$?
if [ "${rc}" -ne 0 ]; then
    failed=()
    for i in $(seq "${first}" "${last}"); do
        lf=${logfile//JOB/${i}}
        grep -q '^# Accounting: status=0$' "${lf}" 2>/dev/null || failed+=("${lf}")
    done
    echo "$0: ${#failed[@]} of $((last - first + 1)) array tasks failed (sbatch status ${rc}); see ${failed[*]}" >&2
    for f in "${failed[@]}"; do tail -n 20 "${f}" >&2 2>/dev/null; done
    exit 1
fi
