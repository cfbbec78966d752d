"""Feature shards: the on-disk format of the sharded data path, and its reader.

Stage 2 (:mod:`espnet_ext.bin.extract_feats`) writes one shard per chunk::

    <dump>/data/feats.<k>.ark   kaldi ark of the chunk's features (T, 80) float32
    <dump>/data/feats.<k>.idx   the shard's index: ``<utt>\\t<offset>\\t<frames>`` per
                                line, in ark order (offset: as in a kaldi scp)
    <dump>/shards.tsv           the manifest: one header line, then one row per shard

The manifest's header is ``# `` + JSON (format, feature dimension, path patterns
relative to the manifest's directory, totals), followed by a column-name line and one
row per shard: ``shard utts frames max_frames ark_bytes ark_crc32 index_crc32``.

A reader holds only the manifest (a numeric table: ~56 bytes per shard, ~8 MB for
150M utterances in shards of 1,000), never the corpus-wide utterance list; shard
indices are read when a loader worker reaches the shard. Every check names the shard
and its file: a missing or truncated ark (size against the manifest), a missing,
altered (CRC-32) or malformed index, a feature matrix whose shape differs from the
index.  ``python -m espnet_ext.bin.shards verify <dump dir>`` also reads every ark
and compares its CRC-32 (too slow for every start-up at full scale).

This module imports numpy and kaldiio only (stage 2 must not import espnet2).
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from espnet_ext.utils.atomic import write_bytes_atomic

FORMAT = "espnet_ext.shards/1"
MANIFEST_NAME = "shards.tsv"
ARK_PATTERN = "data/feats.{shard}.ark"
INDEX_PATTERN = "data/feats.{shard}.idx"
COLUMNS = ("shard", "utts", "frames", "max_frames", "ark_bytes", "ark_crc32", "index_crc32")
_CRC_BLOCK = 1 << 20


class ShardError(RuntimeError):
    """A shard is missing, truncated, altered or malformed (the message names it)."""


class ManifestError(ShardError):
    """The manifest itself is missing or malformed."""


@dataclasses.dataclass(frozen=True)
class ShardRow:
    """One manifest row (what stage 2 records for a finished shard)."""

    shard: int
    utts: int
    frames: int
    max_frames: int
    ark_bytes: int
    ark_crc32: int
    index_crc32: int


@dataclasses.dataclass(frozen=True)
class ShardIndex:
    """The index of one shard.

    Attributes:
        row: position of the shard in the manifest.
        utts: utterance ids, ``(n,)``.
        offsets: byte offsets of the matrices in the ark (kaldi scp style), ``(n,)`` int64.
        frames: frame counts, ``(n,)`` int64.
    """

    row: int
    utts: List[str]
    offsets: np.ndarray
    frames: np.ndarray


def crc32_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(_CRC_BLOCK)
            if not block:
                return crc
            crc = zlib.crc32(block, crc)


def format_index(entries: Iterable[Tuple[str, int, int]]) -> bytes:
    """The bytes of a shard index for ``(utt, offset, frames)`` entries."""
    return "".join(f"{u}\t{o}\t{t}\n" for u, o, t in entries).encode("utf-8")


def write_manifest(out_dir: Path, rows: Sequence[ShardRow], *, feat_dim: int) -> Path:
    """Write ``<out_dir>/shards.tsv`` atomically; returns its path."""
    header = {
        "format": FORMAT,
        "feat_dim": feat_dim,
        "ark": ARK_PATTERN,
        "index": INDEX_PATTERN,
        "shards": len(rows),
        "utts": sum(r.utts for r in rows),
        "frames": sum(r.frames for r in rows),
    }
    lines = ["# " + json.dumps(header, sort_keys=True), "\t".join(COLUMNS)]
    lines += ["\t".join(str(getattr(r, c)) for c in COLUMNS) for r in rows]
    path = Path(out_dir) / MANIFEST_NAME
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def find_manifest(path: str) -> Path:
    """The manifest for ``path``: the manifest itself, a dump dir, or a file in one.

    ``dump/<set>/feats.scp`` resolves to ``dump/<set>/shards.tsv``, so a recipe that
    passes its scp keeps working when the sharded iterator is selected.
    """
    p = Path(path)
    if p.is_dir():
        candidate = p / MANIFEST_NAME
    elif p.name == MANIFEST_NAME or p.suffix == ".tsv":
        candidate = p
    else:
        candidate = p.parent / MANIFEST_NAME
    if not candidate.is_file():
        raise ManifestError(
            f"no shard manifest {str(candidate)!r} (looked for it from {path!r}): "
            "stage 2 (espnet_ext.bin.extract_feats) writes it next to feats.scp; re-run it"
        )
    return candidate


def _parse_rows(mpath: Path, body: str) -> np.ndarray:
    """The manifest's rows as an ``(n_shards, 7)`` int64 table: one C-level parse when
    the rows are as written (tab-separated, 7 fields); otherwise line by line, naming
    the first bad line."""
    lines = sum(1 for line in body.splitlines() if line.strip())
    if body.count("\t") == (len(COLUMNS) - 1) * lines:
        try:
            flat = np.fromstring(body, dtype=np.int64, sep=" ")
        except ValueError:
            flat = None
        if flat is not None and flat.size == lines * len(COLUMNS):
            table = flat.reshape(-1, len(COLUMNS))
            if (table[:, :5] >= 0).all() and (table[:, 1] >= 1).all():
                return table
    rows = []
    for lineno, line in enumerate(body.splitlines(), 3):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [int(x) for x in fields]
        except ValueError:
            values = []
        if len(values) != len(COLUMNS) or min(values[:5]) < 0 or values[1] < 1:
            raise ManifestError(f"{mpath}:{lineno}: malformed shard row {line.strip()!r}")
        rows.append(values)
    return np.array(rows, dtype=np.int64).reshape(-1, len(COLUMNS))


class ShardManifest:
    """The shard table of a dump dir (see the module docstring).

    Attributes:
        path: the manifest file; shard paths are relative to its directory.
        feat_dim: feature dimension.
        table: ``(n_shards, 7)`` int64 in :data:`COLUMNS` order.
    """

    def __init__(self, path: Path, *, feat_dim: int, ark_pattern: str, index_pattern: str,
                 table: np.ndarray):
        self.path = Path(path)
        self.root = self.path.parent
        self.feat_dim = feat_dim
        self.ark_pattern = ark_pattern
        self.index_pattern = index_pattern
        self.table = table

    # -- loading ------------------------------------------------------------------

    @classmethod
    def load(cls, path: str) -> "ShardManifest":
        """Read and check a manifest (``path``: see :func:`find_manifest`).

        Raises:
            ManifestError: missing file, unknown format, malformed row (with its line
                number), duplicate shard, totals that disagree with the rows.
        """
        mpath = find_manifest(path)
        with open(mpath, encoding="utf-8") as f:
            first = f.readline()
            if not first.startswith("# "):
                raise ManifestError(f"{mpath}:1: not a shard manifest (no '# {{...}}' header)")
            try:
                header = json.loads(first[2:])
            except ValueError as exc:
                raise ManifestError(f"{mpath}:1: bad header: {exc}") from None
            if header.get("format") != FORMAT:
                raise ManifestError(
                    f"{mpath}: format {header.get('format')!r}, expected {FORMAT!r}: "
                    "re-run stage 2"
                )
            if f.readline().split() != list(COLUMNS):
                raise ManifestError(f"{mpath}:2: expected the column line {' '.join(COLUMNS)}")
            body = f.read()
        table = _parse_rows(mpath, body)
        if table.shape[0] == 0:
            raise ManifestError(f"{mpath}: lists no shards")
        if len(np.unique(table[:, 0])) != table.shape[0]:
            raise ManifestError(f"{mpath}: a shard is listed twice")
        for key, col in (("shards", None), ("utts", 1), ("frames", 2)):
            total = table.shape[0] if col is None else int(table[:, col].sum())
            if header.get(key) != total:
                raise ManifestError(
                    f"{mpath}: header says {key}={header.get(key)}, the rows add up to "
                    f"{total}: the manifest is truncated or edited"
                )
        return cls(mpath, feat_dim=int(header["feat_dim"]), ark_pattern=header["ark"],
                   index_pattern=header["index"], table=table)

    # -- table -----------------------------------------------------------------

    @property
    def n_shards(self) -> int:
        return int(self.table.shape[0])

    @property
    def utts(self) -> np.ndarray:
        """Utterances per shard, ``(n_shards,)``."""
        return self.table[:, 1]

    @property
    def frames(self) -> np.ndarray:
        """Frames per shard, ``(n_shards,)``."""
        return self.table[:, 2]

    @property
    def n_utts(self) -> int:
        return int(self.table[:, 1].sum())

    @property
    def n_frames(self) -> int:
        return int(self.table[:, 2].sum())

    def row(self, row: int) -> ShardRow:
        return ShardRow(*(int(x) for x in self.table[row]))

    def _path(self, pattern: str, row: int) -> Path:
        p = Path(pattern.format(shard=int(self.table[row, 0])))
        return p if p.is_absolute() else self.root / p

    def ark_path(self, row: int) -> Path:
        return self._path(self.ark_pattern, row)

    def index_path(self, row: int) -> Path:
        return self._path(self.index_pattern, row)

    def name(self, row: int) -> str:
        return f"shard {int(self.table[row, 0])} ({self.ark_path(row)})"

    # -- checks and reading ----------------------------------------------------------

    def check_files(self, rows: Iterable[int]) -> None:
        """Cheap start-up check (one ``stat`` per file): present, ark size as recorded.

        Raises:
            ShardError: naming the first bad shard.
        """
        for row in rows:
            r = self.row(row)
            ark = self.ark_path(row)
            try:
                size = ark.stat().st_size
            except OSError as exc:
                raise ShardError(f"{self.name(row)}: ark missing or unreadable: {exc}") from None
            if size != r.ark_bytes:
                raise ShardError(
                    f"{self.name(row)}: ark has {size} bytes, the manifest says {r.ark_bytes}: "
                    "truncated or rewritten; re-run stage 2 for this set"
                )
            if not self.index_path(row).is_file():
                raise ShardError(f"{self.name(row)}: index {self.index_path(row)} is missing")

    def read_index(self, row: int) -> ShardIndex:
        """Read and check one shard's index.

        Raises:
            ShardError: missing, altered (CRC-32), malformed, or disagreeing with the
                manifest's utterance and frame counts.
        """
        r = self.row(row)
        path = self.index_path(row)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ShardError(f"{self.name(row)}: cannot read index {path}: {exc}") from None
        if zlib.crc32(data) != r.index_crc32:
            raise ShardError(
                f"{self.name(row)}: index {path} does not match the manifest's CRC-32: "
                "altered or from another run; re-run stage 2 for this set"
            )
        utts, offsets, frames = [], [], []
        for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
            fields = line.split("\t")
            try:
                utt, off, t = fields[0], int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                raise ShardError(f"{self.name(row)}: {path}:{lineno}: malformed {line!r}") from None
            utts.append(utt)
            offsets.append(off)
            frames.append(t)
        fr = np.array(frames, dtype=np.int64)
        if len(utts) != r.utts or int(fr.sum()) != r.frames:
            raise ShardError(
                f"{self.name(row)}: index lists {len(utts)} utterances / {int(fr.sum())} "
                f"frames, the manifest {r.utts} / {r.frames}"
            )
        return ShardIndex(row=row, utts=utts, offsets=np.array(offsets, dtype=np.int64), frames=fr)

    def load_matrix(self, row: int, utt: str, offset: int, frames: int,
                    fd_dict: Dict[str, object]) -> np.ndarray:
        """Utterance ``utt`` of shard row ``row``, ``(frames, feat_dim)``.

        ``fd_dict`` caches open arks (the caller closes them).

        Raises:
            ShardError: unreadable data or a shape other than the index says.
        """
        import kaldiio

        ark = str(self.ark_path(row))
        try:
            mat = kaldiio.load_mat(f"{ark}:{int(offset)}", fd_dict=fd_dict)
        except Exception as exc:  # kaldiio raises ValueError/OSError/struct.error/...
            raise ShardError(
                f"{self.name(row)}: cannot read {utt!r} at offset {int(offset)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if mat.shape != (int(frames), self.feat_dim):
            raise ShardError(
                f"{self.name(row)}: {utt!r} has shape {mat.shape}, the index says "
                f"({int(frames)}, {self.feat_dim}): corrupt ark"
            )
        return np.array(mat, dtype=np.float32)  # kaldiio's is a read-only buffer view


def verify(path: str, *, content: bool = True) -> List[str]:
    """Every problem of a dump dir's shards (empty list: all good).

    ``content`` also reads every ark and compares its CRC-32 and every matrix header.
    """
    try:
        manifest = ShardManifest.load(path)
    except ShardError as exc:
        return [str(exc)]
    problems = []
    for row in range(manifest.n_shards):
        try:
            manifest.check_files([row])
            index = manifest.read_index(row)
            if content:
                if crc32_file(manifest.ark_path(row)) != manifest.row(row).ark_crc32:
                    raise ShardError(f"{manifest.name(row)}: ark CRC-32 differs from the manifest")
                fds: Dict[str, object] = {}
                try:
                    for utt, off, t in zip(index.utts, index.offsets, index.frames):
                        manifest.load_matrix(row, utt, off, t, fds)
                finally:
                    for fd in fds.values():
                        fd.close()
        except ShardError as exc:
            problems.append(str(exc))
    return problems
