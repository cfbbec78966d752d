"""Launch geometry, batch arithmetic and launch commands for ESPnet training.

A training command (``python -m espnet_ext.bin.ssl_train --config X ...``) runs on
``num_nodes`` nodes with ``nproc_per_node`` processes each: one per GPU, or ``cpu_procs`` gloo
processes when ``ngpu`` is 0. Every process runs ESPnet's "external launcher" mode
(``--multiprocessing_distributed false``; RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT come from torchrun; case d of ``espnet2.train.distributed_utils.
resolve_distributed_mode``), so the three backends start the same per-node torchrun:

* ``local``: one ``torchrun --standalone`` on this machine, or the command itself when a
  single process is asked for;
* ``slurm``: an sbatch script with one task per node whose ``srun`` starts torchrun on every
  node, rendezvous c10d on the allocation's first node (no shared-filesystem file:// init);
* ``torchrun``: one torchrun per host of a host list, through ssh, with a static rendezvous
  on the first host; node ranks follow the list, so rank 0 (ESPnet's writer) is on the
  first host and its output is the main log.

Batch arithmetic, with ESPnet's semantics: ``batch_size`` counts the utterances of one
micro-batch across all ranks (``AbsTask.build_sequence_iter_factory`` gives rank r the
slice ``batch[r::world_size]``), so an optimizer step sees ``batch_size x accum_grad``
utterances whatever the number of ranks, and the number of ranks sets the per-rank
micro-batch. A config that declares ``global_batch_utts`` gets that number exactly, split
into equal per-rank micro-batches, or the launch stops before anything starts and says
which numbers to change (:func:`check_batches`), unless the user accepts the new batch.
"""

import dataclasses
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

BACKENDS = ("local", "slurm", "torchrun")

# ESPnet's defaults (espnet2.tasks.abs_task.AbsTask.get_parser) for the keys read here when
# neither the config nor the command sets them; tests/test_launch.py checks them against
# ESPnet's parser.
ESPNET_DEFAULTS = {
    "batch_type": "folded",
    "batch_size": 20,
    "batch_bins": 1000000,
    "accum_grad": 1,
    "max_epoch": 40,
    "num_iters_per_epoch": None,
    "iterator_type": "sequence",
}

# Options the launcher sets on every process; the training command must not set them.
_LAUNCHER_OWNED = (
    "ngpu",
    "multiprocessing_distributed",
    "dist_backend",
    "dist_launcher",
    "dist_world_size",
    "dist_rank",
    "local_rank",
    "dist_init_method",
    "dist_master_addr",
    "dist_master_port",
)
_UTTERANCE_BATCH_TYPES = ("unsorted", "sorted", "folded")
_BIN_BATCH_TYPES = ("length", "numel")


class LaunchError(Exception):
    """Bad geometry, command or batch configuration; raised before anything starts."""


# ---------------------------------------------------------------------------------------
# Geometry


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the processes run.

    Args:
        backend: ``local``, ``slurm`` or ``torchrun`` (one torchrun per host over ssh).
        ngpu: GPUs per node, one process each; 0 for CPU processes (gloo).
        num_nodes: number of nodes.
        cpu_procs: processes per node when ``ngpu`` is 0.
        hosts: the nodes for the ``torchrun`` backend, the first hosts the rendezvous.
        master_port: rendezvous port (slurm, torchrun).
    """

    backend: str
    ngpu: int
    num_nodes: int
    cpu_procs: int = 1
    hosts: Tuple[str, ...] = ()
    master_port: int = 29500

    def __post_init__(self):
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
        if not 0 < self.master_port < 65536:
            raise LaunchError(f"--master_port must be a TCP port (1-65535), got {self.master_port}")
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
        return self.ngpu if self.ngpu > 0 else self.cpu_procs

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.num_nodes

    @property
    def dist_backend(self) -> str:
        return "nccl" if self.ngpu > 0 else "gloo"

    def describe(self) -> str:
        if self.ngpu > 0:
            per = f"{self.ngpu} GPU{'s' if self.ngpu > 1 else ''}"
        else:
            per = f"{self.cpu_procs} CPU process{'es' if self.cpu_procs > 1 else ''}"
        dist = f", DDP over {self.dist_backend}" if self.world_size > 1 else ", single process"
        return (
            f"backend {self.backend}, {self.num_nodes} node{'s' if self.num_nodes > 1 else ''} "
            f"x {per} = {self.world_size} rank{'s' if self.world_size > 1 else ''}{dist}"
        )


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


# ---------------------------------------------------------------------------------------
# The training command's effective batch settings


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """What ESPnet will use: the config's values, overridden by the command line."""

    config: Optional[str]
    batch_type: str
    batch_size: int
    batch_bins: int
    accum_grad: int
    global_batch_utts: Optional[int]
    global_batch_source: str  # where global_batch_utts came from, for messages
    micro_batch_per_rank: Optional[int]  # utterances per rank per micro-batch the config is sized for
    accept_global_batch: bool
    accum_no_sync: bool
    iterator_type: str
    max_epoch: int
    num_iters_per_epoch: Optional[int]
    train_shape_file: Optional[str]
    output_dir: Optional[str]


