"""The LM text: a text-only language-model corpus in LibriSpeech's format.

``librispeech-lm-norm.txt.gz`` stands in for LibriSpeech's OpenSLR 11 corpus: one
upper-case sentence per line, no ids, gzipped. Guarantees:

* no dev or test sentence is LM training text: draws equal to a dev/test transcript of
  the plan are skipped (the grammar regenerates one in about 8,000 draws);
* it shares only the grammar with the audio: its own random stream ("lmtext"), 20
  sentences per "chapter" with its own recurring characters, as book text shares only the
  language with read speech; training transcripts may recur;
* deterministic and byte-reproducible: the gzip header holds no file name and mtime 0.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from typing import Sequence

from .atomic import write_atomic
from .common import TEST_SUBSETS, random_stream
from .grammar import SentenceGenerator, chapter_cast
from .plan import CorpusPlan

# Text-only language-model corpus, named and formatted like LibriSpeech's
# (OpenSLR 11: librispeech-lm-norm.txt.gz, one upper-case sentence per line, no ids).
LM_TEXT = "librispeech-lm-norm.txt.gz"
LM_SENTENCES = 100_000  # at --scale 1; scaled like the subsets, at least LM_MIN_SENTENCES
LM_MIN_SENTENCES = 2_000


def lm_sentences(plan: CorpusPlan) -> list[str]:
    """The text-only LM corpus of ``plan``: sentences from the same grammar with their own
    random stream (like LibriSpeech's LM text, drawn from other books than the audio), never a
    dev or test transcript of the plan (the grammar can regenerate one; those draws are
    skipped). Training transcripts may recur, as book text recurs in the real LM corpus."""
    held = {u.transcript for u in plan.utterances if u.subset in TEST_SUBSETS}
    rng = random_stream("lmtext", plan.seed)
    n = max(LM_MIN_SENTENCES, round(LM_SENTENCES * plan.scale))
    out: list[str] = []
    while len(out) < n:
        gen = SentenceGenerator(rng, cast=chapter_cast(rng))  # a "chapter" of 20 sentences
        for _ in range(20):
            transcript = " ".join(gen.sentence()[1])
            if transcript not in held:
                out.append(transcript)
    return out[:n]


def write_lm_text(path: Path, sentences: Sequence[str]) -> None:
    """Write ``sentences`` to ``path`` gzipped, one a line, atomically and reproducibly."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
            f.write("".join(s + "\n" for s in sentences).encode())

    write_atomic(path, write)


def lm_record(plan: CorpusPlan, sentences: Sequence[str]) -> dict:
    """The manifest's "lm_text" entry: size, vocabulary, test OOV rate w.r.t. the LM text."""
    lm_words = Counter(w for t in sentences for w in t.split())
    return {
        "file": LM_TEXT,
        "sentences": len(sentences),
        "words": sum(lm_words.values()),
        "distinct_words": len(lm_words),
        "test_oov_token_rate": _test_oov_rate(plan, set(lm_words)),
    }


def _test_oov_rate(plan: CorpusPlan, vocab: set[str]) -> float:
    test = [w for u in plan.utterances if u.subset in TEST_SUBSETS for w in u.words]
    return round(sum(w not in vocab for w in test) / max(1, len(test)), 5)
