"""What a launch runs: the processes started on this machine and the files written first.

Every process runs ESPnet's "external launcher" mode (``--multiprocessing_distributed
false``; RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT come from torchrun; case d
of ``espnet2.train.distributed_utils.resolve_distributed_mode``), so every backend
(:mod:`espnet_ext.distributed.backends`) starts the same per-node torchrun; the options that
select it are :func:`worker_args`.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

from espnet_ext.distributed.geometry import Geometry


@dataclasses.dataclass
class Process:
    """One process the launcher starts on this machine, and where its output goes
    (``""``: the process writes the log itself, as sbatch does). ``submit_only``: the process
    submits a job and returns (``sbatch --parsable``): its output is the job id, and the log
    is the job's, so the launcher writes no footer."""

    argv: List[str]
    log: str
    submit_only: bool = False


@dataclasses.dataclass
class LaunchPlan:
    """The processes of a launch, and the files (path -> content) written before they start."""

    processes: List[Process]
    files: Dict[str, str]


def worker_args(geometry: Geometry) -> List[str]:
    """ESPnet options for every process of this geometry (appended to the command)."""
    if geometry.world_size == 1:
        return ["--ngpu", "1" if geometry.ngpu > 0 else "0"]
    return [
        "--ngpu",
        "1" if geometry.ngpu > 0 else "0",
        "--multiprocessing_distributed",
        "false",
        "--dist_backend",
        geometry.dist_backend,
    ]


def torchrun_args(geometry: Geometry) -> List[str]:
    """torchrun's node and process counts, the first options of every backend's torchrun."""
    return ["torchrun", "--nnodes", str(geometry.num_nodes), "--nproc_per_node", str(geometry.nproc_per_node)]


def has_path_sh(workdir: str) -> bool:
    """Whether the recipe directory has a path.sh that a remote shell should source first."""
    return os.path.isfile(os.path.join(workdir, "path.sh"))


def default_job_name(command: Sequence[str], output_dir: Optional[str]) -> str:
    """The command's ``--output_dir`` name, else its module's or program's name."""
    if output_dir:
        return os.path.basename(os.path.normpath(output_dir))
    if "-m" in command[:-1]:
        return command[command.index("-m") + 1].rsplit(".", 1)[-1]
    return os.path.basename(command[0])
