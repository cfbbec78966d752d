"""The corpus plan: everything about the corpus except the audio samples.

``build_plan(seed, scale)`` fixes the speakers (voices.py), their chapters, every
utterance's sentence (grammar.py) and its audio randomization (speed jitter, level, noise
level and colour, pauses, noise seed), and the planned durations. Pure Python, no
synthesis, about a second at full size.

Guarantees:

* deterministic: a function of ``seed`` and ``scale`` only, drawn from three independent
  streams (voices, text, audio; see ``common.random_stream``), so the audio does not
  depend on ``--nj`` or on the order of synthesis;
* test sentences never in training: dev and test sentences are generated first and
  every transcript must be new to the corpus, so no sentence occurs twice anywhere and
  no dev/test transcript equals a training one; ``check_disjoint`` checks it again and
  ``check_voice_rules`` checks the voice rules before ``build_plan`` returns;
* every utterance lasts ``MIN_UTT_SEC``-``MAX_UTT_SEC`` by the duration model; a subset's
  target (``SUBSET_MINUTES`` times ``scale``) is split over its speakers and chapters by
  random weights, and each chapter gets sentences until it is at most 2.5 s short of its
  share.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .common import SUBSETS, TEST_SUBSETS, TRAIN_SUBSETS, random_stream
from .grammar import SentenceGenerator, chapter_cast
from .voices import Speaker, assign_voices, check_voice_rules

# Full-size targets: minutes of audio and number of speakers per subset.
SUBSET_MINUTES = {
    "unlabeled": 105.0,
    "train-clean": 40.0,
    "dev-clean": 6.0,
    "test-clean": 7.0,
    "test-other": 7.0,
}
SUBSET_SPEAKERS = {"unlabeled": 40, "train-clean": 24, "dev-clean": 8, "test-clean": 8, "test-other": 8}

# Per-utterance randomization of the audio, drawn while planning.
RATE_JITTER = 0.06  # per utterance, relative
SNR_DB_RANGE = (25.0, 45.0)
LEVEL_DBFS_RANGE = (-30.0, -18.0)
MIN_UTT_SEC, MAX_UTT_SEC = 1.8, 8.5


@dataclass(frozen=True)
class Utterance:
    """One sentence of one chapter, with the per-utterance audio randomization."""

    uid: str
    subset: str
    speaker: int
    chapter: int
    text: str  # what espeak-ng reads (with punctuation)
    words: tuple[str, ...]  # transcript, upper case
    rate: int  # speaker rate with per-utterance jitter (words/min)
    level_dbfs: float  # speech RMS level
    snr_db: float  # additive noise level relative to the speech RMS
    noise_tilt: float  # 0: white noise ... 1: pink noise
    lead_sec: float  # silence (then noise) before the speech
    trail_sec: float  # silence (then noise) after espeak-ng's own trailing pause
    noise_seed: int
    est_sec: float  # planned duration (estimate; the file has the real one)

    @property
    def transcript(self) -> str:
        """The transcript line's text: upper-case words joined by single spaces."""
        return " ".join(self.words)

    @property
    def relpath(self) -> str:
        """The FLAC file, relative to the corpus root."""
        return f"{self.subset}/{self.speaker}/{self.chapter}/{self.uid}.flac"


@dataclass
class CorpusPlan:
    """Speakers and utterances of the corpus ``--seed seed --scale scale``, in subset
    order, then by speaker id (and chapter, utterance id for utterances)."""

    seed: int
    scale: float
    speakers: list[Speaker]
    utterances: list[Utterance]

    def sentences(self) -> dict[str, list[str]]:
        """Transcripts per subset (upper-case words joined by single spaces)."""
        out: dict[str, list[str]] = {s: [] for s in SUBSETS}
        for u in self.utterances:
            out[u.subset].append(u.transcript)
        return out

    def estimated_hours(self) -> dict[str, float]:
        """Planned hours of audio per subset (from ``estimate_seconds``)."""
        out = {s: 0.0 for s in SUBSETS}
        for u in self.utterances:
            out[u.subset] += u.est_sec / 3600
        return out


# Duration model of espeak-ng, fitted on this grammar's sentences over all voices and
# variants (see local/embedded_corpus.md): seconds at 175 words/min
# = A * letters + B * words + C * commas + D, scaled by 175 / rate.
_EST_A, _EST_B, _EST_C, _EST_D = 0.0494, 0.0584, 0.206, 0.415


def estimate_seconds(
    text: str, n_words: int, rate: int, word_gap: int, lead_sec: float, trail_sec: float
) -> float:
    """Planned duration of an utterance (letters, words, commas, speed, pauses)."""
    letters = sum(ch.isalpha() for ch in text)
    speech = _EST_A * letters + _EST_B * n_words + _EST_C * text.count(",") + _EST_D
    return speech * 175.0 / rate + 0.01 * word_gap * n_words + lead_sec + trail_sec


def scaled_count(n: int, scale: float) -> int:
    """Speakers of a subset at ``scale``: sqrt(scale) below 1, linear above, at least 2."""
    return max(2, round(n * min(scale, 1.0) ** 0.5 * max(scale, 1.0)))


