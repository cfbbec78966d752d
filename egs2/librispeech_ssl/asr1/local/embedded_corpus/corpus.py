"""The corpus on disk: LibriSpeech layout, bookkeeping, idempotence and resume.

``make_corpus`` writes, in this order: ``.embedded_corpus.params.json`` (parameters),
every ``trans.txt``, ``librispeech-lm-norm.txt.gz`` (lm_text.py), the FLAC files that are
missing (synthesis.py), ``SPEAKERS.TXT`` (minutes measured from the files), and last
``embedded_corpus.json`` (parameters, sizes, vocabulary, speakers).

Guarantees:

* a rerun with the same parameters on a complete corpus prints "already complete" and
  touches no file; a rerun with other parameters, or into a non-empty directory this
  script did not make (say a real LibriSpeech), stops with ``CorpusError`` before writing;
* every file is written atomically (atomic.py), so an interrupted run resumes: left-over
  temporary files are removed and only the missing files are synthesized, giving the same
  bytes as an uninterrupted run; a corpus made before the LM text existed gets it with no
  audio touched;
* a lock file stops two runs from writing the same directory.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from .atomic import remove_stale, write_text_atomic
from .common import GENERATOR_VERSION, SAMPLE_RATE, SUBSETS, CorpusError
from .lm_text import LM_TEXT, lm_record, lm_sentences, write_lm_text
from .plan import CorpusPlan, build_plan, vocabulary_stats
from .synthesis import espeak_info, run_jobs

MANIFEST = "embedded_corpus.json"  # written last: parameters, sizes, speakers
STARTED = ".embedded_corpus.params.json"  # written first: parameters
LOCK = ".embedded_corpus.lock"


def _params(seed: int, scale: float, espeak_version: str) -> dict:
    """What identifies a corpus: a rerun with other parameters is refused."""
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "espeak_ng": espeak_version,
        "sample_rate": SAMPLE_RATE,
    }


def _chapter_files(plan: CorpusPlan) -> dict[Path, str]:
    """relative path of every trans.txt -> its content."""
    lines: dict[Path, list[str]] = {}
    for u in plan.utterances:
        path = Path(u.subset, str(u.speaker), str(u.chapter), f"{u.speaker}-{u.chapter}.trans.txt")
        lines.setdefault(path, []).append(f"{u.uid} {u.transcript}\n")
    return {p: "".join(sorted(v)) for p, v in lines.items()}


def _speakers_txt(plan: CorpusPlan, seconds: dict[str, float]) -> str:
    """SPEAKERS.TXT in LibriSpeech's format, MINUTES from the real durations ``seconds``."""
    per_spk = Counter()
    for u in plan.utterances:
        per_spk[u.speaker] += seconds[u.uid]
    rows = [
        "; Speakers of the embedded corpus, synthesized with espeak-ng by",
        "; local/make_embedded_corpus.py. NAME gives the espeak-ng voice+variant, its speed",
        "; (words per minute), pitch and word gap.",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
    ]
    for s in sorted(plan.speakers, key=lambda s: s.id):
        rows.append(f"{s.id:<5}| {s.sex} | {s.subset:<17}| {per_spk[s.id] / 60:5.2f} | {s.name}")
    return "\n".join(rows) + "\n"


def _summary(plan: CorpusPlan, seconds: dict[str, float]) -> dict:
    """Per-subset sizes for the manifest and the printed table."""
    out = {}
    for subset in SUBSETS:
        utts = [u for u in plan.utterances if u.subset == subset]
        durs = [seconds[u.uid] for u in utts]
        out[subset] = {
            "speakers": sum(1 for s in plan.speakers if s.subset == subset),
            "chapters": len({u.chapter for u in utts}),
            "utterances": len(utts),
            "hours": round(sum(durs) / 3600, 4),
            "utt_sec_min": round(min(durs), 2),
            "utt_sec_max": round(max(durs), 2),
            "utt_sec_mean": round(sum(durs) / len(durs), 2),
            "utt_share_2_to_8_sec": round(sum(2 <= d <= 8 for d in durs) / len(durs), 3),
        }
    return out


