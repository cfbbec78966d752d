# How jobs are run. Each *_cmd takes Kaldi's run.pl arguments:
#     ${cmd} [JOB=1:N] <logfile> <command ...>
# 'JOB' in the log file name and in the command is replaced by the job index.
# Training (stages 4 and 5) goes through "${launch_cmd[@]}" (espnet_ext.bin.launch), which
# starts one process per GPU on every node (--ngpu, --num_nodes) and checks the batch
# arithmetic first; --dry_run true prints the launch instead.
#
# cmd_backend=local:    everything runs on this machine (training: torchrun --standalone
#                       when more than one process is asked for).
# cmd_backend=slurm:    a job runs through srun, a job array (JOB=a:b) is one sbatch --array
#                       (utils/run_slurm.sh); training is an sbatch job, one task per node,
#                       srun + torchrun with a c10d rendezvous, requeued at its time limit.
# cmd_backend=torchrun: training runs one torchrun per host of ${hosts} (--hosts: names, or a
#                       file with one per line) through ssh, static rendezvous on the first
#                       host; other jobs run on this machine.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        train_cmd="utils/run_local.sh"
        decode_cmd="utils/run_local.sh"
        launch_cmd=(python -m espnet_ext.bin.launch --backend local)
        ;;
    slurm)
        # ssl_asr.sh's --slurm_opts (or the environment): options for every job and the
        # training sbatch, --name=value form, e.g. slurm_opts="--partition=gpu --account=myproj".
        # Training: --slurm_time, --slurm_mem/--slurm_exclusive, --slurm_wait and
        # --checkpoint_write_seconds (espnet_ext/distributed/backends/slurm.py: CPUs per node,
        # warning signal, requeue). Job arrays (stages 1, 2 and 6): one sbatch --array.
        slurm_opts=${slurm_opts:-}
        train_cmd="utils/run_slurm.sh ${slurm_opts}"
        decode_cmd="utils/run_slurm.sh ${slurm_opts}"
        launch_cmd=(python -m espnet_ext.bin.launch --backend slurm --slurm_opts "${slurm_opts}"
            --time "${slurm_time:-2-00:00:00}" ${slurm_mem:+--mem "${slurm_mem}"}
            --exclusive "${slurm_exclusive:-false}" --wait "${slurm_wait:-true}"
            --checkpoint_write_seconds "${checkpoint_write_seconds:-120}")
        ;;
    torchrun)
        # How to run a command on a host: <remote_shell> <host> <command>.
        remote_shell=${remote_shell:-"ssh -o BatchMode=yes"}
        train_cmd="utils/run_local.sh"
        decode_cmd="utils/run_local.sh"
        launch_cmd=(python -m espnet_ext.bin.launch --backend torchrun --remote_shell "${remote_shell}")
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local, slurm, torchrun)" >&2
        return 1 2>/dev/null || exit 1
        ;;
esac
