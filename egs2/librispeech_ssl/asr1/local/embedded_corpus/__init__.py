"""The embedded corpus: English read speech synthesized with espeak-ng, in LibriSpeech layout.

``local/make_embedded_corpus.py`` is its command line; local/embedded_corpus.md describes
the corpus. The parts, each with the guarantees its docstring states:

    lexicon.py    the word lists (data)
    words.py      morphology, numbers, Zipf-weighted samplers, the parsed word lists
    phrases.py    noun phrases, names, places, times, verb groups      } the grammar
    grammar.py    clauses and sentences (SentenceGenerator)             }
    voices.py     espeak-ng voices and the speaker rules (clean / other)
    plan.py       the corpus plan: speakers, chapters, sentences, audio parameters, sizes
    synthesis.py  espeak-ng, resampling, level, noise: one utterance's audio
    lm_text.py    the text-only LM corpus (librispeech-lm-norm.txt.gz)
    corpus.py     the corpus on disk: layout, SPEAKERS.TXT, manifest, idempotence, resume
    atomic.py     the one atomic-write helper every file goes through
    common.py     subsets, generator version, sample rate, random streams, CorpusError

Use without synthesis::

    import sys; sys.path.insert(0, "local")
    import embedded_corpus as ec
    plan = ec.build_plan(seed=1, scale=1.0)
    ec.vocabulary_stats(plan.sentences())
"""

from .common import GENERATOR_VERSION, SAMPLE_RATE, SUBSETS, TEST_SUBSETS, TRAIN_SUBSETS, CorpusError
from .corpus import LOCK, MANIFEST, STARTED, make_corpus
from .grammar import SentenceGenerator
from .lm_text import LM_MIN_SENTENCES, LM_SENTENCES, LM_TEXT, lm_sentences
from .plan import CorpusPlan, Utterance, build_plan, estimate_seconds, plan_sentences, vocabulary_stats
from .synthesis import SynthesisError, render_utterance
from .voices import HELD_OUT_VARIANTS, VARIANT_SEX, VOICES, Speaker, check_voice_rules
from .words import Verb, article, number_words, parse_verb, year_words

__all__ = [
    "GENERATOR_VERSION",
    "SAMPLE_RATE",
    "SUBSETS",
    "TEST_SUBSETS",
    "TRAIN_SUBSETS",
    "CorpusError",
    "LOCK",
    "MANIFEST",
    "STARTED",
    "make_corpus",
    "SentenceGenerator",
    "LM_MIN_SENTENCES",
    "LM_SENTENCES",
    "LM_TEXT",
    "lm_sentences",
    "CorpusPlan",
    "Utterance",
    "build_plan",
    "estimate_seconds",
    "plan_sentences",
    "vocabulary_stats",
    "SynthesisError",
    "render_utterance",
    "HELD_OUT_VARIANTS",
    "VARIANT_SEX",
    "VOICES",
    "Speaker",
    "check_voice_rules",
    "Verb",
    "article",
    "number_words",
    "parse_verb",
    "year_words",
]