def build_plan(seed: int = 1, scale: float = 1.0) -> CorpusPlan:
    """Everything about the corpus except the audio samples: speakers, chapters, sentences,
    per-utterance randomization. Pure Python, deterministic, about a second at full size."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    rng_voice = random_stream("voices", seed)
    rng_text = random_stream("text", seed)
    rng_audio = random_stream("audio", seed)

    counts = {s: scaled_count(SUBSET_SPEAKERS[s], scale) for s in SUBSETS}
    voices = assign_voices(rng_voice, counts)
    total = sum(counts.values())
    speaker_ids = rng_voice.sample(range(14, 9000), total)
    chapter_ids = iter(rng_voice.sample(range(1000, 300000), 3 * total))

    speakers: list[Speaker] = []
    targets: dict[int, list[float]] = {}  # speaker id -> seconds per chapter
    k = 0
    for subset in SUBSETS:
        weights = [rng_voice.uniform(0.75, 1.25) for _ in range(counts[subset])]
        subset_sec = SUBSET_MINUTES[subset] * 60 * scale
        for v, w in zip(voices[subset], weights):
            spk_sec = subset_sec * w / sum(weights)
            n_chap = min(rng_voice.choice((1, 2, 2, 2, 3, 3)), max(1, int(spk_sec // 15)))
            chap_w = [rng_voice.uniform(0.6, 1.4) for _ in range(n_chap)]
            sid = speaker_ids[k]
            k += 1
            chapters = tuple(sorted(next(chapter_ids) for _ in range(n_chap)))
            targets[sid] = [spk_sec * c / sum(chap_w) for c in chap_w]
            speakers.append(Speaker(id=sid, subset=subset, chapters=chapters, **v))
    check_voice_rules(speakers)

    # Sentences: test subsets first, then training; every transcript is new to the corpus,
    # so a test sentence can never appear in training (nor twice anywhere).
    seen: set[str] = set()
    by_subset = {s: [sp for sp in speakers if sp.subset == s] for s in SUBSETS}
    utterances: list[Utterance] = []
    for subset in TEST_SUBSETS + ("train-clean", "unlabeled"):
        for spk in by_subset[subset]:
            for chapter, target in zip(spk.chapters, targets[spk.id]):
                gen = SentenceGenerator(rng_text, cast=chapter_cast(rng_text))
                acc, n = 0.0, 0
                while n == 0 or acc < target - 2.5:
                    utt = _plan_utterance(gen, rng_audio, spk, chapter, n, seen)
                    utterances.append(utt)
                    acc += utt.est_sec
                    n += 1
    check_disjoint(utterances)
    order = {s: i for i, s in enumerate(SUBSETS)}
    utterances.sort(key=lambda u: (order[u.subset], u.speaker, u.chapter, u.uid))
    speakers.sort(key=lambda s: (order[s.subset], s.id))
    return CorpusPlan(seed=seed, scale=scale, speakers=speakers, utterances=utterances)


def _plan_utterance(
    gen: SentenceGenerator, rng: random.Random, spk: Speaker, chapter: int, index: int, seen: set[str]
) -> Utterance:
    rate = round(spk.rate * rng.uniform(1 - RATE_JITTER, 1 + RATE_JITTER))
    lead, trail = rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.2)
    for _ in range(2000):
        text, words = gen.sentence()
        transcript = " ".join(words)
        if transcript in seen:
            continue
        est = estimate_seconds(text, len(words), rate, spk.word_gap, lead, trail)
        if MIN_UTT_SEC <= est <= MAX_UTT_SEC:
            break
    else:
        raise RuntimeError(f"sentence grammar could not fill speaker {spk.id}")
    seen.add(transcript)
    return Utterance(
        uid=f"{spk.id}-{chapter}-{index:04d}",
        subset=spk.subset,
        speaker=spk.id,
        chapter=chapter,
        text=text,
        words=tuple(words),
        rate=rate,
        level_dbfs=round(rng.uniform(*LEVEL_DBFS_RANGE), 2),
        snr_db=round(rng.uniform(*SNR_DB_RANGE), 2),
        noise_tilt=round(rng.random(), 3),
        lead_sec=round(lead, 3),
        trail_sec=round(trail, 3),
        noise_seed=rng.getrandbits(63),
        est_sec=round(est, 3),
    )


def check_disjoint(utterances: Sequence[Utterance]) -> None:
    """Raise if a dev/test transcript is also a training (unlabeled, train-clean) one."""
    train = {u.transcript for u in utterances if u.subset in TRAIN_SUBSETS}
    for u in utterances:
        if u.subset in TEST_SUBSETS and u.transcript in train:
            raise RuntimeError(f"test sentence {u.uid} also occurs in training")


def plan_sentences(seed: int = 1, scale: float = 1.0) -> dict[str, list[str]]:
    """Transcripts per subset of the corpus ``--seed seed --scale scale`` would have,
    computed without synthesis."""
    return build_plan(seed, scale).sentences()


def vocabulary_stats(sentences: dict[str, list[str]]) -> dict:
    """Distinct words overall and per subset, and the test OOV rate w.r.t. train-clean."""
    words = {s: Counter(w for line in lines for w in line.split()) for s, lines in sentences.items()}
    train_vocab = set(words["train-clean"])
    out = {
        "distinct_words": len(set().union(*map(set, words.values()))),
        "distinct_words_per_subset": {s: len(c) for s, c in words.items()},
        "oov_vs_train_clean": {},
    }
    for name, subsets in [(s, (s,)) for s in TEST_SUBSETS] + [("all-test", TEST_SUBSETS)]:
        tokens = sum((words[s] for s in subsets), Counter())
        oov_tok = sum(c for w, c in tokens.items() if w not in train_vocab)
        oov_types = sum(1 for w in tokens if w not in train_vocab)
        out["oov_vs_train_clean"][name] = {
            "token_rate": round(oov_tok / max(1, sum(tokens.values())), 4),
            "type_rate": round(oov_types / max(1, len(tokens)), 4),
        }
    return out
