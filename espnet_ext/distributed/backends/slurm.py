"""Backend slurm: an sbatch script, one task per node, ``srun`` + torchrun (c10d rendezvous).

The script is built from values computed here (and tested as values):

* :func:`node_resources`: CPUs, memory and wall time per node from the geometry and the
  config's ``num_workers`` (``--cpus-per-task``, repeated on ``srun``; ``--mem`` or
  ``--exclusive``; ``--time``);
* :func:`preemption`: how early SLURM warns before the time limit (``--signal=B:USR1@<s>``)
  and how long torchrun lets its workers take to stop, both sized from the step-checkpoint
  write time;
* :func:`dist_env`: the NCCL / torch.distributed environment of a long run;
* the rendezvous port: chosen in the job on the first node unless ``--master_port`` is given.

Pre-emption path (torch 2.14's ``torch.distributed.run`` read and exercised on CPU, see
tests/test_slurm.py): ``B:USR1`` reaches only the batch shell, which forwards it to ``srun``;
srun forwards it to its task on every node (torchrun). torchrun handles only the signals of
``--signals_to_handle`` (default SIGTERM,SIGINT,SIGHUP,SIGQUIT; an unhandled SIGUSR1 kills
torchrun and orphans the workers, which run in their own sessions), so SIGUSR1 is added: on it
torchrun sends SIGUSR1 to every worker, waits ``--shutdown_timeout`` seconds, then SIGKILLs.
A worker writes a step checkpoint and exits with
:data:`~espnet_ext.distributed.exit_codes.REQUEUE` (75), but torchrun itself exits 1 after a
forwarded signal, so the script requeues when it received the signal (or the step exited 75):
``scontrol requeue`` (``#SBATCH --requeue``) and exit 0; the requeued job runs the same
command with ``--resume true``.
"""

import dataclasses
import math
import re
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_ext.distributed.errors import LaunchError
from espnet_ext.distributed.exit_codes import REQUEUE
from espnet_ext.distributed.geometry import Geometry
from espnet_ext.distributed.plan import LaunchPlan, Process, has_path_sh, torchrun_args

DEFAULT_TIME = "2-00:00:00"
# Host memory per rank, GB: a GPU rank holds its CUDA context, pinned batches and, at resume,
# a CPU copy of the checkpoint (the full-scale model: ~0.6B parameters -> 2.4 GB weights +
# 4.8 GB AdamW moments = ~7.2 GB, loaded by all 8 ranks at once); a CPU rank holds the model.
RANK_MEM_GB = {"gpu": 16, "cpu": 4}
WORKER_MEM_GB = 2  # one DataLoader worker (sharded reader, a window of utterances)
NODE_MEM_MARGIN_GB = 8  # torchrun, srun, page cache headroom
CPU_MARGIN = 2  # torchrun's agent and srun's stepd
# Step-checkpoint write time, seconds: ~7.2 GB at >= 100 MB/s to a shared filesystem is
# ~72 s; rounded up. --checkpoint_write_seconds changes it.
CHECKPOINT_WRITE_SECONDS = 120
IN_FLIGHT_SECONDS = 60  # the update in flight finishes (and the data loader stops) first
SLURM_SIGNAL_SLACK = 60  # SLURM may send the warning signal up to 60 s late
NCCL_TIMEOUT_FLOOR = 600  # torch's default NCCL collective timeout (10 min)
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"


@dataclasses.dataclass(frozen=True)
class NodeResources:
    """What one node's task asks SLURM for."""

    cpus_per_task: int
    mem: Optional[str]  # ``--mem`` (None with --exclusive)
    exclusive: bool
    time: str


@dataclasses.dataclass(frozen=True)
class Preemption:
    """The warning signal's lead time and torchrun's grace period, seconds."""

    signal_lead: int  # --signal=B:USR1@<signal_lead>
    shutdown_timeout: int  # torchrun --shutdown_timeout: signal -> SIGKILL of the workers

    @property
    def directive(self) -> str:
        return f"--signal=B:USR1@{self.signal_lead}"


def node_resources(
    geometry: Geometry,
    num_workers: int,
    *,
    time: str = DEFAULT_TIME,
    mem: Optional[str] = None,
    exclusive: bool = False,
) -> NodeResources:
    """CPUs: one per rank plus one per loader worker of each rank, plus a margin; memory the
    same way (``RANK_MEM_GB``, ``WORKER_MEM_GB``) unless given; ``--exclusive`` asks for whole
    nodes instead of a memory figure."""
    if num_workers < 0:
        raise LaunchError(f"num_workers must be >= 0, got {num_workers}")
    n = geometry.nproc_per_node
    cpus = n * (1 + num_workers) + CPU_MARGIN
    if exclusive:
        return NodeResources(cpus, None, True, time)
    if not mem:
        per_rank = RANK_MEM_GB["gpu" if geometry.ngpu > 0 else "cpu"] + num_workers * WORKER_MEM_GB
        mem = f"{n * per_rank + NODE_MEM_MARGIN_GB}G"
    return NodeResources(cpus, mem, False, time)


