"""Stage 7: WER and CER of decoded text against references, with jiwer.

    python -m espnet_ext.bin.score --ref dump/test_clean/text --hyp DEC/text --out_dir DEC/score

Text normalization, applied identically to references and hypotheses before scoring:
upper-case; every character that is not a letter, a digit, an apostrophe or white space is
removed (sentencepiece's word marker included); apostrophes not inside a word are removed;
runs of white space become one space. WER counts words; CER counts characters of the
normalized text including the single spaces between words.

Every reference utterance is scored: one with no hypothesis line counts as an empty
hypothesis (all deletions) and is listed in the log and in result.json ("missing").
A hypothesis for an utterance that has no reference is an error.

Writes ``result.json`` (wer, cer in percent; wer_ci_low, wer_ci_high: the 95% bootstrap
confidence interval of the WER over utterances; substitutions, deletions, insertions, hits
for words and for characters; n_utts, n_words, n_chars), ``wer.txt`` (a summary line) and
``alignment.txt`` (per utterance: REF/HYP aligned word by word with S/D/I marks and that
utterance's error counts) and ``utt_errors.txt`` (``utt word_errors ref_words`` per line, what
the bootstrap error bars of :mod:`espnet_ext.utils.bootstrap` resample).
"""

import argparse
import json
import logging
import re
import sys
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional

import jiwer

from espnet_ext.utils import bootstrap
from espnet_ext.utils.kaldi_table import iter_rows

_NOT_KEPT = re.compile(r"[^\w\s']|_")
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u2581", " ").upper()
    text = _NOT_KEPT.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def read_text(path: Path, allow_empty: bool) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for row in iter_rows(path):
        if row.key in out:
            raise ValueError(f"{path}:{row.lineno}: duplicate utterance id {row.key}")
        words = normalize(row.value)
        if not words and not allow_empty:
            raise ValueError(f"{path}:{row.lineno}: utterance {row.key} has an empty reference")
        out[row.key] = words
    return out


def _align_lines(ref: str, hyp: str) -> List[str]:
    out = jiwer.process_words(ref, hyp)
    r, h, m = [], [], []
    rw, hw = out.references[0], out.hypotheses[0]
    for chunk in out.alignments[0]:
        if chunk.type in ("equal", "substitute"):
            mark = " " if chunk.type == "equal" else "S"
            for i in range(chunk.ref_end_idx - chunk.ref_start_idx):
                w1, w2 = rw[chunk.ref_start_idx + i], hw[chunk.hyp_start_idx + i]
                n = max(len(w1), len(w2))
                r.append(w1.ljust(n))
                h.append(w2.ljust(n))
                m.append(mark.ljust(n))
        elif chunk.type == "delete":
            for w1 in rw[chunk.ref_start_idx : chunk.ref_end_idx]:
                r.append(w1)
                h.append("*" * len(w1))
                m.append("D".ljust(len(w1)))
        elif chunk.type == "insert":
            for w2 in hw[chunk.hyp_start_idx : chunk.hyp_end_idx]:
                r.append("*" * len(w2))
                h.append(w2)
                m.append("I".ljust(len(w2)))
    return ["REF: " + " ".join(r), "HYP: " + " ".join(h), "     " + " ".join(m).rstrip()]


def score(ref_path: Path, hyp_path: Path, out_dir: Path) -> dict:
    refs = read_text(ref_path, allow_empty=False)
    hyps = read_text(hyp_path, allow_empty=True)
    unknown = sorted(set(hyps) - set(refs))
    if unknown:
        raise ValueError(
            f"{hyp_path}: {len(unknown)} hypotheses have no reference in {ref_path}, e.g. {unknown[:3]}"
        )
    missing = sorted(set(refs) - set(hyps))
    if missing:
        logging.warning(
            f"{len(missing)} of {len(refs)} utterances have no hypothesis (scored as empty): {missing[:5]}"
        )
    utts = sorted(refs)
    ref_list = [refs[u] for u in utts]
    hyp_list = [hyps.get(u, "") for u in utts]
    w = jiwer.process_words(ref_list, hyp_list)
    c = jiwer.process_characters(ref_list, hyp_list)
    n_words = w.hits + w.substitutions + w.deletions
    n_chars = c.hits + c.substitutions + c.deletions
    result = {
        "wer": 100.0 * (w.substitutions + w.deletions + w.insertions) / n_words,
        "cer": 100.0 * (c.substitutions + c.deletions + c.insertions) / n_chars,
        "word_substitutions": w.substitutions,
        "word_deletions": w.deletions,
        "word_insertions": w.insertions,
        "word_hits": w.hits,
        "char_substitutions": c.substitutions,
        "char_deletions": c.deletions,
        "char_insertions": c.insertions,
        "char_hits": c.hits,
        "n_utts": len(utts),
        "n_words": n_words,
        "n_chars": n_chars,
        "missing": missing,
        "ref": str(ref_path),
        "hyp": str(hyp_path),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        open(out_dir / "alignment.txt", "w", encoding="utf-8") as f,
        open(out_dir / "utt_errors.txt", "w", encoding="utf-8") as per_utt,
    ):
        for u, r, h in zip(utts, ref_list, hyp_list):
            one = jiwer.process_words(r, h)
            per_utt.write(f"{u} {one.substitutions + one.deletions + one.insertions} {len(r.split())}\n")
            f.write(
                f"{u} S={one.substitutions} D={one.deletions} I={one.insertions} N={len(r.split())}"
                + (" (no hypothesis)" if u in missing else "")
                + "\n"
            )
            f.write("\n".join(_align_lines(r, h)) + "\n\n")
    table = bootstrap.read_utt_errors(out_dir)
    low, high = bootstrap.wer_ci([table[u][0] for u in utts], [table[u][1] for u in utts])
    result["wer_ci_low"], result["wer_ci_high"] = low, high
    (out_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    summary = (
        f"%WER {result['wer']:.2f} [ {w.substitutions + w.deletions + w.insertions} / {n_words}, "
        f"{w.insertions} ins, {w.deletions} del, {w.substitutions} sub ] "
        f"%CER {result['cer']:.2f} [ {n_chars} chars ] utts {len(utts)}"
    )
    (out_dir / "wer.txt").write_text(summary + "\n")
    logging.info(f"{hyp_path}: {summary}")
    return result


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", type=Path, required=True)
    p.add_argument("--hyp", type=Path, required=True)
    p.add_argument("--out_dir", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (score) %(message)s")
    for f in (args.ref, args.hyp):
        if not f.is_file():
            p.error(f"{f}: no such file")
    score(args.ref, args.hyp, args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