def _str2bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise LaunchError(f"{name}: expected true or false, got '{value}'")


def _int(value, name: str, none_ok: bool = False) -> Optional[int]:
    if value is None or (none_ok and str(value).lower() in ("none", "null")):
        if none_ok:
            return None
        raise LaunchError(f"{name}: a value is required")
    if isinstance(value, bool):
        raise LaunchError(f"{name}: expected an integer, got {value}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LaunchError(f"{name}: expected an integer, got '{value}'") from None


def command_options(command: Sequence[str]) -> Dict[str, List[str]]:
    """Every ``--key value`` / ``--key=value`` of an ESPnet command line, in order."""
    found: Dict[str, List[str]] = {}
    i = 0
    while i < len(command):
        arg = command[i]
        if arg.startswith("--") and len(arg) > 2:
            if "=" in arg:
                key, value = arg[2:].split("=", 1)
                i += 1
            else:
                key = arg[2:]
                value = command[i + 1] if i + 1 < len(command) else ""
                i += 2
            found.setdefault(key.replace("-", "_"), []).append(value)
        else:
            i += 1
    return found


def read_batch_settings(command: Sequence[str]) -> BatchSettings:
    """The batch settings ESPnet will resolve for ``command`` (config, then command line)."""
    import yaml

    opts = command_options(command)
    owned = [k for k in _LAUNCHER_OWNED if k in opts]
    if owned:
        raise LaunchError(
            "the launcher sets " + ", ".join(f"--{k}" for k in owned) + " for every process "
            "from the geometry (--ngpu/--num_nodes/--cpu_procs); remove it from the training command"
        )
    config_path = opts["config"][-1] if "config" in opts else None
    conf: Dict = {}
    if config_path is not None:
        if not os.path.isfile(config_path):
            raise LaunchError(f"training config not found: {config_path}")
        with open(config_path) as f:
            conf = yaml.safe_load(f) or {}
        if not isinstance(conf, dict):
            raise LaunchError(f"{config_path}: expected a YAML mapping at the top level")

    def value(key: str):
        if key in opts:
            return opts[key][-1], f"--{key} on the command line"
        if key in conf:
            return conf[key], f"{key} in {config_path}"
        return ESPNET_DEFAULTS.get(key), f"{key} (ESPnet default)"

    def integer(key: str, none_ok: bool = False, positive: bool = True) -> Optional[int]:
        raw, where = value(key)
        out = _int(raw, where, none_ok=none_ok)
        if positive and out is not None and out < 1:
            raise LaunchError(f"{where}: must be >= 1, got {out}")
        return out

    batch_type, where = value("batch_type")
    batch_type = str(batch_type)
    if batch_type not in _UTTERANCE_BATCH_TYPES + _BIN_BATCH_TYPES:
        raise LaunchError(
            f"{where}: unknown batch_type '{batch_type}' "
            f"(one of {', '.join(_UTTERANCE_BATCH_TYPES + _BIN_BATCH_TYPES)})"
        )
    accept_raw, accept_where = value("accept_global_batch")
    no_sync_raw, no_sync_where = value("accum_no_sync")
    shape = opts.get("train_shape_file") or conf.get("train_shape_file")
    if isinstance(shape, list):
        shape = shape[0] if shape else None
    out_dir = value("output_dir")[0]
    return BatchSettings(
        config=config_path,
        batch_type=batch_type,
        batch_size=integer("batch_size"),
        batch_bins=integer("batch_bins"),
        accum_grad=integer("accum_grad"),
        global_batch_utts=integer("global_batch_utts", none_ok=True),
        global_batch_source=value("global_batch_utts")[1],
        micro_batch_per_rank=integer("micro_batch_per_rank", none_ok=True),
        accept_global_batch=(
            _str2bool(accept_raw, accept_where) if accept_raw is not None else False
        ),
        accum_no_sync=_str2bool(no_sync_raw, no_sync_where) if no_sync_raw is not None else False,
        iterator_type=str(value("iterator_type")[0]),
        max_epoch=integer("max_epoch"),
        num_iters_per_epoch=integer("num_iters_per_epoch", none_ok=True),
        train_shape_file=str(shape) if shape else None,
        output_dir=str(out_dir) if out_dir else None,
    )


# ---------------------------------------------------------------------------------------
# Data size


@dataclasses.dataclass(frozen=True)
class DataSize:
    utterances: int
    source: str
    numel: Optional[int] = None  # sum of frames x dims (shape file only)


def data_size(
    settings: BatchSettings,
    data_utts: Optional[int] = None,
    data_hours: Optional[float] = None,
    mean_utt_seconds: float = 15.0,
) -> Optional[DataSize]:
    """The training set size: given explicitly, or counted from the command's shape file."""
    if data_utts is not None and data_hours is not None:
        raise LaunchError("give --data_utts or --data_hours, not both")
    if data_utts is not None:
        if data_utts < 1:
            raise LaunchError(f"--data_utts must be >= 1, got {data_utts}")
        return DataSize(data_utts, f"{data_utts:,} utterances (--data_utts)")
    if data_hours is not None:
        if data_hours <= 0 or mean_utt_seconds <= 0:
            raise LaunchError(
                f"--data_hours and --mean_utt_seconds must be > 0, got {data_hours}, {mean_utt_seconds}"
            )
        utts = int(data_hours * 3600 / mean_utt_seconds)
        return DataSize(
            utts,
            f"{utts:,} utterances ({data_hours:g} h at an assumed mean of "
            f"{mean_utt_seconds:g} s per utterance)",
        )
    shape = settings.train_shape_file
    if shape and os.path.isfile(shape):
        utts, numel = 0, 0
        with open(shape) as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise LaunchError(f"{shape}:{lineno}: expected '<utt> <dims>', got {line.strip()!r}")
                try:
                    numel += math.prod(int(d) for d in parts[1].split(","))
                except ValueError:
                    raise LaunchError(f"{shape}:{lineno}: bad shape {parts[1]!r}") from None
                utts += 1
        if utts == 0:
            raise LaunchError(f"{shape}: no utterances")
        return DataSize(utts, f"{utts:,} utterances ({shape})", numel=numel)
    return None


# ---------------------------------------------------------------------------------------
# Batch arithmetic and the global-batch check


@dataclasses.dataclass
class BatchReport:
    lines: List[str]  # the arithmetic, for printing
    stops: List[str]  # problems that stop the launch unless the new global batch is accepted
    fatal: List[str]  # problems that stop the launch always (ESPnet would fail)


def _fix_suggestions(target: int, ranks: int, batch: int, accum: int) -> str:
    """How to reach ``target`` utterances per step with equal per-rank micro-batches."""
    options = []
    if target % accum == 0 and (target // accum) % ranks == 0:
        options.append(f"batch_size {batch} -> {target // accum}")
    if target % batch == 0 and batch % ranks == 0 and batch != target // accum:
        options.append(f"accum_grad {accum} -> {target // batch}")
    if options:
        return "Change " + " or ".join(options)
    # Change both: a multiple of the ranks that divides the target, closest per rank.
    pairs = [
        (ranks * n, target // (ranks * n))
        for n in range(1, target // ranks + 1)
        if target % (ranks * n) == 0
    ]
    if pairs:
        b, a = min(pairs, key=lambda p: (abs(p[0] / ranks - batch / ranks), p[0]))
        return (
            f"Change batch_size {batch} -> {b} and accum_grad {accum} -> {a} "
            f"({target} = {ranks} ranks x {b // ranks} x {a})"
        )
    step = ranks * accum
    lo, hi = (target // step) * step, (target // step + 1) * step
    near = " or ".join(
        f"{g} = {ranks} ranks x {g // step} x {accum}" for g in (lo, hi) if g > 0
    )
    return (
        f"{target} is not a multiple of {ranks} ranks, so no equal per-rank micro-batch "
        f"gives it: use a number of ranks that divides {target}, or change "
        f"global_batch_utts (e.g. {near})"
    )


def check_batches(
    settings: BatchSettings, geometry: Geometry, data: Optional[DataSize] = None
) -> BatchReport:
    """The batch arithmetic of ``settings`` on ``geometry`` and what would stop the launch."""
    W, B, A, G = geometry.world_size, settings.batch_size, settings.accum_grad, settings.global_batch_utts
    conf = settings.config or "no --config"
    lines: List[str] = []
    stops: List[str] = []
    fatal: List[str] = []
    by_utts = settings.batch_type in _UTTERANCE_BATCH_TYPES

    if by_utts:
        lines.append(
            f"batch arithmetic ({conf}; batch_type {settings.batch_type}; ESPnet's batch_size "
            "counts a micro-batch across all ranks):"
        )
        upto = "up to " if settings.batch_type == "folded" else ""
        per_rank, rem = divmod(B, W)
        # ESPnet's sequence iterator gives rank r batch[r::W] (unequal shares when W does not
        # divide B); the project's sharded iterator gives every rank B // W (the rest unused).
        sharded = settings.iterator_type == "sharded"
        used = W * per_rank if sharded else B
        if B < W:
            fatal.append(
                f"batch_size {B} is smaller than the {W} ranks: ESPnet needs at least one "
                "utterance per rank in every micro-batch. "
                + (_fix_suggestions(G, W, B, A) if G else f"Change batch_size {B} -> {W} or more")
            )
        if rem == 0 and B >= W:
            lines.append(
                f"  {upto}{B * A} utterances = {W} rank{'s' if W > 1 else ''} x {per_rank} per "
                f"micro-batch x {A} accumulation step{'s' if A > 1 else ''}"
            )
            if W > 1:
                lines.append(
                    f"  micro-batch: batch_size {upto}{B} utterances over {W} ranks = {per_rank} per rank"
                )
        elif B >= W and sharded:
            lines.append(
                f"  micro-batch: batch_size {upto}{B} utterances over {W} ranks: the sharded "
                f"iterator gives each rank {per_rank} ({used} per micro-batch, {rem} unused)"
            )
        elif B >= W:
            lines.append(
                f"  micro-batch: batch_size {upto}{B} utterances over {W} ranks = {per_rank + 1} "
                f"on {rem} ranks, {per_rank} on {W - rem} (unequal)"
            )
        lines.append(f"  utterances per optimizer step: {used} x {A} = {upto}{used * A}")
        if settings.batch_type == "folded":
            lines.append(
                "  (folded: micro-batches of long utterances are smaller, so these are upper bounds)"
            )
        M = settings.micro_batch_per_rank
        if M is not None and B >= W and per_rank != M:
            # The config fixes what one GPU holds; ESPnet's global batch_size would change it.
            want = W * M
            if G is not None and G % want == 0:
                fix = (f"Change batch_size {B} -> {want} and accum_grad {A} -> {G // want} "
                       f"({G} = {W} ranks x {M} x {G // want})")
            else:
                fix = f"Change batch_size {B} -> {want}" + (
                    f"; {G} is not a multiple of {want}: change global_batch_utts too" if G else "")
            stops.append(
                f"{conf} is sized for micro_batch_per_rank {M} utterances per rank, but batch_size "
                f"{B} over {W} rank{'s' if W > 1 else ''} gives {per_rank} per rank. " + fix
            )
        if G is not None and B >= W:
            if used * A != G:
                stops.append(
                    f"the global batch would be {used * A} utterances per optimizer step "
                    f"({used} per micro-batch x accum_grad {A}), but "
                    f"{settings.global_batch_source} is {G}. " + _fix_suggestions(G, W, B, A)
                )
            elif rem != 0:
                stops.append(
                    f"{G} utterances per step do not split into equal micro-batches on {W} ranks "
                    f"(batch_size {B} / {W} ranks = {B / W:.2f}). " + _fix_suggestions(G, W, B, A)
                )
            if not stops and not fatal:
                lines.append(f"  global_batch_utts {G}: matches")
    else:
        lines.append(
            f"batch arithmetic ({conf}; batch_type {settings.batch_type}: micro-batches are "
            f"sized by batch_bins, so utterances per step vary):"
        )
        lines.append(
            f"  micro-batch: batch_bins {settings.batch_bins:,}"
            + (f" over {W} ranks = ~{settings.batch_bins // W:,} per rank" if W > 1 else "")
            + f"; x {A} accumulation step{'s' if A > 1 else ''} = "
            f"{settings.batch_bins * A:,} bins per optimizer step"
        )
        if G is not None:
            stops.append(
                f"{settings.global_batch_source} is {G}, but batch_type {settings.batch_type} "
                "sizes micro-batches by batch_bins, not utterances, so the global batch cannot be "
                f"held to {G}. Change batch_type {settings.batch_type} -> sorted with "
                f"batch_size x accum_grad = {G}"
            )

    if W > 1 and A > 1:
        if settings.accum_no_sync:
            lines.append(
                f"  gradient all-reduces per optimizer step: 1 (accum_no_sync true; "
                f"ESPnet's stock trainer: {A})"
            )
        else:
            lines.append(
                f"  gradient all-reduces per optimizer step: {A} (one per micro-batch; "
                "accum_no_sync true makes it 1)"
            )

    if data is not None:
        lines.append(f"  data: {data.source}")
        if by_utts:
            micro = max(data.utterances // used, 1)  # ESPnet: floor(N / B) batches of B or B + 1
            lines.append(
                f"    -> {micro:,} micro-batches = {micro // A:,} optimizer steps per pass over the data"
            )
        elif data.numel is not None:
            micro = max(math.ceil(data.numel / settings.batch_bins), 1)
            lines.append(
                f"    -> ~{micro:,} micro-batches = ~{micro // A:,} optimizer steps per pass "
                f"({data.numel:,} bins / batch_bins {settings.batch_bins:,})"
            )
        else:
            micro = None
        n_iter = settings.num_iters_per_epoch
        if micro is not None and n_iter is not None:
            total = settings.max_epoch * n_iter
            lines.append(
                f"  ESPnet epoch: num_iters_per_epoch {n_iter:,} micro-batches = "
                f"{n_iter // A:,} optimizer steps ({n_iter / micro:.3g} passes over the data)"
            )
            lines.append(
                f"  training: max_epoch {settings.max_epoch} x {n_iter // A:,} = "
                f"{total // A:,} optimizer steps = {total / micro:.3g} passes over the data"
            )
        elif micro is not None:
            lines.append(
                f"  ESPnet epoch = one pass; max_epoch {settings.max_epoch} -> "
                f"{settings.max_epoch * (micro // A):,} optimizer steps"
            )
    elif settings.num_iters_per_epoch is not None:
        n_iter = settings.num_iters_per_epoch
        lines.append(
            f"  ESPnet epoch: num_iters_per_epoch {n_iter:,} micro-batches = {n_iter // A:,} "
            f"optimizer steps; max_epoch {settings.max_epoch} -> "
            f"{settings.max_epoch * n_iter // A:,} optimizer steps "
            "(give --data_hours or --data_utts for passes over the data)"
        )
    return BatchReport(lines=lines, stops=stops, fatal=fatal)


# ---------------------------------------------------------------------------------------
# Commands


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


@dataclasses.dataclass
class Process:
    """One process the launcher starts on this machine, and where its output goes."""

    argv: List[str]
    log: str


@dataclasses.dataclass
class LaunchPlan:
    processes: List[Process]
    files: Dict[str, str]  # path -> content, written before the processes start
    display: List[str]  # what --dry_run prints (the exact commands and files)


def _node_log(log: str, node: int) -> str:
    if node == 0:
        return log
    p = Path(log)
    return str(p.with_name(f"{p.stem}.node{node}{p.suffix}"))


def build_plan(
    geometry: Geometry,
    command: Sequence[str],
    log: str,
    job_name: str,
    workdir: str,
    slurm_opts: Sequence[str] = (),
    remote_shell: Sequence[str] = ("ssh", "-o", "BatchMode=yes"),
) -> LaunchPlan:
    """The exact processes (and sbatch script) that run ``command`` on ``geometry``."""
    cmd = list(command) + worker_args(geometry)
    n, N = geometry.nproc_per_node, geometry.num_nodes
    path_sh = ". ./path.sh && " if os.path.isfile(os.path.join(workdir, "path.sh")) else ""

    if geometry.backend == "local":
        if geometry.world_size == 1:
            argv = cmd
        else:
            argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                    "--nproc_per_node", str(n), "--no-python"] + cmd
        return LaunchPlan([Process(argv, log)], {}, [shlex.join(argv)])

    if geometry.backend == "slurm":
        for opt in slurm_opts:
            if not opt.startswith("-"):
                raise LaunchError(
                    f"slurm option '{opt}' is not an option: write each as --name=value "
                    "(e.g. --partition=gpu --time=7-00:00:00)"
                )
        torchrun = ["torchrun", "--nnodes", str(N), "--nproc_per_node", str(n),
                    "--rdzv_backend", "c10d", "--rdzv_endpoint", "RDZV_HOST_PORT",
                    "--rdzv_id", "RDZV_ID", "--no-python"] + cmd
        body = shlex.join(["srun", "--kill-on-bad-exit=1"] + torchrun)
        body = body.replace("RDZV_HOST_PORT", f'"${{rdzv_host}}:{geometry.master_port}"')
        body = body.replace("RDZV_ID", '"${SLURM_JOB_ID}"')
        header = [
            "#!/usr/bin/env bash",
            f"#SBATCH --job-name={job_name}",
            f"#SBATCH --nodes={N}",
            "#SBATCH --ntasks-per-node=1",
        ]
        if geometry.ngpu > 0:
            header.append(f"#SBATCH --gpus-per-node={geometry.ngpu}")
        header += [f"#SBATCH --output={log}", "#SBATCH --open-mode=append"]
        header += [f"#SBATCH {opt}" for opt in slurm_opts]
        script = "\n".join(
            header
            + [
                "# One task per node; torchrun starts "
                + (f"{n} processes (one per GPU)" if geometry.ngpu else f"{n} CPU processes")
                + " on each and they meet at a c10d rendezvous on the first node.",
                "set -euo pipefail",
                f"cd {shlex.quote(workdir)}",
            ]
            + ([". ./path.sh"] if path_sh else [])
            + [
                'rdzv_host=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)',
                body,
                "",
            ]
        )
        script_path = str(Path(log).with_suffix(".sbatch"))
        argv = ["sbatch", "--wait", script_path]
        display = (
            [f"# ---- {script_path} (written at launch) ----"]
            + script.rstrip("\n").split("\n")
            + [f"# ---- end of {script_path} ----", shlex.join(argv)]
        )
        # sbatch writes the job's output to the log itself (--output).
        return LaunchPlan([Process(argv, "")], {script_path: script}, display)

    # torchrun over a host list (static rendezvous on the first host; node rank = list order)
    processes, display = [], []
    for k, host in enumerate(geometry.hosts):
        torchrun = ["torchrun", "--nnodes", str(N), "--nproc_per_node", str(n),
                    "--rdzv_backend", "static", "--master_addr", geometry.hosts[0],
                    "--master_port", str(geometry.master_port), "--node_rank", str(k),
                    "--no-python"] + cmd
        remote = f"cd {shlex.quote(workdir)} && {path_sh}{shlex.join(torchrun)}"
        argv = list(remote_shell) + [host, remote]
        processes.append(Process(argv, _node_log(log, k)))
        display.append(shlex.join(argv))
    return LaunchPlan(processes, {}, display)