def preemption(checkpoint_write_seconds: int = CHECKPOINT_WRITE_SECONDS) -> Preemption:
    """Lead time = the update in flight + the checkpoint write + SLURM's signal slack, rounded
    up to a minute; torchrun waits for the update and the write (+30 s) before SIGKILL."""
    if checkpoint_write_seconds < 1:
        raise LaunchError(f"--checkpoint_write_seconds must be >= 1, got {checkpoint_write_seconds}")
    grace = IN_FLIGHT_SECONDS + checkpoint_write_seconds
    lead = 60 * math.ceil((grace + SLURM_SIGNAL_SLACK) / 60)
    if lead > 65535:  # sbatch --signal's limit
        raise LaunchError(
            f"--checkpoint_write_seconds {checkpoint_write_seconds} gives a warning lead of {lead} s > 65535"
        )
    return Preemption(signal_lead=lead, shutdown_timeout=grace + 30)


def dist_env(geometry: Geometry, checkpoint_write_seconds: int = CHECKPOINT_WRITE_SECONDS) -> Dict[str, str]:
    """The environment every rank starts with.

    ESPnet's ``init_torch_distributed`` only *defaults* ``NCCL_DEBUG=INFO`` and
    ``NCCL_BLOCKING_WAIT=1`` (``os.environ.setdefault``), so the values set here win: WARN,
    and no blocking wait (which turns off the NCCL watchdog) but asynchronous error handling,
    so a dead rank ends the job instead of hanging it. While rank 0 writes a checkpoint the
    others wait in their next collective: the watchdog's heartbeat timeout is sized to
    outlast three writes (and never below torch's 10 min)."""
    env = {"OMP_NUM_THREADS": "1"}
    if geometry.ngpu > 0:
        timeout = max(NCCL_TIMEOUT_FLOOR, 3 * checkpoint_write_seconds)
        env.update({
            "NCCL_DEBUG": "WARN",
            "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
            "TORCH_NCCL_BLOCKING_WAIT": "0",
            "NCCL_BLOCKING_WAIT": "0",
            "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": str(timeout),
        })  # fmt: skip
    return env


def config_num_workers(command: Sequence[str]) -> int:
    """``num_workers`` of the training command (command line, then ``--config``; ESPnet's
    default 1)."""
    from espnet_ext.distributed.batch_settings import _read_config, command_options

    opts = command_options(command)
    if "num_workers" in opts:
        raw = opts["num_workers"][-1]
    elif "config" in opts:
        raw = _read_config(opts["config"][-1]).get("num_workers", 1)
    else:
        raw = 1
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise LaunchError(f"num_workers: expected an integer, got '{raw}'") from None


def _check_opts(slurm_opts: Sequence[str]) -> None:
    for opt in slurm_opts:
        if not opt.startswith("-"):
            raise LaunchError(
                f"slurm option '{opt}' is not an option: write each as --name=value "
                "(e.g. --partition=gpu --time=7-00:00:00)"
            )


def _opt_names(slurm_opts: Sequence[str]) -> set:
    return {re.split(r"[= ]", o.lstrip("-"), maxsplit=1)[0] for o in slurm_opts}


def _srun_line(geometry: Geometry, command: List[str], resources: NodeResources, pre: Preemption) -> str:
    """srun + torchrun; the rendezvous host, port and id are shell expansions in the script."""
    torchrun = torchrun_args(geometry) + [
        "--rdzv_backend", "c10d", "--rdzv_endpoint", "RDZV_HOST_PORT", "--rdzv_id", "RDZV_ID",
        "--signals_to_handle", TORCHRUN_SIGNALS, "--shutdown_timeout", str(pre.shutdown_timeout),
        "--no-python",
    ] + command  # fmt: skip
    srun = ["srun", "--kill-on-bad-exit=1", f"--cpus-per-task={resources.cpus_per_task}"]
    body = shlex.join(srun + torchrun)
    body = body.replace("RDZV_HOST_PORT", '"${rdzv_host}:${rdzv_port}"')
    return body.replace("RDZV_ID", '"${SLURM_JOB_ID}"') + " &"


_PICK_PORT = "python -c 'import socket; s = socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])'"

