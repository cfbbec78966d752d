"""Names every part of the embedded corpus shares: subsets, version, sample rate, errors.

Guarantees: the random streams of the corpus are named here and only here
(``random_stream``), so the plan, the audio parameters and the LM text are reproducible
from ``--seed`` alone and independent of each other; a change of ``GENERATOR_VERSION``
changes every stream, and the corpus bookkeeping refuses to mix the two versions.
"""

from __future__ import annotations

import random

# Bump when the grammar, the voices or the audio processing change: a corpus made by an
# older version is then refused instead of being silently mixed with new files.
GENERATOR_VERSION = 1

SUBSETS = ("unlabeled", "train-clean", "dev-clean", "test-clean", "test-other")
TRAIN_SUBSETS = ("unlabeled", "train-clean")
TEST_SUBSETS = ("dev-clean", "test-clean", "test-other")

SAMPLE_RATE = 16000


class CorpusError(RuntimeError):
    """A configuration or corpus-state problem, reported to the user without a traceback."""


def random_stream(kind: str, seed: int) -> random.Random:
    """The string-seeded stream ``kind`` ("voices", "text", "audio", "lmtext") of ``seed``."""
    return random.Random(f"embedded-corpus/{GENERATOR_VERSION}/{kind}/{seed}")
