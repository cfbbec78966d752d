"""Backend local: this machine only; ``torchrun --standalone`` for more than one process."""

import sys
from typing import List

from espnet_ext.distributed.geometry import Geometry
from espnet_ext.distributed.plan import LaunchPlan, Process


def build_plan(geometry: Geometry, command: List[str], *, log: str) -> LaunchPlan:
    """The command itself (one process), or one standalone torchrun of ``nproc_per_node``.

    Args:
        geometry: a one-node geometry.
        command: the training command with the worker options appended.
        log: where the output goes.
    """
    if geometry.world_size == 1:
        argv = list(command)
    else:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                "--nproc_per_node", str(geometry.nproc_per_node), "--no-python"] + command  # fmt: skip
    return LaunchPlan([Process(argv, log)], {})
