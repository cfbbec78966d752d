"""Backend slurm: an sbatch script, one task per node, ``srun`` + torchrun (c10d rendezvous)."""

import shlex
from pathlib import Path
from typing import List, Sequence

from espnet_ext.distributed.errors import LaunchError
from espnet_ext.distributed.geometry import Geometry
from espnet_ext.distributed.plan import LaunchPlan, Process, has_path_sh, torchrun_args


def _check_opts(slurm_opts: Sequence[str]) -> None:
    for opt in slurm_opts:
        if not opt.startswith("-"):
            raise LaunchError(
                f"slurm option '{opt}' is not an option: write each as --name=value "
                "(e.g. --partition=gpu --time=7-00:00:00)"
            )


def _srun_line(geometry: Geometry, command: List[str]) -> str:
    """srun + torchrun; the rendezvous host and id are shell expansions in the script."""
    torchrun = torchrun_args(geometry) + ["--rdzv_backend", "c10d", "--rdzv_endpoint", "RDZV_HOST_PORT",
                                          "--rdzv_id", "RDZV_ID", "--no-python"] + command  # fmt: skip
    body = shlex.join(["srun", "--kill-on-bad-exit=1"] + torchrun)
    body = body.replace("RDZV_HOST_PORT", f'"${{rdzv_host}}:{geometry.master_port}"')
    return body.replace("RDZV_ID", '"${SLURM_JOB_ID}"')


def sbatch_script(
    geometry: Geometry,
    command: List[str],
    *,
    log: str,
    job_name: str,
    workdir: str,
    slurm_opts: Sequence[str] = (),
) -> str:
    """The batch script: directives, then the recipe directory, path.sh and srun."""
    n = geometry.nproc_per_node
    header = [
        "#!/usr/bin/env bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={geometry.num_nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if geometry.ngpu > 0:
        header.append(f"#SBATCH --gpus-per-node={geometry.ngpu}")
    header += [f"#SBATCH --output={log}", "#SBATCH --open-mode=append"]
    header += [f"#SBATCH {opt}" for opt in slurm_opts]
    body = [
        "# One task per node; torchrun starts "
        + (f"{n} processes (one per GPU)" if geometry.ngpu else f"{n} CPU processes")
        + " on each and they meet at a c10d rendezvous on the first node.",
        "set -euo pipefail",
        f"cd {shlex.quote(workdir)}",
    ]
    if has_path_sh(workdir):
        body.append(". ./path.sh")
    body += ['rdzv_host=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)',
             _srun_line(geometry, command), ""]  # fmt: skip
    return "\n".join(header + body)


def build_plan(
    geometry: Geometry,
    command: List[str],
    *,
    log: str,
    job_name: str,
    workdir: str,
    slurm_opts: Sequence[str] = (),
) -> LaunchPlan:
    """``sbatch --wait <log stem>.sbatch``; the job writes its output to ``log`` itself.

    Args:
        geometry: nodes and GPUs (or CPU processes) per node.
        command: the training command with the worker options appended.
        log: the training log (sbatch ``--output``); the script goes next to it.
        job_name: sbatch ``--job-name``.
        workdir: the recipe directory the job starts in.
        slurm_opts: extra ``#SBATCH`` options, each ``--name=value``.
    """
    _check_opts(slurm_opts)
    script = sbatch_script(geometry, command, log=log, job_name=job_name, workdir=workdir, slurm_opts=slurm_opts)
    script_path = str(Path(log).with_suffix(".sbatch"))
    return LaunchPlan([Process(["sbatch", "--wait", script_path], "")], {script_path: script})
