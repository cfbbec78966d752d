"""Transcripts of feature shards (stage 2) and text-only shards (the LM, stage 3), in the
format of :mod:`espnet_ext.shards.format` (``TEXT_PATTERN``, ``TEXT_INDEX_PATTERN``)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import List, Tuple

from espnet_ext.shards.format import (
    TEXT_INDEX_PATTERN,
    TEXT_PATTERN,
    ShardError,
    ShardManifest,
    ShardRow,
    shard_file,
    write_manifest,
)
from espnet_ext.utils.atomic import write_bytes_atomic
from espnet_ext.utils.kaldi_table import iter_rows


def write_transcripts(path: str, text_file: Path) -> Path:
    """Write the transcripts of a dump dir's feature shards from its Kaldi ``text`` file
    (``data/<d>/text.<k>.txt`` in index order) and record them in the manifest.

    Raises:
        ShardError: an utterance of the shards has no transcript (named, with the file).
    """
    manifest = ShardManifest.load(path)
    if not manifest.has_speech:
        raise ShardError(f"{manifest.path}: transcripts are for speech (feature or audio) shards")
    texts = {row.key: row.value.strip() for row in iter_rows(text_file)}
    for row in range(manifest.n_shards):
        index = manifest.read_index(row)
        lines = []
        for utt in index.utts:
            if utt not in texts:
                raise ShardError(f"{manifest.name(row)}: utterance {utt!r} has no transcript in {text_file}")
            lines.append(f"{utt}\t{texts[utt]}\n")
        out = manifest._path(TEXT_PATTERN, row)
        write_bytes_atomic(out, "".join(lines).encode("utf-8"))
    rows = [manifest.row(r) for r in range(manifest.n_shards)]
    extra = {
        k: v
        for k, v in manifest.header.items()
        if k
        not in ("format", "feat_dim", "ark", "index", "shards", "utts", "frames", "kind", "text", "sources")
    }
    return write_manifest(
        manifest.root,
        rows,
        feat_dim=manifest.feat_dim,
        text=TEXT_PATTERN,
        sources=manifest.sources,
        row_sources=manifest.source,
        kind=manifest.kind,
        extra=extra,
    )


def _stat(path: Path) -> List[int]:
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


def write_text_shards(
    text_file: str, shape_file: str, out_dir: str, *, shard_size: int = 10000
) -> Tuple[Path, bool]:
    """Text-only shards of a Kaldi ``text`` file and its token counts (``<utt> <n>``
    lines in the same order: stage 3's ``text`` and ``text_shape.bpe``).

    Skipped when the manifest records the same inputs (sizes and mtimes).

    Returns:
        (the manifest's path, whether it was written).

    Raises:
        ShardError: the files disagree (line and ids named), a count is not a positive
            integer, or there is no line.
    """
    if shard_size < 1:
        raise ShardError(f"--shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    inputs = {
        "text": [str(Path(text_file).resolve())] + _stat(Path(text_file)),
        "shape": [str(Path(shape_file).resolve())] + _stat(Path(shape_file)),
        "shard_size": shard_size,
    }
    try:
        old = ShardManifest.load(str(out))
        if old.kind == "text" and old.header.get("inputs") == inputs:
            return old.path, False
    except ShardError:
        pass
    (out / "data").mkdir(parents=True, exist_ok=True)
    rows: List[ShardRow] = []

    def flush(lines: List[str], counts: List[int]) -> None:
        k = len(rows)
        data = "".join(lines).encode("utf-8")
        path = out / shard_file(TEXT_INDEX_PATTERN, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        crc = zlib.crc32(data)
        rows.append(
            ShardRow(
                shard=k,
                utts=len(lines),
                frames=sum(counts),
                max_frames=max(counts),
                ark_bytes=len(data),
                ark_crc32=crc,
                index_crc32=crc,
            )
        )

    lines: List[str] = []
    counts: List[int] = []
    with open(text_file, encoding="utf-8") as ft, open(shape_file, encoding="utf-8") as fs:
        lineno = 0
        for lineno, (tline, sline) in enumerate(zip(ft, fs), 1):
            utt, _, text = tline.rstrip("\n").partition(" ")
            sfields = sline.split()
            where = f"{text_file}:{lineno} / {shape_file}:{lineno}"
            if len(sfields) != 2 or sfields[0] != utt:
                raise ShardError(
                    f"{where}: {utt!r} against {sline.strip()!r}: the text and "
                    "its shape file must list the same ids in the same order"
                )
            try:
                n = int(sfields[1].split(",")[0])
            except ValueError:
                n = 0
            if n < 1:
                raise ShardError(f"{where}: token count {sfields[1]!r} of {utt!r} is not >= 1")
            if "\t" in utt or "\t" in text:
                text = text.replace("\t", " ")
            lines.append(f"{utt}\t{n}\t{text.strip()}\n")
            counts.append(n)
            if len(lines) == shard_size:
                flush(lines, counts)
                lines, counts = [], []
        extra_t, extra_s = ft.readline(), fs.readline()
        if extra_t or extra_s:
            raise ShardError(
                f"{text_file} and {shape_file} have different numbers of lines "
                f"(they agree up to line {lineno})"
            )
    if lines:
        flush(lines, counts)
    if not rows:
        raise ShardError(f"{text_file}: no lines")
    for stale in [*(out / "data").glob("text.*.idx"), *(out / "data").glob("*/text.*.idx")]:
        k = stale.name.split(".")[1]
        if k.isdigit() and int(k) >= len(rows):
            stale.unlink()
    return write_manifest(out, rows, feat_dim=0, kind="text", extra={"inputs": inputs}), True
