"""Launch an ESPnet training command on N nodes x M processes, or print the launch.

    python -m espnet_ext.bin.launch --backend slurm --ngpu 8 --num_nodes 16 \\
        --log exp/ssl/train.log [--dry_run true] -- \\
        python -m espnet_ext.bin.ssl_train --config conf/pretrain_conformer_bestrq.yaml ...

Before anything starts it reads the command's batch settings (``--config`` YAML, then the
command line), prints the batch arithmetic for the geometry, and stops (exit status 2) when
the config's ``global_batch_utts`` would not hold, naming the numbers to change, unless
``--accept_global_batch true``. Every process gets ``--ngpu 0|1`` and, with more than one,
``--multiprocessing_distributed false --dist_backend nccl|gloo`` appended (ranks come from
torchrun's environment). Backends (see :mod:`espnet_ext.distributed.launch`):

* local: the command itself, or ``torchrun --standalone`` with several processes;
* slurm: writes ``<log stem>.sbatch`` next to the log and runs ``sbatch --wait`` on it;
* torchrun: one torchrun per host of ``--hosts`` through ``--remote_shell`` (ssh).

``--dry_run true`` prints the exact commands (and the sbatch script) and runs nothing. The
exit status is the training's (the first failing node's with several hosts).
"""

import argparse
import datetime
import os
import shlex
import signal
import subprocess
import sys
import threading
from typing import List, Optional, Sequence

from espnet_ext.distributed.launch import (
    BACKENDS,
    Geometry,
    LaunchError,
    LaunchPlan,
    build_plan,
    check_batches,
    command_options,
    data_size,
    parse_hosts,
    read_batch_settings,
)


