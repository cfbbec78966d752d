"""Feature shards: the on-disk format of the sharded data path, and its reader.

Stage 2 (:mod:`espnet_ext.bin.extract_feats`) writes one shard per chunk::

    <dump>/data/<d>/feats.<k>.ark   kaldi ark of the chunk's features (T, 80) float32
    <dump>/data/<d>/feats.<k>.idx   the shard's index: ``<utt>\\t<offset>\\t<frames>`` per
                                    line, in ark order (offset: as in a kaldi scp)
    <dump>/shards.tsv               the manifest: one header line, then one row per shard

``<d>`` is ``k // SHARDS_PER_DIR`` in five digits (``00000``, ``00001``, ...), so that no
directory holds more than a few thousand files at 600k h (:func:`shard_dir`). Manifests
whose patterns have no ``{dir}`` (written before the subdirectories) still resolve.

The manifest's header is ``# `` + JSON (format, feature dimension, path patterns
relative to the manifest's directory, totals), followed by a column-name line and one
row per shard: ``shard utts frames max_frames ark_bytes ark_crc32 index_crc32``.

Optional parts (absent in unlabeled, single-source sets: their files are as before):

* **Transcripts** (labeled sets, ASR): header key ``text`` (``data/text.{shard}.txt``):
  one file per shard, ``<utt>\t<transcript>`` per line in index order, written by stage
  2 from ``<dump>/text`` (and rewritten when that file changes; the features are not
  re-extracted). Read with the index; a line whose utterance differs from the index's
  is named.
* **Sources** (a set combined from several corpora, for weighted mixing): header key
  ``sources`` (the source set names) and an 8th column ``source`` (the shard's source,
  an index into that list): stage 2 cuts each source into its own shards when the data
  dir has ``utt2source``.
* **Audio shards** (``--feats_type raw``, ESPnet's default): header ``"kind": "audio"``
  with ``sample_rate`` and ``hop_length``; the ark ``data/<d>/audio.<k>.ark`` holds each
  utterance as FLAC (16-bit, mono, at ``sample_rate``) in kaldiio's audio entry, as
  ESPnet's ``format_wav_scp.py --audio_format flac.ark`` writes it, so a ``wav.scp`` of
  ``<ark>:<offset>`` lines reads it with ESPnet's ``kaldi_ark`` type. The index
  ``data/<d>/audio.<k>.idx`` has a fourth column, the samples: ``<utt>\t<offset>\t<frames>\t<samples>``,
  with ``frames = 1 + samples // hop_length``, the feature frames the model's ``logmel``
  frontend makes of it (what lengths are bucketed and budgets are counted in, as for
  feature shards). ``feat_dim`` is the dimension of those features. Transcripts and
  sources as for feature shards.
* **Text-only shards** (the LM's text, no audio): header ``"kind": "text"``; a shard is
  one file ``data/text.<k>.idx`` of ``<utt>\t<tokens>\t<text>`` lines (its own "ark":
  ``ark_bytes``/``ark_crc32`` are the index's), ``frames`` counts tokens, ``feat_dim``
  is 0. Written by ``python -m espnet_ext.bin.shards text`` (:func:`espnet_ext.shards.text.write_text_shards`)
  from stage 3's ``text`` and ``text_shape.bpe``.

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
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from espnet_ext.utils.atomic import write_bytes_atomic

FORMAT = "espnet_ext.shards/1"
MANIFEST_NAME = "shards.tsv"
SHARDS_PER_DIR = (
    500  # up to 5 files a shard (ark, scp, idx, done; txt with transcripts): <= 2,500 a directory
)
ARK_PATTERN = "data/{dir}/feats.{shard}.ark"
INDEX_PATTERN = "data/{dir}/feats.{shard}.idx"
COLUMNS = ("shard", "utts", "frames", "max_frames", "ark_bytes", "ark_crc32", "index_crc32")
SOURCE_COLUMN = "source"
AUDIO_ARK_PATTERN = "data/{dir}/audio.{shard}.ark"
AUDIO_INDEX_PATTERN = "data/{dir}/audio.{shard}.idx"
TEXT_PATTERN = "data/{dir}/text.{shard}.txt"
TEXT_INDEX_PATTERN = "data/{dir}/text.{shard}.idx"
KINDS = ("feats", "audio", "text")
SPEECH_KINDS = ("feats", "audio")  # shards with an utterance's speech (features or audio)
_PATTERNS = {
    "feats": (ARK_PATTERN, INDEX_PATTERN),
    "audio": (AUDIO_ARK_PATTERN, AUDIO_INDEX_PATTERN),
    "text": (TEXT_INDEX_PATTERN, TEXT_INDEX_PATTERN),
}
_CRC_BLOCK = 1 << 20


def shard_dir(shard: int) -> str:
    """The subdirectory of ``data/`` that holds shard ``shard``'s files: ``00000``, ``00001``, ..."""
    return f"{int(shard) // SHARDS_PER_DIR:05d}"


