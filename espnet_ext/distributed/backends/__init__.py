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

from typing import Sequence

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
) -> LaunchPlan:
    """The exact processes (and sbatch script) that run ``command`` on ``geometry``."""
    cmd = list(command) + worker_args(geometry)
    if geometry.backend == "local":
        return local.build_plan(geometry, cmd, log=log)
    if geometry.backend == "slurm":
        return slurm.build_plan(geometry, cmd, log=log, job_name=job_name, workdir=workdir, slurm_opts=slurm_opts)
    return torchrun.build_plan(geometry, cmd, log=log, workdir=workdir, remote_shell=remote_shell)
