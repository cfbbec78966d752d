"""Stage 3 (with --use_lm true): the language model's training text and shape files.

    python -m espnet_ext.bin.lm_text --out_dir data/lm_train --bpemodel data/token_list/bpe.model \\
        --text data/train_clean/text --plain corpus/librispeech-lm-norm.txt.gz \\
        --exclude data/dev_clean/text --exclude data/test_clean/text \\
        --valid_text data/dev_clean/text

Sources: ``--text`` Kaldi text files (``<id> WORDS``: the ASR training transcripts, as
ESPnet's recipes add them to the LM text) and ``--plain`` text-only corpora with one
sentence per line, optionally gzipped (LibriSpeech's ``librispeech-lm-norm.txt.gz``,
OpenSLR 11; the embedded corpus writes one in the same format). Plain lines get the id
``<file stem>_<line number>``.

Writes in ``--out_dir``:

* ``text``: every kept sentence, Kaldi text;
* ``text_shape.bpe``: ``<id> <number of tokens>`` (ESPnet's sampler reads it);
* ``valid_shape.bpe``: the same for ``--valid_text``;
* ``rejected.tsv``: ``<source>:<line> <reason>`` for every line not kept;
* ``summary.json``: per source, lines read, kept and rejected by reason (read = kept +
  rejected, checked).

A line is rejected when it is empty, holds characters the tokenizer cannot spell (they
would become ``<unk>``), has more than ``--max_tokens`` tokens, or equals a transcript of an
``--exclude`` set (so no dev or test sentence is ever LM training text). A re-run with the
same inputs changes nothing.
"""

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from espnet_ext.utils.atomic import atomic_open, write_text_atomic
from espnet_ext.utils.kaldi_table import iter_rows, open_text
from espnet_ext.utils.stamps import DONE_FILE, stamp_matches, write_stamp

CHUNK = 20_000  # lines tokenized per sentencepiece call


class LMTextError(ValueError):
    pass


def read_kaldi_text(path: Path) -> Iterator[Tuple[int, Optional[str], str]]:
    """(line number, utterance id, transcript) of a Kaldi text file."""
    for row in iter_rows(path, skip_blank=False):
        yield row.lineno, row.key or None, " ".join(row.value.split())


def read_plain_text(path: Path) -> Iterator[Tuple[int, Optional[str], str]]:
    """(line number, generated id, sentence) of a one-sentence-per-line corpus (id None: empty)."""
    stem = path.name.split(".")[0].replace(" ", "_")
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            sentence = " ".join(line.split())
            yield n, f"{stem}_{n:09d}" if sentence else None, sentence


def transcripts(path: Path) -> Set[str]:
    return {t for _, _, t in read_kaldi_text(path) if t}


def _fingerprint(args: argparse.Namespace) -> str:
    h = hashlib.sha1()
    for p in [*args.text, *args.plain, *args.exclude, args.valid_text, args.bpemodel]:
        if p is not None:
            st = os.stat(p)
            h.update(f"{Path(p).resolve()} {st.st_size} {st.st_mtime_ns}\n".encode())
    h.update(f"max_tokens={args.max_tokens}\n".encode())
    return h.hexdigest()


class _Tokenizer:
    def __init__(self, bpemodel: Path) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(bpemodel))
        self.unk = self.sp.unk_id()

    def lengths(self, sentences: List[str]) -> List[Tuple[int, bool]]:
        """(number of tokens, has an unknown piece) per sentence."""
        ids = self.sp.encode(sentences, num_threads=1)
        return [(len(x), self.unk in x) for x in ids]


def _unknown_chars(sp, sentence: str) -> str:
    return "".join(sorted({c for c in set(sentence) - {" "} if sp.unk_id() in sp.encode(c)}))


