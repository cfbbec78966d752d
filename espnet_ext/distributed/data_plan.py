"""The stage-2 data plan for a number of hours: shards, files per directory and bytes.

    python -m espnet_ext.bin.data_plan --hours 600000 --chunk_size 1000

Stage 2 (``espnet_ext.bin.extract_feats``) writes one shard per ``--chunk_size`` utterances
into ``<dumpdir>/<set>/data/<d>/`` (``<d>``: ``k // SHARDS_PER_DIR``, so at most
``SHARDS_PER_DIR`` shards a directory): ``feats.<k>.ark`` (float32 80-dim features, 100 frames per
second, a kaldi matrix header per utterance), ``.scp``, ``.idx`` and ``.done``, and one
``feats.scp``/``feats_shape``/``shards.tsv`` for the set. The numbers here are estimates from
the hours and an assumed mean utterance length; nothing is read.
"""

import dataclasses
import math
from typing import List

from espnet_ext.shards.format import SHARDS_PER_DIR

FRAMES_PER_SECOND = 100  # 10 ms hop
FEAT_DIM = 80
FILES_PER_SHARD = 4  # ark, scp, idx, done
KEY_BYTES = 32  # a LibriSpeech/Libri-Light utterance id (segments: <book>-<chapter>-<seg>)
ARK_HEADER_BYTES = KEY_BYTES + 1 + 15  # "<key> \0BFM \4<rows>\4<cols>"
INDEX_LINE_BYTES = KEY_BYTES + 20  # "<key>\t<offset>\t<frames>\n"
SCP_LINE_BYTES = KEY_BYTES + 60  # "<key> <ark path>:<offset>\n"


@dataclasses.dataclass(frozen=True)
class DataPlan:
    hours: float
    mean_utt_seconds: float
    chunk_size: int
    utterances: int
    frames: int
    shards: int
    directories: int
    files_per_directory: int
    ark_bytes: int
    index_bytes: int
    scp_bytes: int


def data_plan(hours: float, chunk_size: int, mean_utt_seconds: float = 15.0) -> DataPlan:
    if hours <= 0 or chunk_size < 1 or mean_utt_seconds <= 0:
        raise ValueError(
            f"need hours > 0, chunk_size >= 1, mean_utt_seconds > 0; got {hours}, {chunk_size}, {mean_utt_seconds}"
        )
    utts = int(hours * 3600 / mean_utt_seconds)
    frames = int(hours * 3600 * FRAMES_PER_SECOND)
    shards = math.ceil(utts / chunk_size)
    return DataPlan(
        hours, mean_utt_seconds, chunk_size, utts, frames, shards,
        directories=math.ceil(shards / SHARDS_PER_DIR),
        files_per_directory=FILES_PER_SHARD * min(shards, SHARDS_PER_DIR),
        ark_bytes=frames * FEAT_DIM * 4 + utts * ARK_HEADER_BYTES,
        index_bytes=utts * INDEX_LINE_BYTES,
        scp_bytes=utts * SCP_LINE_BYTES,
    )  # fmt: skip


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return ""


def plan_lines(p: DataPlan) -> List[str]:
    per_shard = p.ark_bytes / max(p.shards, 1)
    return [
        f"data plan (stage 2) for {p.hours:g} h at an assumed mean of {p.mean_utt_seconds:g} s per utterance, "
        f"--chunk_size {p.chunk_size}:",
        f"  {p.utterances:,} utterances, {p.frames:,} frames of {FEAT_DIM} float32",
        f"  {p.shards:,} shards of up to {p.chunk_size} utterances (~{_size(per_shard)} each)",
        f"  {p.directories:,} directories <dumpdir>/<set>/data/<d>/ of up to {SHARDS_PER_DIR} shards: "
        f"at most {p.files_per_directory:,} files per directory ({FILES_PER_SHARD} per shard: ark, scp, idx, done)",
        f"  bytes: features {_size(p.ark_bytes)}, shard indices {_size(p.index_bytes)}, "
        f"feats.scp {_size(p.scp_bytes)}, feats_shape {_size(p.utterances * (KEY_BYTES + 10))}",
    ]
