"""What a training command will use: its effective batch settings and the data size.

ESPnet resolves every option from the ``--config`` YAML, overridden by the command line, and
falls back to its own parser's defaults; :func:`read_batch_settings` does the same for the
keys the batch arithmetic needs, without building ESPnet's parser. :func:`data_size` gives
the training set size, explicitly or counted from the command's shape file.
"""

import dataclasses
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from espnet_ext.distributed.errors import LaunchError
from espnet_ext.shards.format import (
    FRAME_SHIFT_S,
    MANIFEST_NAME,
    ManifestError,
    ShardManifest,
    iter_shapes,
    shape_unit_seconds,
)

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
UTTERANCE_BATCH_TYPES = ("unsorted", "sorted", "folded")
BIN_BATCH_TYPES = ("length", "numel")


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


@dataclasses.dataclass(frozen=True)
class DataSize:
    """The training set: utterances, where the number comes from, and its frames x dims."""

    utterances: int
    source: str
    numel: Optional[int] = (
        None  # sum of frames x dims (shape file, or the shard manifest: feature frames x dim)
    )
    seconds: Optional[float] = None  # speech: counted (frames at 10 ms, samples at the rate), or --data_hours


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


def _str2bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise LaunchError(f"{name}: expected true or false, got '{value}'")


def _int(value: Any, name: str, none_ok: bool = False) -> Optional[int]:
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


def _read_config(path: str) -> Dict:
    import yaml

    if not os.path.isfile(path):
        raise LaunchError(f"training config not found: {path}")
    with open(path) as f:
        conf = yaml.safe_load(f) or {}
    if not isinstance(conf, dict):
        raise LaunchError(f"{path}: expected a YAML mapping at the top level")
    return conf


class _Resolver:
    """Looks a key up as ESPnet would: command line, then config, then ESPnet's default."""

    def __init__(self, opts: Dict[str, List[str]], conf: Dict, config_path: Optional[str]) -> None:
        self.opts, self.conf, self.config_path = opts, conf, config_path

    def value(self, key: str) -> Tuple[Any, str]:
        """The value and where it came from, for messages."""
        if key in self.opts:
            return self.opts[key][-1], f"--{key} on the command line"
        if key in self.conf:
            return self.conf[key], f"{key} in {self.config_path}"
        return ESPNET_DEFAULTS.get(key), f"{key} (ESPnet default)"

    def integer(self, key: str, *, none_ok: bool = False) -> Optional[int]:
        raw, where = self.value(key)
        out = _int(raw, where, none_ok=none_ok)
        if out is not None and out < 1:
            raise LaunchError(f"{where}: must be >= 1, got {out}")
        return out

    def boolean(self, key: str) -> bool:
        raw, where = self.value(key)
        return _str2bool(raw, where) if raw is not None else False


def read_batch_settings(command: Sequence[str]) -> BatchSettings:
    """The batch settings ESPnet will resolve for ``command`` (config, then command line)."""
    opts = command_options(command)
    owned = [k for k in _LAUNCHER_OWNED if k in opts]
    if owned:
        raise LaunchError(
            "the launcher sets " + ", ".join(f"--{k}" for k in owned) + " for every process "
            "from the geometry (--ngpu/--num_nodes/--cpu_procs); remove it from the training command"
        )
    config_path = opts["config"][-1] if "config" in opts else None
    conf = _read_config(config_path) if config_path is not None else {}
    resolve = _Resolver(opts, conf, config_path)

    batch_type, where = resolve.value("batch_type")
    batch_type = str(batch_type)
    if batch_type not in UTTERANCE_BATCH_TYPES + BIN_BATCH_TYPES:
        raise LaunchError(
            f"{where}: unknown batch_type '{batch_type}' "
            f"(one of {', '.join(UTTERANCE_BATCH_TYPES + BIN_BATCH_TYPES)})"
        )
    shape = opts.get("train_shape_file") or conf.get("train_shape_file")
    if isinstance(shape, list):
        shape = shape[0] if shape else None
    out_dir = resolve.value("output_dir")[0]
    return BatchSettings(
        config=config_path,
        batch_type=batch_type,
        batch_size=resolve.integer("batch_size"),
        batch_bins=resolve.integer("batch_bins"),
        accum_grad=resolve.integer("accum_grad"),
        global_batch_utts=resolve.integer("global_batch_utts", none_ok=True),
        global_batch_source=resolve.value("global_batch_utts")[1],
        micro_batch_per_rank=resolve.integer("micro_batch_per_rank", none_ok=True),
        accept_global_batch=resolve.boolean("accept_global_batch"),
        accum_no_sync=resolve.boolean("accum_no_sync"),
        iterator_type=str(resolve.value("iterator_type")[0]),
        max_epoch=resolve.integer("max_epoch"),
        num_iters_per_epoch=resolve.integer("num_iters_per_epoch", none_ok=True),
        train_shape_file=str(shape) if shape else None,
        output_dir=str(out_dir) if out_dir else None,
    )


def _count_shape_file(shape: str) -> DataSize:
    utts, numel, frames, ndims = 0, 0, 0, 2
    try:
        for _, dims in iter_shapes(shape):
            numel += math.prod(dims)
            frames += dims[0]
            ndims = len(dims)
            utts += 1
    except ValueError as exc:
        raise LaunchError(str(exc)) from None
    if utts == 0:
        raise LaunchError(f"{shape}: no utterances")
    # feats_shape (<utt> <frames>,<dims>): 10 ms frames; speech_shape (<utt> <samples>): samples
    seconds = frames * shape_unit_seconds(shape, ndims)
    return DataSize(utts, f"{utts:,} utterances ({shape})", numel=numel, seconds=seconds)


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
            seconds=data_hours * 3600,
        )
    shape = settings.train_shape_file
    if shape and settings.iterator_type == "sharded":
        counted = _count_manifest(os.path.join(os.path.dirname(shape), MANIFEST_NAME))
        if counted is not None:
            return counted
    if shape and os.path.isfile(shape):
        return _count_shape_file(shape)
    return None


def _count_manifest(path: str) -> Optional[DataSize]:
    """The sharded iterator's view of a set: its budgets count feature frames x dim,
    for audio shards too (``frames = 1 + samples // hop``), not the samples of
    ``speech_shape``."""
    if not os.path.isfile(path):
        return None
    try:
        m = ShardManifest.load(path)
    except ManifestError as exc:
        raise LaunchError(str(exc)) from None
    if not m.has_speech:
        return None
    shift = int(m.header["hop_length"]) / m.sample_rate if m.sample_rate else FRAME_SHIFT_S
    return DataSize(
        m.n_utts,
        f"{m.n_utts:,} utterances ({path})",
        numel=m.n_frames * m.feat_dim,
        seconds=m.n_frames * shift,
    )