def build(args: argparse.Namespace) -> Dict:
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    done = out / DONE_FILE
    stamp = _fingerprint(args)
    if stamp_matches(done, stamp) and (out / "summary.json").is_file():
        logging.info(f"{out}: already done")
        return json.loads((out / "summary.json").read_text())

    tok = _Tokenizer(args.bpemodel)
    held: Dict[str, str] = {}
    for path in args.exclude:
        for t in transcripts(path):
            held.setdefault(t, str(path))
    sources = [(p, read_kaldi_text) for p in args.text] + [(p, read_plain_text) for p in args.plain]
    summary: Dict = {
        "sources": {},
        "excluded_sets": [str(p) for p in args.exclude],
        "max_tokens": args.max_tokens,
    }
    seen_ids: Set[str] = set()
    started = time.monotonic()
    with contextlib.ExitStack() as outputs:  # committed together, only if some sentence is kept
        ftext, fshape, frej = (
            outputs.enter_context(atomic_open(out / name))
            for name in ("text", "text_shape.bpe", "rejected.tsv")
        )
        for path, reader in sources:
            reasons: Counter = Counter()
            kept = read = 0
            batch: List[Tuple[int, str, str]] = []

            def flush(batch=batch, reasons=reasons, path=path) -> None:  # this source's
                nonlocal kept
                if not batch:
                    return
                for (n, uid, sent), (length, unk) in zip(batch, tok.lengths([b[2] for b in batch])):
                    if unk:
                        key = "unknown_characters"
                        reason = f"characters the tokenizer cannot spell: {_unknown_chars(tok.sp, sent)!r}"
                    elif length > args.max_tokens:
                        key, reason = "too_long", f"{length} tokens > --max_tokens {args.max_tokens}"
                    else:
                        ftext.write(f"{uid} {sent}\n")
                        fshape.write(f"{uid} {length}\n")
                        kept += 1
                        continue
                    reasons[key] += 1
                    frej.write(f"{path}:{n}\t{reason}\n")
                batch.clear()

            for n, uid, sent in reader(path):
                read += 1
                key = reason = None
                if uid is None or not sent:
                    key = "empty"
                    reason = "empty line" if uid is None else f"utterance '{uid}' has no text"
                elif sent in held:
                    key, reason = "held_out_sentence", f"equals a transcript of {held[sent]}"
                elif uid in seen_ids:
                    raise LMTextError(f"{path}:{n}: id '{uid}' occurs twice in the LM text sources")
                if key is not None:
                    reasons[key] += 1
                    frej.write(f"{path}:{n}\t{reason}\n")
                    continue
                seen_ids.add(uid)
                batch.append((n, uid, sent))
                if len(batch) >= CHUNK:
                    flush()
                    if read % (50 * CHUNK) == 0:
                        logging.info(
                            f"{path}: {read} lines, {kept} kept ({time.monotonic() - started:.0f} s)"
                        )
            flush()
            rejected = sum(reasons.values())
            if kept + rejected != read:
                raise AssertionError(f"{path}: {read} lines read but {kept} kept + {rejected} rejected")
            summary["sources"][str(path)] = {
                "read": read,
                "kept": kept,
                "rejected": rejected,
                "rejected_by_reason": dict(reasons),
            }
            logging.info(f"{path}: {read} lines: {kept} kept, {rejected} rejected {dict(reasons)}")
        total = sum(s["kept"] for s in summary["sources"].values())
        if total == 0:
            raise LMTextError(
                f"no LM training sentence kept from {[str(p) for p, _ in sources]} "
                f"(see {out / 'rejected.tsv'})"
            )
    summary["kept"] = total

    if args.valid_text is not None:
        rows = [(uid, t) for _, uid, t in read_kaldi_text(args.valid_text) if uid and t]
        lengths = tok.lengths([t for _, t in rows])
        write_text_atomic(
            out / "valid_shape.bpe",
            "".join(f"{uid} {length}\n" for (uid, _), (length, _) in zip(rows, lengths)),
        )
        summary["valid"] = {"text": str(args.valid_text), "sentences": len(rows)}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_stamp(done, stamp)
    return summary


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_ext.bin.lm_text",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--bpemodel", type=Path, required=True, help="sentencepiece model (stage 3)")
    p.add_argument(
        "--text", type=Path, action="append", default=[], help="Kaldi text file to include (repeatable)"
    )
    p.add_argument(
        "--plain",
        type=Path,
        action="append",
        default=[],
        help="one-sentence-per-line corpus, .gz allowed (repeatable)",
    )
    p.add_argument(
        "--exclude",
        type=Path,
        action="append",
        default=[],
        help="Kaldi text whose sentences must not be LM training text (repeatable)",
    )
    p.add_argument("--valid_text", type=Path, default=None, help="Kaldi text for the LM's validation")
    p.add_argument("--max_tokens", type=int, default=600, help="longer sentences are rejected")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = get_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (lm_text) %(message)s")
    if not args.text and not args.plain:
        p.error("give at least one --text or --plain source")
    for opt, paths in (
        ("--text", args.text),
        ("--plain", args.plain),
        ("--exclude", args.exclude),
        ("--valid_text", [args.valid_text] if args.valid_text else []),
        ("--bpemodel", [args.bpemodel]),
    ):
        for path in paths:
            if not path.is_file():
                p.error(f"{opt} {path}: no such file")
    if args.max_tokens < 1:
        p.error(f"--max_tokens must be >= 1, got {args.max_tokens}")
    try:
        s = build(args)
    except LMTextError as e:
        print(f"lm_text: error: {e}", file=sys.stderr)
        return 2
    print(
        f"lm_text: {s['kept']} sentences in {args.out_dir / 'text'}; rejected lines with "
        f"reasons in {args.out_dir / 'rejected.tsv'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
