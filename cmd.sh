# How jobs are run. Each *_cmd takes Kaldi's run.pl arguments:
#     ${cmd} [JOB=1:N] <logfile> <command ...>
# 'JOB' in the log file name and in the command is replaced by the job index.
#
# cmd_backend=local: jobs run on this machine (parallel for JOB=1:N).
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        train_cmd="utils/run_local.sh"
        decode_cmd="utils/run_local.sh"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local)" >&2
        return 1 2>/dev/null || exit 1
        ;;
esac
