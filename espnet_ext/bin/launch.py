"""Launch an ESPnet training command on N nodes x M processes, or print the launch.

    python -m espnet_ext.bin.launch --backend slurm --ngpu 8 --num_nodes 16 \\
        --log exp/ssl/train.log [--dry_run true] -- \\
        python -m espnet_ext.bin.ssl_train --config conf/pretrain_conformer_bestrq.yaml ...

Before anything starts it reads the command's batch settings (``--config`` YAML, then the
command line), prints the batch arithmetic for the geometry, and stops (exit status 2) when
the config's ``global_batch_utts`` would not hold, naming the numbers to change, unless
``--accept_global_batch true``. Every process gets ``--ngpu 0|1`` and, with more than one,
``--multiprocessing_distributed false --dist_backend nccl|gloo`` appended (ranks come from
torchrun's environment). Backends (see :mod:`espnet_ext.distributed.backends`):

* local: the command itself, or ``torchrun --standalone`` with several processes;
* slurm: writes ``<log stem>.sbatch`` next to the log and runs ``sbatch --wait`` on it
  (``--wait false``: submits it and prints the job id and how to follow it); the job asks
  for CPUs, memory and time per node, a warning signal before its time limit, and requeues
  itself after a step checkpoint (:mod:`espnet_ext.distributed.backends.slurm`);
* torchrun: one torchrun per host of ``--hosts`` through ``--remote_shell`` (ssh).

``--dry_run true`` prints the exact commands (and the sbatch script) and runs nothing. The
exit status is the training's (the first failing node's with several hosts).
"""

import argparse
import os
import shlex
import sys
from typing import Optional, Sequence

from espnet_ext.distributed.backends import build_plan
from espnet_ext.distributed.batch import batch_arithmetic
from espnet_ext.distributed.batch_settings import command_options, data_size, read_batch_settings
from espnet_ext.distributed.errors import LaunchError
from espnet_ext.distributed.geometry import BACKENDS, Geometry, parse_hosts
from espnet_ext.distributed.plan import default_job_name
from espnet_ext.distributed.report import launch_report, refusal_messages
from espnet_ext.distributed.runner import run_plan
from espnet_ext.distributed.schedule import check_schedule, describe_schedule_problem