def _bool(value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_ext.bin.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", choices=BACKENDS, default="local")
    p.add_argument("--ngpu", type=int, default=0, help="GPUs per node, one process each (0: CPU)")
    p.add_argument("--num_nodes", type=int, default=1)
    p.add_argument("--cpu_procs", type=int, default=1,
                   help="with --ngpu 0: gloo processes per node (1: a single process)")
    p.add_argument("--hosts", default="",
                   help="torchrun backend: host names, comma/space-separated, or a file with one "
                        "per line; the first hosts the rendezvous and rank 0")
    p.add_argument("--master_port", type=int, default=29500, help="rendezvous port (slurm, torchrun)")
    p.add_argument("--log", required=True, help="training log (rank 0's output)")
    p.add_argument("--job_name", default=None, help="default: the command's --output_dir name")
    p.add_argument("--slurm_opts", default="",
                   help="extra sbatch options, --name=value form, e.g. '--partition=gpu --time=7-0'")
    p.add_argument("--remote_shell", default="ssh -o BatchMode=yes",
                   help="torchrun backend: how to run a command on a host (<shell> <host> <command>)")
    p.add_argument("--accept_global_batch", type=_bool, default=False,
                   help="launch even when the config's global_batch_utts would not hold")
    p.add_argument("--data_utts", type=int, default=None,
                   help="training utterances, for steps per pass (default: the shape file)")
    p.add_argument("--data_hours", type=float, default=None,
                   help="training hours, for steps per pass (with --mean_utt_seconds)")
    p.add_argument("--mean_utt_seconds", type=float, default=15.0,
                   help="assumed mean utterance length with --data_hours")
    p.add_argument("--dry_run", type=_bool, default=False, help="print the launch, run nothing")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- <training command ...>")
    return p


def _job_name(command: Sequence[str], output_dir: Optional[str]) -> str:
    if output_dir:
        return os.path.basename(os.path.normpath(output_dir))
    if "-m" in command[:-1]:
        return command[command.index("-m") + 1].rsplit(".", 1)[-1]
    return os.path.basename(command[0])


def _pump(proc: subprocess.Popen, log_path: str, echo: bool) -> None:
    with open(log_path, "a", errors="replace") as log:
        for line in iter(proc.stdout.readline, b""):
            text = line.decode(errors="replace")
            log.write(text)
            log.flush()
            if echo:
                sys.stderr.write(text)
                sys.stderr.flush()


def _header(path: str, lines: List[str]) -> None:
    # Append: a resumed training keeps the log of the epochs before the interruption.
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        for line in lines:
            f.write(f"# {line}\n")
        f.write(f"# Started at {datetime.datetime.now():%c}\n")


def _footer(path: str, status: int) -> None:
    with open(path, "a") as f:
        f.write(f"# Accounting: status={status}\n# Ended at {datetime.datetime.now():%c}\n")


def run_plan(plan: LaunchPlan, header: List[str], main_log: str) -> int:
    """Start the plan's processes, route their output to the logs, return the exit status."""
    for path, content in plan.files.items():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    logs = [p.log or main_log for p in plan.processes]
    for path, proc in zip(logs, plan.processes):
        _header(path, header + [shlex.join(proc.argv)])
    procs, pumps = [], []
    try:
        for k, (path, spec) in enumerate(zip(logs, plan.processes)):
            if spec.log:
                proc = subprocess.Popen(spec.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                pump = threading.Thread(target=_pump, args=(proc, path, k == 0), daemon=True)
                pump.start()
                pumps.append(pump)
            else:  # sbatch: the job writes the log itself
                proc = subprocess.Popen(spec.argv)
            procs.append(proc)
        status = 0
        remaining = list(range(len(procs)))
        while remaining:
            for k in list(remaining):
                try:
                    rc = procs[k].wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    continue
                remaining.remove(k)
                if rc != 0 and status == 0:
                    status = rc
                    for j in remaining:  # one node failed: stop the others
                        procs[j].send_signal(signal.SIGTERM)
    except KeyboardInterrupt:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
        status = 130
    for pump in pumps:
        pump.join()
    for path in dict.fromkeys(logs):
        _footer(path, status)
    if status != 0:
        failed = [p for p, proc in zip(logs, procs) if proc.returncode not in (0, None)]
        print(f"launch: training failed (status {status}); see {' '.join(failed) or main_log}",
              file=sys.stderr)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("launch: error: no training command (give it after --)", file=sys.stderr)
        return 2
    try:
        geometry = Geometry(
            backend=args.backend,
            ngpu=args.ngpu,
            num_nodes=args.num_nodes,
            cpu_procs=args.cpu_procs,
            hosts=parse_hosts(args.hosts),
            master_port=args.master_port,
        )
        settings = read_batch_settings(command)
        data = data_size(settings, args.data_utts, args.data_hours, args.mean_utt_seconds)
        report = check_batches(settings, geometry, data)
        job_name = args.job_name or _job_name(command, settings.output_dir)
        accept = args.accept_global_batch or settings.accept_global_batch
        if report.stops and accept and "accept_global_batch" not in command_options(command):
            command += ["--accept_global_batch", "true"]  # recorded in the experiment's config.yaml
        plan = build_plan(
            geometry, command, log=args.log, job_name=job_name, workdir=os.getcwd(),
            slurm_opts=shlex.split(args.slurm_opts), remote_shell=shlex.split(args.remote_shell),
        )
    except LaunchError as e:
        print(f"launch: error: {e}", file=sys.stderr)
        return 2

    text = [f"launch {job_name}{' (dry run: nothing runs)' if args.dry_run else ''}: "
            f"{geometry.describe()}"]
    text += report.lines
    if report.fatal or (report.stops and not accept):
        print("\n".join(text), flush=True)
        for problem in report.fatal:
            print(f"launch: error: {problem}.", file=sys.stderr)
        if not report.fatal:
            for problem in report.stops:
                print(f"launch: error: {problem}; or pass --accept_global_batch true to launch "
                      "as it is.", file=sys.stderr)
        return 2
    for problem in report.stops:
        text.append(f"  accepted (--accept_global_batch true): {problem}")
    text.append("commands:" if len(plan.display) > 1 or geometry.backend == "slurm" else "command:")
    text += plan.display
    print("\n".join(text), flush=True)
    if args.dry_run:
        return 0
    return run_plan(plan, text, args.log)


if __name__ == "__main__":
    sys.exit(main())
