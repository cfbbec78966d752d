"""One module per backend, each building the :class:`~espnet_ext.distributed.plan.LaunchPlan`
that runs a training command on a :class:`~espnet_ext.distributed.geometry.Geometry`:

* :mod:`.local`: one ``torchrun --standalone`` on this machine, or the command itself when a
  single process is asked for;
* :mod:`.slurm`: an sbatch script with one task per node whose ``srun`` starts torchrun on
  every node, rendezvous c10d on the allocation's first node (no shared-filesystem file://
  init);
* :mod:`.torchrun`: one torchrun per host of a host list, through ssh, with a static
  rendezvous on the first host; node ranks follow the list, so rank 0 (ESPnet's writer) is on
  the first host and its output is the main log.
"""

from typing import Optional, Sequence

from espnet_ext.distributed.backends import local, slurm, torchrun
from espnet_ext.distributed.geometry import Geometry
from espnet_ext.distributed.plan import LaunchPlan, worker_args


def build_plan(
    geometry: Geometry,
    command: Sequence[str],
    *,
    log: str,
    job_name: str,
    workdir: str,
    slurm_opts: Sequence[str] = (),
    remote_shell: Sequence[str] = ("ssh", "-o", "BatchMode=yes"),
    time: str = slurm.DEFAULT_TIME,
    mem: Optional[str] = None,
    exclusive: bool = False,
    num_workers: Optional[int] = None,
    checkpoint_write_seconds: int = slurm.CHECKPOINT_WRITE_SECONDS,
    wait: bool = True,
) -> LaunchPlan:
    """The exact processes (and sbatch script) that run ``command`` on ``geometry``.

    ``time``, ``mem``, ``exclusive``, ``num_workers`` (default: the command's), the checkpoint
    write time and ``wait`` are the slurm backend's (:mod:`.slurm`)."""
    cmd = list(command) + worker_args(geometry)
    if geometry.backend == "local":
        return local.build_plan(geometry, cmd, log=log)
    if geometry.backend == "slurm":
        workers = slurm.config_num_workers(command) if num_workers is None else num_workers
        resources = slurm.node_resources(geometry, workers, time=time, mem=mem, exclusive=exclusive)
        return slurm.build_plan(geometry, cmd, log=log, job_name=job_name, workdir=workdir, slurm_opts=slurm_opts,
                                resources=resources, checkpoint_write_seconds=checkpoint_write_seconds,
                                wait=wait)  # fmt: skip
    return torchrun.build_plan(geometry, cmd, log=log, workdir=workdir, remote_shell=remote_shell)