def _print_summary(subsets: dict, vocab: dict) -> None:
    print(
        f"{'subset':<12} {'speakers':>8} {'chapters':>8} {'utts':>6} {'hours':>7} {'sec/utt':>8} {'words':>6}"
    )
    for name, s in subsets.items():
        print(
            f"{name:<12} {s['speakers']:>8} {s['chapters']:>8} {s['utterances']:>6} "
            f"{s['hours']:>7.3f} {s['utt_sec_mean']:>8.2f} "
            f"{vocab['distinct_words_per_subset'][name]:>6}"
        )
    total = sum(s["hours"] for s in subsets.values())
    oov = vocab["oov_vs_train_clean"]["all-test"]
    print(
        f"total {total:.3f} h; distinct words: {vocab['distinct_words']} overall, "
        f"{vocab['distinct_words_per_subset']['train-clean']} in train-clean; test OOV "
        f"w.r.t. train-clean: {100 * oov['token_rate']:.2f}% of tokens, "
        f"{100 * oov['type_rate']:.2f}% of word types"
    )


def make_corpus(out: Path, *, seed: int, scale: float, nj: int) -> int:
    """Make (or complete, or recognize as complete) the corpus ``seed``/``scale`` in
    ``out`` with ``nj`` synthesis processes; return the exit status (0). Raise
    ``CorpusError`` before writing anything if espeak-ng lacks a voice, ``out`` is not a
    directory or holds something this script did not make, or another run holds the lock."""
    espeak_version = espeak_info()
    params = _params(seed, scale, espeak_version)
    started = out / STARTED
    if out.exists() and not out.is_dir():
        raise CorpusError(f"--out {out} exists and is not a directory")
    if out.is_dir() and not started.is_file() and any(p.name != LOCK for p in out.iterdir()):
        raise CorpusError(
            f"{out} is not empty and was not made by this script; refusing to "
            f"write into it (choose an empty or new --out)"
        )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a") as lock:  # "a": neither truncates nor touches the file
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CorpusError(f"{out}: another make_embedded_corpus.py run is writing here") from None
        return _make_locked(out, params, nj)


def _make_locked(out: Path, params: dict, nj: int) -> int:
    """make_corpus under the lock: check the parameters, write what is missing, then the
    manifest."""
    seed, scale = params["seed"], params["scale"]
    started = out / STARTED
    if started.is_file():
        previous = json.loads(started.read_text())
        if previous != params:
            raise CorpusError(
                f"{out} holds an embedded corpus made with other parameters "
                f"({previous}, not {params}); remove it or choose another --out"
            )

    plan = build_plan(seed, scale)
    trans = _chapter_files(plan)
    wanted = (
        [out / u.relpath for u in plan.utterances]
        + [out / p for p in trans]
        + [out / "SPEAKERS.TXT", out / LM_TEXT]
    )
    manifest = out / MANIFEST
    if (
        manifest.is_file()
        and json.loads(manifest.read_text()).get("params") == params
        and all(p.is_file() for p in wanted)
    ):
        print(f"{out}: already complete (seed {seed}, scale {scale}); nothing to do")
        return 0
    manifest.unlink(missing_ok=True)
    if not started.is_file():
        write_text_atomic(started, json.dumps(params, indent=1) + "\n")
    remove_stale(out)  # left by an interrupted run

    for rel, text in trans.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / rel, text)

    lm_text = lm_sentences(plan)
    if not (out / LM_TEXT).is_file():
        write_lm_text(out / LM_TEXT, lm_text)
    speakers = {s.id: s for s in plan.speakers}
    jobs = [
        (str(out / u.relpath), u, speakers[u.speaker])
        for u in plan.utterances
        if not (out / u.relpath).is_file()
    ]
    print(
        f"{out}: {len(plan.utterances)} utterances planned, {len(jobs)} to synthesize with {nj} process(es)",
        flush=True,
    )
    started_at = time.monotonic()
    run_jobs(jobs, nj)
    elapsed = time.monotonic() - started_at

    import soundfile as sf

    seconds = {u.uid: sf.info(str(out / u.relpath)).frames / SAMPLE_RATE for u in plan.utterances}
    write_text_atomic(out / "SPEAKERS.TXT", _speakers_txt(plan, seconds))
    subsets = _summary(plan, seconds)
    vocab = vocabulary_stats(plan.sentences())
    lm = lm_record(plan, lm_text)
    record = {
        "params": params,
        "subsets": subsets,
        "vocabulary": vocab,
        "lm_text": lm,
        "speakers": [asdict(s) for s in plan.speakers],
    }
    write_text_atomic(manifest, json.dumps(record, indent=1) + "\n")
    print(f"synthesized {len(jobs)} utterances in {elapsed:.1f} s")
    _print_summary(subsets, vocab)
    print(
        f"LM text ({LM_TEXT}): {lm['sentences']} sentences, {lm['words']} words, "
        f"{lm['distinct_words']} distinct; test OOV w.r.t. it: "
        f"{100 * lm['test_oov_token_rate']:.2f}% of tokens; no dev/test sentence"
    )
    return 0
