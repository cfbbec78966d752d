"""Voices of the embedded corpus: which espeak-ng voice reads which subset.

A speaker is an English voice (accent) plus a variant (timbre), with its own speed, pitch
and word gap. Guarantees (``assign_voices`` draws them so, ``check_voice_rules`` raises if
a list of speakers breaks them):

* every subset alternates male and female variants;
* unlabeled and train-clean speakers each have their own voice+variant combination (until
  a huge ``--scale`` exhausts the combinations);
* dev-clean and test-clean ("clean") speakers use combinations of train-clean speakers,
  with a speed at least 10 words/min and a pitch at least 8 away from every training
  speaker with that combination;
* test-other ("other") speakers use only the variants in ``HELD_OUT_VARIANTS``, so their
  combinations are never heard in unlabeled, train-clean or dev-clean.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from .common import TRAIN_SUBSETS

# espeak-ng English voices (accents) and variants (voice timbres) used. Variants in
# HELD_OUT_VARIANTS appear only in test-other.
VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
VARIANT_SEX = {
    "m1": "M",
    "m2": "M",
    "m3": "M",
    "m4": "M",
    "m5": "M",
    "m6": "M",
    "m8": "M",
    "adam": "M",
    "david": "M",
    "edward": "M",
    "benjamin": "M",
    "Andy": "M",
    "robert": "M",
    "max": "M",
    "michel": "M",
    "f1": "F",
    "f2": "F",
    "f3": "F",
    "f5": "F",
    "linda": "F",
    "steph": "F",
    "belinda": "F",
    # held out for test-other
    "m7": "M",
    "paul": "M",
    "f4": "F",
    "Annie": "F",
}
HELD_OUT_VARIANTS = ("m7", "paul", "f4", "Annie")
TRAIN_VARIANTS = tuple(v for v in VARIANT_SEX if v not in HELD_OUT_VARIANTS)

RATE_RANGE = (135, 195)  # espeak-ng words per minute, per speaker
PITCH_RANGE = (25, 75)  # espeak-ng pitch 0-99, per speaker
WORD_GAP_RANGE = (0, 2)  # espeak-ng -g, extra pause between words in 10 ms units


@dataclass(frozen=True)
class Speaker:
    """One synthetic reader: an espeak-ng voice+variant with its own speed, pitch, pauses."""

    id: int
    subset: str
    voice: str
    variant: str
    sex: str
    rate: int
    pitch: int
    word_gap: int
    chapters: tuple[int, ...]

    @property
    def combo(self) -> str:
        """ "voice+variant", the espeak-ng -v argument."""
        return f"{self.voice}+{self.variant}"

    @property
    def name(self) -> str:
        """The NAME column of SPEAKERS.TXT."""
        return f"espeak-ng {self.combo} s{self.rate} p{self.pitch} g{self.word_gap}"


def assign_voices(rng: random.Random, counts: dict[str, int]) -> dict[str, list[dict]]:
    """voice, variant, sex, rate, pitch, gap per speaker; enforces the clean/other rules."""
    pools: dict[str, list[tuple[str, str]]] = {"M": [], "F": []}

    def draw_training(sex: str) -> tuple[str, str]:
        if not pools[sex]:  # refill (only when a huge --scale exhausts the combinations)
            pools[sex] = [(v, var) for v in VOICES for var in TRAIN_VARIANTS if VARIANT_SEX[var] == sex]
            rng.shuffle(pools[sex])
        return pools[sex].pop()

    def prosody() -> dict:
        return {
            "rate": rng.randint(*RATE_RANGE),
            "pitch": rng.randint(*PITCH_RANGE),
            "word_gap": rng.randint(*WORD_GAP_RANGE),
        }

    def alternate(combos: Sequence[tuple[str, str]], n: int) -> list[tuple[str, str]]:
        """n combinations, sexes alternating from a random start, each sex's list cycled."""
        by_sex = {sex: [c for c in combos if VARIANT_SEX[c[1]] == sex] for sex in "MF"}
        for group in by_sex.values():
            rng.shuffle(group)
        start = rng.randint(0, 1)
        picked = []
        for i in range(n):
            sex = "MF"[(i + start) % 2]
            group = by_sex[sex] or by_sex["MF"[(i + start + 1) % 2]]
            picked.append(group[(i // 2) % len(group)])
        return picked

    out: dict[str, list[dict]] = {}
    for subset in TRAIN_SUBSETS:
        out[subset] = []
        start = rng.randint(0, 1)
        for i in range(counts[subset]):
            sex = "MF"[(i + start) % 2]
            voice, variant = draw_training(sex)
            out[subset].append({"voice": voice, "variant": variant, "sex": sex, **prosody()})
    training = out["unlabeled"] + out["train-clean"]

    # dev-clean / test-clean: combinations of train-clean speakers, new speed and pitch.
    labeled_combos = sorted({(s["voice"], s["variant"]) for s in out["train-clean"]})
    for subset in ("dev-clean", "test-clean"):
        out[subset] = []
        for voice, variant in alternate(labeled_combos, counts[subset]):
            same = [s for s in training if (s["voice"], s["variant"]) == (voice, variant)]
            for _ in range(10000):
                p = prosody()
                if all(abs(p["rate"] - s["rate"]) >= 10 and abs(p["pitch"] - s["pitch"]) >= 8 for s in same):
                    break
            else:
                raise RuntimeError(f"no distinct speed/pitch left for {voice}+{variant}")
            out[subset].append({"voice": voice, "variant": variant, "sex": VARIANT_SEX[variant], **p})

    # test-other: variants held out of every training subset and of dev.
    other = [(v, var) for v in VOICES for var in HELD_OUT_VARIANTS]
    out["test-other"] = [
        {"voice": voice, "variant": variant, "sex": VARIANT_SEX[variant], **prosody()}
        for voice, variant in alternate(other, counts["test-other"])
    ]
    return out


def check_voice_rules(speakers: Sequence[Speaker]) -> None:
    """Raise if a test-clean/dev speaker is not a seen combination with new prosody, or a
    test-other speaker's voice+variant combination was used in training or dev."""
    train = [s for s in speakers if s.subset in TRAIN_SUBSETS]
    train_combos = {s.combo for s in train}
    seen = train_combos | {s.combo for s in speakers if s.subset == "dev-clean"}
    for s in speakers:
        if s.subset in ("dev-clean", "test-clean"):
            if s.combo not in train_combos:
                raise RuntimeError(f"{s.subset} speaker {s.id}: {s.combo} unseen in training")
            for t in train:
                if t.combo == s.combo and (t.rate, t.pitch) == (s.rate, s.pitch):
                    raise RuntimeError(f"{s.subset} speaker {s.id} duplicates speaker {t.id}")
        if s.subset == "test-other" and s.combo in seen:
            raise RuntimeError(f"test-other speaker {s.id}: {s.combo} was used in train/dev")