def _bool(value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def _float_or_none(value: str) -> Optional[float]:
    if value.lower() in ("none", "null", ""):
        return None
    try:
        out = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or none, got '{value}'") from None
    if out <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_ext.bin.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", choices=BACKENDS, default="local")
    p.add_argument("--ngpu", type=int, default=0, help="GPUs per node, one process each (0: CPU)")
    p.add_argument("--num_nodes", type=int, default=1)
    p.add_argument(
        "--cpu_procs",
        type=int,
        default=1,
        help="with --ngpu 0: gloo processes per node (1: a single process)",
    )
    p.add_argument(
        "--hosts",
        default="",
        help="torchrun backend: host names, comma/space-separated, or a file with one "
        "per line; the first hosts the rendezvous and rank 0",
    )
    p.add_argument(
        "--master_port",
        type=int,
        default=None,
        help="rendezvous port (default: slurm: a free port picked in the job on its first "
        "node; torchrun: 29500)",
    )
    p.add_argument("--log", required=True, help="training log (rank 0's output)")
    p.add_argument("--job_name", default=None, help="default: the command's --output_dir name")
    p.add_argument(
        "--slurm_opts",
        default="",
        help="extra sbatch options, --name=value form, e.g. '--partition=gpu --time=7-0'",
    )
    p.add_argument(
        "--time",
        default="2-00:00:00",
        help="slurm: sbatch --time per job (a longer run requeues itself, see --checkpoint_write_seconds)",
    )
    p.add_argument(
        "--mem",
        default="",
        help="slurm: sbatch --mem per node (default: from ranks and the config's num_workers)",
    )
    p.add_argument(
        "--exclusive",
        type=_bool,
        default=False,
        help="slurm: whole nodes (sbatch --exclusive) instead of --mem",
    )
    p.add_argument(
        "--num_workers",
        type=int,
        default=None,
        help="slurm: loader workers per rank for --cpus-per-task (default: the command's/config's)",
    )
    p.add_argument(
        "--checkpoint_write_seconds",
        type=int,
        default=120,
        help="slurm: time a step checkpoint takes to write; sizes --signal=B:USR1@<lead> "
        "and the NCCL timeouts",
    )
    p.add_argument(
        "--wait",
        type=_bool,
        default=True,
        help="slurm: sbatch --wait (true) or submit and return, printing how to follow the job",
    )
    p.add_argument(
        "--remote_shell",
        default="ssh -o BatchMode=yes",
        help="torchrun backend: how to run a command on a host (<shell> <host> <command>)",
    )
    p.add_argument(
        "--accept_global_batch",
        type=_bool,
        default=False,
        help="launch even when the config's global_batch_utts would not hold",
    )
    p.add_argument(
        "--data_utts",
        type=int,
        default=None,
        help="training utterances, for steps per pass (default: the shape file)",
    )
    p.add_argument(
        "--data_hours",
        type=float,
        default=None,
        help="training hours, for steps per pass (with --mean_utt_seconds)",
    )
    p.add_argument(
        "--mean_utt_seconds", type=float, default=15.0, help="assumed mean utterance length with --data_hours"
    )
    p.add_argument(
        "--max_passes",
        type=_float_or_none,
        default=None,
        help="stop when the schedule passes over the data more often (none: no limit)",
    )
    p.add_argument(
        "--accept_passes",
        type=_bool,
        default=False,
        help="launch even when the schedule exceeds --max_passes",
    )
    p.add_argument(
        "--peak_tflops",
        type=float,
        default=312.0,
        help="per-GPU peak for the cost projection (A100 dense bf16: 312)",
    )
    p.add_argument("--dry_run", type=_bool, default=False, help="print the launch, run nothing")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- <training command ...>")
    return p


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
        arithmetic = batch_arithmetic(settings, geometry, data)
        schedule = check_schedule(
            command,
            arithmetic,
            geometry,
            max_passes=args.max_passes,
            mean_utt_seconds=args.mean_utt_seconds,
            peak_flops=args.peak_tflops * 1e12,
        )
        job_name = args.job_name or default_job_name(command, settings.output_dir)
        accept = args.accept_global_batch or settings.accept_global_batch
        if arithmetic.stops and accept and "accept_global_batch" not in command_options(command):
            command += ["--accept_global_batch", "true"]  # recorded in the experiment's config.yaml
        plan = build_plan(
            geometry, command, log=args.log, job_name=job_name, workdir=os.getcwd(),
            slurm_opts=shlex.split(args.slurm_opts), remote_shell=shlex.split(args.remote_shell),
            time=args.time, mem=args.mem or None, exclusive=args.exclusive, num_workers=args.num_workers,
            checkpoint_write_seconds=args.checkpoint_write_seconds, wait=args.wait,
        )  # fmt: skip
    except LaunchError as e:
        print(f"launch: error: {e}", file=sys.stderr)
        return 2

    report = dict(
        job_name=job_name, geometry=geometry, arithmetic=arithmetic, dry_run=args.dry_run, schedule=schedule
    )
    too_many = schedule.stops and not args.accept_passes
    if arithmetic.fatal or (arithmetic.stops and not accept) or schedule.fatal or too_many:
        print("\n".join(launch_report(**report)), flush=True)
        for message in refusal_messages(arithmetic) if arithmetic.fatal or not accept else []:
            print(message, file=sys.stderr)
        for p in schedule.fatal:
            print(f"launch: error: {describe_schedule_problem(p)}.", file=sys.stderr)
        for p in schedule.stops if too_many else ():
            print(
                f"launch: error: {describe_schedule_problem(p)}; or pass --accept_passes true to "
                "launch as it is.",
                file=sys.stderr,
            )
        return 2
    text = launch_report(**report, plan=plan)
    print("\n".join(text), flush=True)
    if args.dry_run:
        return 0
    return run_plan(plan, text, args.log)


if __name__ == "__main__":
    sys.exit(main())
