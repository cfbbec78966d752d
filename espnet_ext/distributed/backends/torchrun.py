"""Backend torchrun: one torchrun per host through a remote shell, static rendezvous."""

import shlex
from pathlib import Path
from typing import List, Sequence

from espnet_ext.distributed.geometry import DEFAULT_MASTER_PORT, Geometry
from espnet_ext.distributed.plan import LaunchPlan, Process, has_path_sh, torchrun_args


def node_log(log: str, node: int) -> str:
    """Node 0 (rank 0) writes the main log; node k writes ``<stem>.node<k><suffix>``."""
    if node == 0:
        return log
    p = Path(log)
    return str(p.with_name(f"{p.stem}.node{node}{p.suffix}"))


def build_plan(
    geometry: Geometry,
    command: List[str],
    *,
    log: str,
    workdir: str,
    remote_shell: Sequence[str] = ("ssh", "-o", "BatchMode=yes"),
) -> LaunchPlan:
    """``<remote_shell> <host> 'cd <workdir> && [. ./path.sh &&] torchrun ...'`` per host.

    Args:
        geometry: its ``hosts`` in node-rank order; the first hosts the rendezvous.
        command: the training command with the worker options appended.
        log: rank 0's log; the other nodes' go next to it (:func:`node_log`).
        workdir: the recipe directory, the same path on every host.
        remote_shell: how to run a command on a host.
    """
    path_sh = ". ./path.sh && " if has_path_sh(workdir) else ""
    port = geometry.master_port if geometry.master_port is not None else DEFAULT_MASTER_PORT
    processes = []
    for k, host in enumerate(geometry.hosts):
        torchrun = torchrun_args(geometry) + [
            "--rdzv_backend", "static", "--master_addr", geometry.hosts[0],
            "--master_port", str(port), "--node_rank", str(k), "--no-python",
        ] + command  # fmt: skip
        remote = f"cd {shlex.quote(workdir)} && {path_sh}{shlex.join(torchrun)}"
        processes.append(Process(list(remote_shell) + [host, remote], node_log(log, k)))
    return LaunchPlan(processes, {})