# The batch shell's half of the pre-emption path (see the module docstring): the traps are
# set before srun starts, srun runs in the background so that a trap runs at once (bash
# defers traps while a foreground child runs), and the step's status decides the requeue.
_TRAPS = """\
step=""
got_signal=""
forward() { got_signal=$1; echo "job ${SLURM_JOB_ID}: SIG$1: forwarding it to the ranks (step checkpoint, then requeue)"; [ -z "${step}" ] || kill -"$1" "${step}" 2>/dev/null || true; }
trap 'forward USR1' USR1
trap 'forward TERM' TERM"""
_WAIT_AND_REQUEUE = """\
step=$!
[ -z "${{got_signal}}" ] || kill -"${{got_signal}}" "${{step}}" 2>/dev/null || true
rc=0
while :; do
    wait "${{step}}" && rc=0 || rc=$?
    kill -0 "${{step}}" 2>/dev/null || break  # a trapped signal interrupts wait; the step runs on
done
trap - USR1 TERM
if [ "${{rc}}" -eq {requeue} ] || [ -n "${{got_signal}}" ]; then
    echo "job ${{SLURM_JOB_ID}}: the ranks stopped (status ${{rc}}, signal ${{got_signal:-none}}): requeueing; it resumes with --resume true"
    scontrol requeue "${{SLURM_JOB_ID}}"
    exit 0
fi
exit "${{rc}}"
"""


def sbatch_script(
    geometry: Geometry,
    command: List[str],
    *,
    log: str,
    job_name: str,
    workdir: str,
    slurm_opts: Sequence[str] = (),
    resources: Optional[NodeResources] = None,
    checkpoint_write_seconds: int = CHECKPOINT_WRITE_SECONDS,
) -> str:
    """The batch script: directives, then the recipe directory, path.sh, the environment, the
    rendezvous, srun in the background and the requeue on a warning or pre-emption signal.
    ``slurm_opts`` are passed through and override the computed directive of the same name."""
    n = geometry.nproc_per_node
    resources = resources or node_resources(geometry, 1)
    pre = preemption(checkpoint_write_seconds)
    env = dist_env(geometry, checkpoint_write_seconds)
    given = _opt_names(slurm_opts)
    computed = [f"--cpus-per-task={resources.cpus_per_task}"]
    computed.append("--exclusive" if resources.exclusive else f"--mem={resources.mem}")
    computed += [f"--time={resources.time}", pre.directive, "--requeue"]
    header = [
        "#!/usr/bin/env bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={geometry.num_nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if geometry.ngpu > 0:
        header.append(f"#SBATCH --gpus-per-node={geometry.ngpu}")
    header += [f"#SBATCH {d}" for d in computed if _opt_names([d]).isdisjoint(given)]
    header += [f"#SBATCH --output={log}", "#SBATCH --open-mode=append"]
    header += [f"#SBATCH {opt}" for opt in slurm_opts]
    if geometry.master_port is not None:
        port = [f"rdzv_port={geometry.master_port}"]
    else:
        port = ["# A free port on this node (the first of the allocation, where the rendezvous is).",
                f"rdzv_port=$({_PICK_PORT})"]  # fmt: skip
    body = [
        "# One task per node; torchrun starts "
        + (f"{n} processes (one per GPU)" if geometry.ngpu else f"{n} CPU processes")
        + " on each and they meet at a c10d rendezvous on the first node.",
        "set -euo pipefail",
        f"cd {shlex.quote(workdir)}",
    ]
    if has_path_sh(workdir):
        body.append(". ./path.sh")
    body += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    body += ['rdzv_host=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)', *port]
    body += [
        'echo "job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}): rendezvous ${rdzv_host}:${rdzv_port}"',
        _TRAPS,
        _srun_line(geometry, command, resources, pre),
    ]  # fmt: skip
    return "\n".join(header + body) + "\n" + _WAIT_AND_REQUEUE.format(requeue=REQUEUE)


def build_plan(
    geometry: Geometry,
    command: List[str],
    *,
    log: str,
    job_name: str,
    workdir: str,
    slurm_opts: Sequence[str] = (),
    resources: Optional[NodeResources] = None,
    checkpoint_write_seconds: int = CHECKPOINT_WRITE_SECONDS,
    wait: bool = True,
) -> LaunchPlan:
    """``sbatch --wait <log stem>.sbatch`` (``sbatch --parsable`` with ``wait`` false: submit
    and return); the job writes its output to ``log`` itself.

    Args:
        geometry: nodes and GPUs (or CPU processes) per node.
        command: the training command with the worker options appended.
        log: the training log (sbatch ``--output``); the script goes next to it.
        job_name: sbatch ``--job-name``.
        workdir: the recipe directory the job starts in.
        slurm_opts: extra ``#SBATCH`` options, each ``--name=value``.
        resources: per node (default: :func:`node_resources` with one loader worker).
        checkpoint_write_seconds: sizes the warning signal's lead (:func:`preemption`) and
            the NCCL timeouts (:func:`dist_env`).
        wait: wait for the job (``sbatch --wait``) or only submit it.
    """
    _check_opts(slurm_opts)
    script = sbatch_script(geometry, command, log=log, job_name=job_name, workdir=workdir, slurm_opts=slurm_opts,
                           resources=resources, checkpoint_write_seconds=checkpoint_write_seconds)  # fmt: skip
    script_path = str(Path(log).with_suffix(".sbatch"))
    argv = ["sbatch", "--wait", script_path] if wait else ["sbatch", "--parsable", script_path]
    return LaunchPlan([Process(argv, "", submit_only=not wait)], {script_path: script})
