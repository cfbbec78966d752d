"""Where the processes of a training run: backend, nodes and processes per node.

A training command runs on ``num_nodes`` nodes with ``nproc_per_node`` processes each: one
per GPU, or ``cpu_procs`` gloo processes when ``ngpu`` is 0. :class:`Geometry` checks the
combination when it is built and derives the numbers the rest of the launcher uses.
"""

import dataclasses
import os
from pathlib import Path
from typing import Optional, Tuple

from espnet_ext.distributed.errors import LaunchError

BACKENDS = ("local", "slurm", "torchrun")
DEFAULT_MASTER_PORT = 29500  # torchrun backend without --master_port (torchrun's own default)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the processes run.

    Args:
        backend: ``local``, ``slurm`` or ``torchrun`` (one torchrun per host over ssh).
        ngpu: GPUs per node, one process each; 0 for CPU processes (gloo).
        num_nodes: number of nodes.
        cpu_procs: processes per node when ``ngpu`` is 0.
        hosts: the nodes for the ``torchrun`` backend, the first hosts the rendezvous.
        master_port: rendezvous port (slurm, torchrun); None: the slurm job picks a free one
            on its first node, the torchrun backend uses ``DEFAULT_MASTER_PORT``, the local
            backend's ``torchrun --standalone`` its own.

    Raises:
        LaunchError: the combination cannot run (named in the message).
    """

    backend: str
    ngpu: int
    num_nodes: int
    cpu_procs: int = 1
    hosts: Tuple[str, ...] = ()
    master_port: Optional[int] = None

    def __post_init__(self) -> None:
        self._check_counts()
        self._check_backend()

    def _check_counts(self) -> None:
        if self.backend not in BACKENDS:
            raise LaunchError(f"backend '{self.backend}' is not one of {', '.join(BACKENDS)}")
        if self.ngpu < 0:
            raise LaunchError(f"--ngpu must be >= 0, got {self.ngpu}")
        if self.num_nodes < 1:
            raise LaunchError(f"--num_nodes must be >= 1, got {self.num_nodes}")
        if self.cpu_procs < 1:
            raise LaunchError(f"--cpu_procs must be >= 1, got {self.cpu_procs}")
        if self.ngpu > 0 and self.cpu_procs != 1:
            raise LaunchError(
                f"--cpu_procs {self.cpu_procs} is for CPU training (--ngpu 0); with --ngpu "
                f"{self.ngpu} there is one process per GPU"
            )
        if self.master_port is not None and not 0 < self.master_port < 65536:
            raise LaunchError(f"--master_port must be a TCP port (1-65535), got {self.master_port}")

    def _check_backend(self) -> None:
        if self.backend == "local" and self.num_nodes > 1:
            raise LaunchError(
                f"backend local runs on this machine only; --num_nodes {self.num_nodes} needs "
                "the slurm or torchrun backend (cmd.sh / --cmd_backend)"
            )
        if self.backend == "torchrun":
            if len(self.hosts) != self.num_nodes:
                raise LaunchError(
                    f"backend torchrun needs one host per node: --num_nodes {self.num_nodes} but "
                    f"{len(self.hosts)} host(s) given ({','.join(self.hosts) or 'none'}); "
                    "set --hosts"
                )
        elif self.hosts:
            raise LaunchError(
                f"--hosts is for the torchrun backend; backend {self.backend} chooses its own nodes"
            )

    @property
    def nproc_per_node(self) -> int:
        """Processes on every node: one per GPU, or ``cpu_procs``."""
        return self.ngpu if self.ngpu > 0 else self.cpu_procs

    @property
    def world_size(self) -> int:
        """Processes in all (ESPnet's ranks)."""
        return self.nproc_per_node * self.num_nodes

    @property
    def dist_backend(self) -> str:
        """The torch.distributed backend: ``nccl`` on GPUs, ``gloo`` on CPUs."""
        return "nccl" if self.ngpu > 0 else "gloo"


def parse_hosts(spec: str) -> Tuple[str, ...]:
    """Host names from ``"a,b c"`` or from a file (one per line, ``#`` comments)."""
    spec = spec.strip()
    if not spec:
        return ()
    if os.path.isfile(spec):
        names = []
        for line in Path(spec).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line)
        if not names:
            raise LaunchError(f"host file {spec} lists no hosts")
        return tuple(names)
    return tuple(h for h in spec.replace(",", " ").split() if h)
