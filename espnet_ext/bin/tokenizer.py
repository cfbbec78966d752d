"""Stage 3: train a sentencepiece unigram model and write the ESPnet token list.

    python -m espnet_ext.bin.tokenizer --text data/train/text --out_dir DIR --vocab_size 256

Writes ``DIR/bpe.model`` and ``DIR/tokens.txt`` (``<blank>``, ``<unk>``, the pieces in
order of frequency on the training text, ``<sos/eos>``), as ESPnet's recipe template does
with ``spm_train`` and ``espnet2.bin.tokenize_text --write_vocabulary true``. A re-run with
the same text and options changes nothing.
"""

import argparse
import collections
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from espnet_ext.utils.atomic import write_text_atomic
from espnet_ext.utils.kaldi_table import iter_rows
from espnet_ext.utils.stamps import DONE_FILE, json_digest, stamp_matches, write_stamp


def read_transcripts(text: Path) -> List[str]:
    lines = []
    for row in iter_rows(text, skip_blank=False):
        if not row.key:
            raise ValueError(f"{text}:{row.lineno}: empty line")
        if not row.value:
            raise ValueError(f"{text}:{row.lineno}: utterance '{row.key}' has no transcript")
        lines.append(row.value)
    if not lines:
        raise ValueError(f"{text}: no transcripts")
    return lines


def train(text: Path, out_dir: Path, vocab_size: int, model_type: str = "unigram") -> Path:
    import sentencepiece as spm

    sentences = read_transcripts(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = json_digest([sentences, vocab_size, model_type], "sha1")
    done = out_dir / DONE_FILE
    tokens_txt = out_dir / "tokens.txt"
    if stamp_matches(done, fingerprint) and tokens_txt.exists():
        logging.info(f"{out_dir}: already done")
        return tokens_txt

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as tmp:
        tmp.write("\n".join(sentences) + "\n")
    try:
        spm.SentencePieceTrainer.train(
            input=tmp.name,
            model_prefix=str(out_dir / "bpe"),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            input_sentence_size=100_000_000,
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise RuntimeError(f"sentencepiece on {text} with vocab_size={vocab_size}: {e}") from e
    finally:
        os.unlink(tmp.name)

    sp = spm.SentencePieceProcessor(model_file=str(out_dir / "bpe.model"))
    counts = collections.Counter(p for s in sentences for p in sp.encode(s, out_type=str))
    # Pieces never produced on the training text still belong to the model: keep them, last.
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_unknown(i)]
    order = sorted(pieces, key=lambda p: (-counts.get(p, 0), pieces.index(p)))
    write_text_atomic(tokens_txt, "\n".join(["<blank>", "<unk>", *order, "<sos/eos>"]) + "\n")
    write_stamp(done, fingerprint)
    logging.info(f"{out_dir}: {len(order)} pieces + 3 special tokens from {len(sentences)} transcripts")
    return tokens_txt


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, required=True, help="Kaldi text file (utt WORDS...)")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--vocab_size", type=int, required=True)
    p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (tokenizer) %(message)s")
    if not args.text.is_file():
        p.error(f"--text {args.text}: no such file")
    if args.vocab_size < 4:
        p.error(f"--vocab_size {args.vocab_size}: too small")
    train(args.text, args.out_dir, args.vocab_size, args.model_type)


if __name__ == "__main__":
    sys.exit(main())
