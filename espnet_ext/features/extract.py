"""Stage 2's library: extract a data dir's features into sharded kaldi ark/scp.

The entry point is :mod:`espnet_ext.bin.extract_feats` (its docstring describes the
outputs).  :func:`run` splits the sorted utterances into chunks of ``chunk_size``;
each chunk (:func:`process_chunk`, in a worker process that imports only
numpy/torch/soundfile/kaldiio and runs one torch thread) is written as
``data/<d>/feats.<k>.{ark,scp,idx}`` and marked done by ``data/<d>/feats.<k>.done`` (a record
holding the chunk's summary), so a killed run resumes with the unfinished chunks.  The
chunks are then merged into ``feats.scp``, ``feats_shape``, ``rejected`` and the shard
manifest, and ``.done`` records the fingerprint of the inputs.

``feats_type="raw"`` (ESPnet's ``--feats_type raw``) writes the audio instead of the
features: ``data/<d>/audio.<k>.{ark,scp,idx,done}``, each utterance as 16-bit FLAC in
kaldiio's audio entry (resampled to 16 kHz mono, as the features would read it), merged
into ``wav.scp`` (``<utt> <ark>:<offset>``, ESPnet's ``kaldi_ark`` type) and
``speech_shape`` (``<utt> <samples>``); the shard index also carries the samples. The
model's ``logmel`` frontend then computes the features on the training device
(:func:`espnet_ext.features.compute_features_batch`).

Labeled sets: the shards also get their transcripts (``data/<d>/text.<k>.txt`` from the
copied ``text``, :func:`espnet_ext.shards.text.write_transcripts`), rewritten whenever
``text`` changes. A data dir with ``utt2source`` (a set combined with sources recorded,
for weighted mixing) is cut into chunks per source, in the order the sources first
appear there, and the manifest records each shard's source.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import sys
import time
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import kaldiio
import torch

from espnet_ext.features.audio import AudioError, read_audio
from espnet_ext.features.inputs import DataDirError, UsageError, Utterance, fingerprint, read_data_dir
from espnet_ext.features.logmel import DEFAULT_OPTIONS, LogMelOptions, compute_features
from espnet_ext.shards import format as S
from espnet_ext.shards import text as ST
from espnet_ext.utils.atomic import atomic_open, write_bytes_atomic, write_text_atomic
from espnet_ext.utils.kaldi_table import read_keys
from espnet_ext.utils.stamps import DONE_FILE, read_record, write_record

__all__ = ["FEATS_TYPES", "META_FILES", "DataDirError", "UsageError", "process_chunk", "run"]

META_FILES = ("text", "utt2spk", "spk2utt")
FEATS_TYPES = ("fbank", "raw")  # the features, or the audio (ESPnet's --feats_type)
#: what each feats_type writes: shard kind, ark/index patterns, merged scp and shape file
_LAYOUT = {
    "fbank": ("feats", S.ARK_PATTERN, "feats.scp", "feats_shape"),
    "raw": ("audio", S.AUDIO_ARK_PATTERN, "wav.scp", "speech_shape"),
}
#: the audio entries: FLAC in kaldiio's audio entry, as ESPnet's format_wav_scp flac.ark
_FLAC = {"format": "flac", "subtype": "PCM_16"}

log = logging.getLogger("extract_feats")


# ---------------------------------------------------------------------------
# One chunk (runs in a worker process)
# ---------------------------------------------------------------------------


def _chunk_paths(out_dir: Path, index: int, feats_type: str = "fbank") -> Dict[str, Path]:
    """Chunk ``index``'s files, in the shard format's subdirectory (``data/<d>/feats.<index>.*``,
    ``audio.<index>.*`` for ``raw``)."""
    ark = out_dir / S.shard_file(_LAYOUT[feats_type][1], index)
    base = ark.with_suffix("")
    return {k: Path(f"{base}.{k}") for k in ("ark", "scp", "idx", "done")}


def _load_utterance(u: Utterance, options: LogMelOptions):
    if u.path is None:
        raise AudioError(f"recording {u.recording!r} is not in wav.scp")
    wave = read_audio(u.path, u.start, u.end, sample_rate=options.sample_rate)
    if wave.size < options.win_length:
        raise AudioError(
            f"{u.path}: too short: {wave.size} samples, fewer than one {options.win_length}-sample window"
        )
    return wave


def process_chunk(
    chunk: int,
    utts: Sequence[Utterance],
    out_dir: str,
    fp: str,
    options: LogMelOptions = DEFAULT_OPTIONS,
    feats_type: str = "fbank",
) -> dict:
    """Extract one chunk into ``data/<d>/feats.<chunk>.{ark,scp,idx}`` (``raw``: its audio
    into ``data/<d>/audio.<chunk>.*``) and mark it done.

    Returns the chunk summary that is also stored in the ``.done`` marker.
    """
    raw = feats_type == "raw"
    paths = _chunk_paths(Path(out_dir), chunk, feats_type)
    paths["ark"].parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    scp_lines, shapes, samples, rejected, index = [], {}, {}, [], []
    seconds = 0.0
    try:
        with atomic_open(paths["ark"], "wb") as ark:
            for u in utts:
                try:
                    wave = _load_utterance(u, options)
                except AudioError as exc:
                    rejected.append((u.utt, str(exc)))
                    continue
                offset = ark.tell() + len((u.utt + " ").encode("utf-8"))
                if raw:
                    entry = {u.utt: (options.sample_rate, wave)}
                    kaldiio.save_ark(ark, entry, write_function="soundfile", write_kwargs=dict(_FLAC))
                    frames = options.num_frames(wave.size)
                    samples[u.utt] = int(wave.size)
                    index.append((u.utt, offset, frames, int(wave.size)))
                else:
                    feats = compute_features(wave, options=options)
                    kaldiio.save_ark(ark, {u.utt: feats})
                    frames = int(feats.shape[0])
                    index.append((u.utt, offset, frames))
                scp_lines.append(f"{u.utt} {paths['ark']}:{offset}\n")
                shapes[u.utt] = frames
                seconds += wave.size / options.sample_rate
    finally:
        torch.set_num_threads(threads)
    ark_bytes, ark_crc = paths["ark"].stat().st_size, S.crc32_file(paths["ark"])
    write_text_atomic(paths["scp"], "".join(scp_lines))
    index_bytes = S.format_index(index)
    write_bytes_atomic(paths["idx"], index_bytes)
    summary = {
        "fingerprint": fp,
        "chunk": chunk,
        "utts": [u.utt for u in utts],
        "shapes": shapes,
        "samples": samples,
        "rejected": rejected,
        "seconds": seconds,
        "ark_bytes": ark_bytes,
        "ark_crc32": ark_crc,
        "index_crc32": zlib.crc32(index_bytes),
    }
    write_record(paths["done"], summary)
    return summary


def _read_marker(path: Path, fp: str, utts: Sequence[Utterance]) -> Optional[dict]:
    """The chunk summary if the chunk is complete for these inputs, else None."""
    summary = read_record(path)
    if summary is None or summary.get("fingerprint") != fp or summary.get("utts") != [u.utt for u in utts]:
        return None
    base = path.with_suffix("")
    if not all(Path(f"{base}.{ext}").is_file() for ext in ("ark", "scp", "idx")):
        return None
    return summary


def _remove_stale_chunks(out_dir: Path, n_chunks: int, feats_type: str = "fbank") -> None:
    """Delete chunk files of an earlier plan with more chunks (and of the flat layout),
    and everything of the other feats_type (its chunks, merged scp and shape file)."""
    own = _LAYOUT[feats_type][0]
    for kind, _, scp, shape in _LAYOUT.values():
        for path in [*(out_dir / "data").glob(f"{kind}.*"), *(out_dir / "data").glob(f"*/{kind}.*")]:
            index = path.name.split(".")[1]
            if kind != own or (index.isdigit() and int(index) >= n_chunks):
                path.unlink()
        if kind != own:
            for name in (scp, shape):
                (out_dir / name).unlink(missing_ok=True)


def _init_worker() -> None:
    torch.set_num_threads(1)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def _filter_meta(text: str, keep: set, spk2utt: bool) -> str:
    lines = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if spk2utt:
            kept = [u for u in fields[1:] if u in keep]
            if kept:
                lines.append(" ".join([fields[0]] + kept))
        elif fields[0] in keep:
            lines.append(line)
    return "".join(f"{line}\n" for line in lines)


def _sync_meta(data_dir: Path, out_dir: Path, written: set, filtered: bool) -> List[str]:
    """Copy text/utt2spk/spk2utt (restricted to ``written`` if ``filtered``).

    Writes a file only if its content differs; returns the names written.
    """
    changed = []
    for name in META_FILES:
        src = data_dir / name
        if not src.is_file():
            continue
        content = src.read_text(encoding="utf-8")
        if filtered:
            content = _filter_meta(content, written, spk2utt=(name == "spk2utt"))
        dst = out_dir / name
        if dst.is_file() and dst.read_text(encoding="utf-8") == content:
            continue
        write_text_atomic(dst, content)
        changed.append(name)
    return changed


def _write_shard_manifest(
    out_dir: Path,
    summaries: List[dict],
    options: LogMelOptions,
    sources: Optional[List[str]] = None,
    chunk_sources: Optional[List[int]] = None,
    feats_type: str = "fbank",
) -> Path:
    """``shards.tsv`` for the chunks (in chunk order); empty chunks are left out."""
    rows, row_sources = [], []
    for s in summaries:
        frames = list(s["shapes"].values())
        if frames:
            rows.append(
                S.ShardRow(
                    shard=s["chunk"],
                    utts=len(frames),
                    frames=sum(frames),
                    max_frames=max(frames),
                    ark_bytes=s["ark_bytes"],
                    ark_crc32=s["ark_crc32"],
                    index_crc32=s["index_crc32"],
                )
            )
            if sources is not None:
                row_sources.append(chunk_sources[s["chunk"]])
    kind = _LAYOUT[feats_type][0]
    extra = (
        {"sample_rate": options.sample_rate, "hop_length": options.hop_length, "audio": "flac"}
        if kind == "audio"
        else None
    )
    path = S.write_manifest(
        out_dir,
        rows,
        feat_dim=options.n_mels,
        sources=sources,
        row_sources=row_sources if sources is not None else None,
        kind=kind,
        extra=extra,
    )
    if (out_dir / "text").is_file():
        path = ST.write_transcripts(str(out_dir), out_dir / "text")
    return path


def _read_utt2source(data: Path, utts: Sequence[Utterance]):
    """``(sources, source index per utterance)`` from ``utt2source``, or (None, None).

    Raises:
        DataDirError: an utterance without a source (named).
    """
    path = data / "utt2source"
    if not path.is_file():
        return None, None
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) == 2:
            table[fields[0]] = fields[1]
    sources: List[str] = []
    for name in table.values():
        if name not in sources:
            sources.append(name)
    index = {name: i for i, name in enumerate(sources)}
    out = []
    for u in utts:
        if u.utt not in table:
            raise DataDirError(f"{path}: utterance {u.utt!r} has no source")
        out.append(index[table[u.utt]])
    return sources, out


def _merge(
    out_dir: Path, summaries: List[dict], n_mels: int, feats_type: str = "fbank"
) -> Tuple[int, int, float, set, bool]:
    scp_lines, shape_lines, rejected = [], [], []
    seconds = 0.0
    _, _, scp_name, shape_name = _LAYOUT[feats_type]
    for s in summaries:
        with open(_chunk_paths(out_dir, s["chunk"], feats_type)["scp"], encoding="utf-8") as f:
            scp_lines.extend(line for line in f if line.strip())
        if feats_type == "raw":
            shape_lines.extend(f"{utt} {n}\n" for utt, n in s["samples"].items())
        else:
            shape_lines.extend(f"{utt} {t},{n_mels}\n" for utt, t in s["shapes"].items())
        rejected.extend(s["rejected"])
        seconds += s["seconds"]
    key = lambda line: line.split(maxsplit=1)[0]  # noqa: E731
    scp_lines.sort(key=key)
    shape_lines.sort(key=key)
    rejected.sort()
    write_text_atomic(out_dir / scp_name, "".join(scp_lines))
    write_text_atomic(out_dir / shape_name, "".join(shape_lines))
    write_text_atomic(out_dir / "rejected", "".join(f"{u}\t{r}\n" for u, r in rejected))
    for other, (_, _, other_scp, other_shape) in _LAYOUT.items():  # the other feats_type's, now stale
        if other != feats_type:
            for name in (other_scp, other_shape):
                (out_dir / name).unlink(missing_ok=True)
    written = {key(line) for line in scp_lines}
    return len(scp_lines), len(rejected), seconds, written, bool(rejected)


def run(
    data_dir: str,
    out_dir: str,
    *,
    nj: int = 4,
    chunk_size: int = 200,
    options: LogMelOptions = DEFAULT_OPTIONS,
    progress: bool = True,
    feats_type: str = "fbank",
) -> dict:
    """Extract features (``fbank``), or write the audio shards (``raw``), for a data dir
    (see the module docstring).

    Returns:
        dict with ``status`` ("done" or "already done"), ``found``,
        ``written``, ``rejected``, ``seconds`` (audio), ``wall`` (s).

    Raises:
        UsageError (DataDirError): bad arguments or data dir, before any work.
        RuntimeError: a worker process died; finished chunks are kept.
    """
    if nj < 1:
        raise UsageError(f"--nj must be >= 1, got {nj}")
    if chunk_size < 1:
        raise UsageError(f"--chunk_size must be >= 1, got {chunk_size}")
    if feats_type not in FEATS_TYPES:
        raise UsageError(f"--feats_type must be one of {FEATS_TYPES}, got {feats_type!r}")
    scp_name = _LAYOUT[feats_type][2]
    data, out = Path(data_dir), Path(out_dir)
    utts = read_data_dir(data)
    if not utts:
        raise DataDirError(f"{data}: wav.scp/segments list no utterances")
    fp = fingerprint(data, options) + ("+raw" if feats_type == "raw" else "")
    sources, utt_sources = _read_utt2source(data, utts)
    if sources is not None:  # the chunks depend on it
        fp = f"{fp}+{zlib.crc32((data / 'utt2source').read_bytes()):08x}"
    t0 = time.perf_counter()

    done_file = out / DONE_FILE
    if done_file.is_file():
        done = read_record(done_file) or {}
        complete = (out / scp_name).is_file() and (out / S.MANIFEST_NAME).is_file()
        if done.get("fingerprint") == fp and complete:
            written = set(read_keys(out / scp_name))
            changed = _sync_meta(data, out, written, filtered=done.get("rejected", 0) > 0)
            if changed:
                log.info("%s: %s changed in %s: re-copied", out, ", ".join(changed), data)
            if (out / "text").is_file() and (
                "text" in changed or S.ShardManifest.load(str(out)).text_pattern is None
            ):
                ST.write_transcripts(str(out), out / "text")
                log.info("%s: wrote the shards' transcripts", out)
            log.info("%s: already done (%d utterances), nothing to do", out, done.get("written", 0))
            return {**done, "status": "already done", "wall": time.perf_counter() - t0}
        if done.get("fingerprint") == fp:
            log.info("%s: %s or %s is missing: merging the chunks again", out, scp_name, S.MANIFEST_NAME)
        else:
            log.info("%s: inputs changed since the last run: re-extracting", out)
        done_file.unlink()

    (out / "data").mkdir(parents=True, exist_ok=True)
    if sources is None:
        chunks = [utts[i : i + chunk_size] for i in range(0, len(utts), chunk_size)]
        chunk_sources = None
    else:  # each chunk (shard) holds one source
        chunks, chunk_sources = [], []
        for i in range(len(sources)):
            own = [u for u, j in zip(utts, utt_sources) if j == i]
            chunks += [own[a : a + chunk_size] for a in range(0, len(own), chunk_size)]
            chunk_sources += [i] * len(range(0, len(own), chunk_size))
    _remove_stale_chunks(out, len(chunks), feats_type)
    summaries: Dict[int, dict] = {}
    for k, chunk in enumerate(chunks):
        summary = _read_marker(_chunk_paths(out, k, feats_type)["done"], fp, chunk)
        if summary is not None:
            summaries[k] = summary
    pending = [k for k in range(len(chunks)) if k not in summaries]
    log.info(
        "%s: %d utterances in %d chunks; %d chunks already done, %d to do (nj=%d)",
        data,
        len(utts),
        len(chunks),
        len(summaries),
        len(pending),
        nj,
    )

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(utts),
            initial=sum(len(chunks[k]) for k in summaries),
            unit="utt",
            desc=f"{'audio' if feats_type == 'raw' else 'feats'} {data.name}",
            file=sys.stderr,
            mininterval=1.0,
        )
    hours = sum(s["seconds"] for s in summaries.values()) / 3600

    def _finished(summary: dict) -> None:
        nonlocal hours
        summaries[summary["chunk"]] = summary
        hours += summary["seconds"] / 3600
        if bar is not None:
            bar.update(len(summary["utts"]))
            bar.set_postfix(audio_h=f"{hours:.2f}")

    try:
        if nj == 1 or len(pending) <= 1:
            for k in pending:
                _finished(process_chunk(k, chunks[k], str(out), fp, options, feats_type))
        else:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(
                max_workers=min(nj, len(pending)), mp_context=ctx, initializer=_init_worker
            ) as pool:
                futures = [
                    pool.submit(process_chunk, k, chunks[k], str(out), fp, options, feats_type)
                    for k in pending
                ]
                try:
                    for fut in concurrent.futures.as_completed(futures):
                        _finished(fut.result())
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    except concurrent.futures.process.BrokenProcessPool as exc:
        raise RuntimeError(
            f"{out}: a worker process died ({exc}); {len(summaries)} of {len(chunks)} "
            "chunks are done and kept: re-run to resume"
        ) from exc
    finally:
        if bar is not None:
            bar.close()

    ordered = [summaries[k] for k in range(len(chunks))]
    n_written, n_rejected, seconds, written, filtered = _merge(out, ordered, options.n_mels, feats_type)
    if n_written + n_rejected != len(utts):
        raise RuntimeError(
            f"{out}: found {len(utts)} utterances but wrote {n_written} and rejected {n_rejected}"
        )
    _sync_meta(data, out, written, filtered)
    _write_shard_manifest(out, ordered, options, sources, chunk_sources, feats_type)
    wall = time.perf_counter() - t0
    result = {
        "fingerprint": fp,
        "found": len(utts),
        "written": n_written,
        "rejected": n_rejected,
        "seconds": seconds,
        "options": dataclasses.asdict(options),
        "feats_type": feats_type,
    }
    write_record(done_file, result)
    log.info(
        "%s: found %d = written %d + rejected %d%s",
        out,
        len(utts),
        n_written,
        n_rejected,
        f" (see {out / 'rejected'})" if n_rejected else "",
    )
    log.info(
        "%s: %.2f h of audio in %.1f s wall, %.0fx real time with nj=%d (%d chunks extracted in this run)",
        out,
        seconds / 3600,
        wall,
        seconds / max(wall, 1e-9),
        nj,
        len(pending),
    )
    return {**result, "status": "done", "wall": wall}