def shard_file(pattern: str, shard: int) -> str:
    """``pattern`` (one of the ``*_PATTERN``, or a manifest's) for shard ``shard``."""
    return pattern.format(shard=int(shard), dir=shard_dir(shard))


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
        frames: frame counts, ``(n,)`` int64 (audio shards: the features' frames).
        texts: transcripts (with ``with_text``), or None.
        samples: audio shards: samples per utterance, ``(n,)`` int64; else None.
    """

    row: int
    utts: List[str]
    offsets: np.ndarray
    frames: np.ndarray
    texts: Optional[List[str]] = None
    samples: Optional[np.ndarray] = None


def crc32_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(_CRC_BLOCK)
            if not block:
                return crc
            crc = zlib.crc32(block, crc)


def format_index(entries: Iterable[Tuple]) -> bytes:
    """The bytes of a shard index for ``(utt, offset, frames)`` entries, or
    ``(utt, offset, frames, samples)`` for audio shards."""
    return "".join("\t".join(str(x) for x in e) + "\n" for e in entries).encode("utf-8")


def write_manifest(
    out_dir: Path,
    rows: Sequence[ShardRow],
    *,
    feat_dim: int,
    text: Optional[str] = None,
    sources: Optional[Sequence[str]] = None,
    row_sources: Optional[Sequence[int]] = None,
    kind: str = "feats",
    extra: Optional[dict] = None,
) -> Path:
    """Write ``<out_dir>/shards.tsv`` atomically; returns its path.

    ``text``: the transcripts' path pattern (labeled speech shards); ``sources`` and
    ``row_sources`` (one per row): the source column; ``kind``: ``feats``, ``audio``
    (``extra`` then gives ``sample_rate`` and ``hop_length``) or ``text``.
    """
    if kind not in KINDS:
        raise ValueError(f"write_manifest: kind must be one of {KINDS}, got {kind!r}")
    if kind == "audio" and not {"sample_rate", "hop_length"} <= set(extra or {}):
        raise ValueError("write_manifest: audio shards need sample_rate and hop_length in extra")
    header = {
        "format": FORMAT,
        "feat_dim": feat_dim,
        "ark": _PATTERNS[kind][0],
        "index": _PATTERNS[kind][1],
        "shards": len(rows),
        "utts": sum(r.utts for r in rows),
        "frames": sum(r.frames for r in rows),
    }
    if kind != "feats":
        header["kind"] = kind
    if text is not None:
        header["text"] = text
    if sources is not None:
        if row_sources is None or len(row_sources) != len(rows):
            raise ValueError("write_manifest: sources need one row_sources entry per row")
        header["sources"] = list(sources)
    header.update(extra or {})
    columns = COLUMNS + ((SOURCE_COLUMN,) if sources is not None else ())
    lines = ["# " + json.dumps(header, sort_keys=True), "\t".join(columns)]
    for i, r in enumerate(rows):
        values = [str(getattr(r, c)) for c in COLUMNS]
        if sources is not None:
            values.append(str(int(row_sources[i])))
        lines.append("\t".join(values))
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


def _parse_rows(mpath: Path, body: str, ncols: int = len(COLUMNS)) -> np.ndarray:
    """The manifest's rows as an ``(n_shards, ncols)`` int64 table: one C-level parse when
    the rows are as written (tab-separated, ``ncols`` fields); otherwise line by line,
    naming the first bad line."""
    lines = sum(1 for line in body.splitlines() if line.strip())
    if body.count("\t") == (ncols - 1) * lines:
        try:
            flat = np.fromstring(body, dtype=np.int64, sep=" ")
        except ValueError:
            flat = None
        if flat is not None and flat.size == lines * ncols:
            table = flat.reshape(-1, ncols)
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
        if len(values) != ncols or min(values[:5]) < 0 or values[1] < 1:
            raise ManifestError(f"{mpath}:{lineno}: malformed shard row {line.strip()!r}")
        rows.append(values)
    return np.array(rows, dtype=np.int64).reshape(-1, ncols)


class ShardManifest:
    """The shard table of a dump dir (see the module docstring).

    Attributes:
        path: the manifest file; shard paths are relative to its directory.
        feat_dim: feature dimension (0 for text-only shards).
        table: ``(n_shards, 7)`` int64 in :data:`COLUMNS` order.
        kind: ``feats`` or ``text`` (text-only shards).
        text_pattern: the transcripts' path pattern, or None (no transcripts).
        sources: source set names, or None; ``source``: ``(n_shards,)`` their index.
    """

    def __init__(
        self,
        path: Path,
        *,
        feat_dim: int,
        ark_pattern: str,
        index_pattern: str,
        table: np.ndarray,
        kind: str = "feats",
        text_pattern: Optional[str] = None,
        sources: Optional[List[str]] = None,
        source: Optional[np.ndarray] = None,
        header: Optional[dict] = None,
    ):
        self.path = Path(path)
        self.root = self.path.parent
        self.feat_dim = feat_dim
        self.ark_pattern = ark_pattern
        self.index_pattern = index_pattern
        self.table = table
        self.kind = kind
        self.text_pattern = text_pattern
        self.sources = sources
        self.source = source
        self.header = dict(header or {})

    @property
    def has_text(self) -> bool:
        """Transcripts available per utterance (labeled speech shards, or text shards)."""
        return self.kind == "text" or self.text_pattern is not None

    @property
    def has_speech(self) -> bool:
        """The shards hold speech: features (``feats``) or audio (``audio``)."""
        return self.kind in SPEECH_KINDS

    @property
    def sample_rate(self) -> Optional[int]:
        """Audio shards: the audio's sampling rate; else None."""
        return int(self.header["sample_rate"]) if self.kind == "audio" else None

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
                    f"{mpath}: format {header.get('format')!r}, expected {FORMAT!r}: re-run stage 2"
                )
            sources = header.get("sources")
            columns = list(COLUMNS) + ([SOURCE_COLUMN] if sources is not None else [])
            if f.readline().split() != columns:
                raise ManifestError(f"{mpath}:2: expected the column line {' '.join(columns)}")
            body = f.read()
        kind = header.get("kind", "feats")
        if kind not in KINDS:
            raise ManifestError(f"{mpath}: unknown shard kind {kind!r} (expected one of {KINDS})")
        table = _parse_rows(mpath, body, len(columns))
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
        source = None
        if sources is not None:
            source = table[:, len(COLUMNS)].copy()
            table = np.ascontiguousarray(table[:, : len(COLUMNS)])
            bad = np.flatnonzero((source < 0) | (source >= len(sources)))
            if bad.size:
                raise ManifestError(
                    f"{mpath}:{int(bad[0]) + 3}: source {int(source[bad[0]])} is "
                    f"not one of the {len(sources)} sources in the header"
                )
        return cls(
            mpath,
            feat_dim=int(header["feat_dim"]),
            ark_pattern=header["ark"],
            index_pattern=header["index"],
            table=table,
            kind=kind,
            text_pattern=header.get("text"),
            sources=sources,
            source=source,
            header=header,
        )

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
        p = Path(shard_file(pattern, int(self.table[row, 0])))
        return p if p.is_absolute() else self.root / p

    def ark_path(self, row: int) -> Path:
        return self._path(self.ark_pattern, row)

    def index_path(self, row: int) -> Path:
        return self._path(self.index_pattern, row)

    def text_path(self, row: int) -> Path:
        if self.text_pattern is None:
            raise ShardError(f"{self.path}: the shards have no transcripts")
        return self._path(self.text_pattern, row)

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

    def read_index(self, row: int, with_text: bool = False) -> ShardIndex:
        """Read and check one shard's index (and, ``with_text``, its transcripts).

        Raises:
            ShardError: missing, altered (CRC-32), malformed, or disagreeing with the
                manifest's utterance and frame counts; transcripts missing or not in
                the index's order.
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
        utts, offsets, frames, samples = [], [], [], []
        texts: Optional[List[str]] = [] if self.kind == "text" else None
        audio = self.kind == "audio"
        hop = int(self.header["hop_length"]) if audio else 0
        for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
            fields = line.split("\t")
            try:
                if texts is not None:
                    utt, off, t = fields[0], 0, int(fields[1])
                    texts.append(fields[2])
                elif audio:
                    utt, off, t, n = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
                    if len(fields) != 4 or t != 1 + n // hop:
                        raise ValueError
                    samples.append(n)
                else:
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
        if with_text and texts is None:
            texts = self.read_texts(row, utts)
        return ShardIndex(
            row=row,
            utts=utts,
            offsets=np.array(offsets, dtype=np.int64),
            frames=fr,
            texts=texts if with_text else None,
            samples=np.array(samples, dtype=np.int64) if audio else None,
        )

    def read_texts(self, row: int, utts: Sequence[str]) -> List[str]:
        """The transcripts of shard row ``row``, checked against its index's ``utts``."""
        path = self.text_path(row)
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except OSError as exc:
            raise ShardError(
                f"{self.name(row)}: cannot read transcripts {path}: {exc}; re-run stage 2 for this set"
            ) from None
        if lines and lines[-1] == "":
            lines.pop()
        texts = []
        for lineno, (line, utt) in enumerate(zip(lines, utts), 1):
            key, _, text = line.partition("\t")
            if key != utt:
                raise ShardError(
                    f"{self.name(row)}: {path}:{lineno}: transcript of {key!r}, the "
                    f"index has {utt!r} there: re-run stage 2 for this set"
                )
            texts.append(text)
        if len(lines) != len(utts):
            raise ShardError(
                f"{self.name(row)}: {path} has {len(lines)} transcripts, the index "
                f"{len(utts)} utterances: re-run stage 2 for this set"
            )
        return texts

    def load_matrix(
        self, row: int, utt: str, offset: int, frames: int, fd_dict: Dict[str, object]
    ) -> np.ndarray:
        """Utterance ``utt`` of shard row ``row``: ``(frames, feat_dim)`` features, or for
        audio shards its waveform ``(samples,)`` float32 in [-1, 1] (``frames`` is then
        its feature frames, ``1 + samples // hop_length``).

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
                f"{self.name(row)}: cannot read {utt!r} at offset {int(offset)}: {type(exc).__name__}: {exc}"
            ) from None
        if self.kind == "audio":
            return self._waveform(row, utt, mat, int(frames))
        if mat.shape != (int(frames), self.feat_dim):
            raise ShardError(
                f"{self.name(row)}: {utt!r} has shape {mat.shape}, the index says "
                f"({int(frames)}, {self.feat_dim}): corrupt ark"
            )
        return np.array(mat, dtype=np.float32)  # kaldiio's is a read-only buffer view

    def _waveform(self, row: int, utt: str, entry, frames: int) -> np.ndarray:
        """An audio entry (kaldiio's ``(rate, samples)``) checked against the header and index."""
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ShardError(f"{self.name(row)}: {utt!r} is not an audio entry: corrupt ark")
        rate, wave = entry
        hop = int(self.header["hop_length"])
        if int(rate) != self.sample_rate or wave.ndim != 1 or 1 + wave.shape[0] // hop != frames:
            raise ShardError(
                f"{self.name(row)}: {utt!r} is {wave.shape} samples at {rate} Hz, the index "
                f"says {frames} frames at {self.sample_rate} Hz (hop {hop}): corrupt ark"
            )
        return np.asarray(wave, dtype=np.float32)


FRAME_SHIFT_S = 0.01  # the recipe's feature frame shift (10 ms): feats_shape's first dimension


def shape_unit_seconds(shape_file: str, ndims: int) -> float:
    """Seconds per unit of a shape file's first dimension.

    ``feats_shape`` (``<utt> <frames>,80``): a 10 ms frame. ``speech_shape``
    (``<utt> <samples>``, one dimension, ESPnet's shape file of raw audio): a sample at
    the sample rate of the audio shards' manifest next to it (16 kHz without one).
    """
    if ndims > 1:
        return FRAME_SHIFT_S
    try:
        manifest = ShardManifest.load(str(Path(shape_file).parent / MANIFEST_NAME))
    except (ManifestError, OSError):
        return 1.0 / 16000
    return 1.0 / (manifest.sample_rate or 16000)


def iter_shapes(shape_file: str) -> Iterable[Tuple[str, List[int]]]:
    """``(utt, dims)`` per line of an ESPnet shape file (``<utt> <d1>[,<d2>...]``).

    Raises:
        ValueError: a malformed line, named with its line number.
    """
    with open(shape_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{shape_file}:{lineno}: expected '<utt> <dims>', got {line.strip()!r}")
            try:
                yield parts[0], [int(d) for d in parts[1].split(",")]
            except ValueError:
                raise ValueError(f"{shape_file}:{lineno}: bad shape {parts[1]!r}") from None


def shape_seconds(shape_file: str) -> Dict[str, float]:
    """``utt -> seconds`` of a shape file (``feats_shape`` or ``speech_shape``)."""
    dims: Dict[str, int] = {}
    ndims = 0
    for utt, shape in iter_shapes(shape_file):
        dims[utt], ndims = shape[0], len(shape)
    unit = shape_unit_seconds(shape_file, ndims)
    return {u: n * unit for u, n in dims.items()}


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
            index = manifest.read_index(row, with_text=manifest.text_pattern is not None)
            if content and manifest.kind == "text":
                if crc32_file(manifest.ark_path(row)) != manifest.row(row).ark_crc32:
                    raise ShardError(f"{manifest.name(row)}: CRC-32 differs from the manifest")
            elif content:
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
