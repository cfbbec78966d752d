#!/usr/bin/env python3
"""Synthesize the embedded English read-speech corpus with espeak-ng, in LibriSpeech layout.

    <out>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac   16 kHz mono PCM_16
    <out>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt         "<id> UPPER WORDS"
    <out>/SPEAKERS.TXT                                                       LibriSpeech format
    <out>/librispeech-lm-norm.txt.gz  text-only LM corpus, LibriSpeech's format (OpenSLR 11)
    <out>/embedded_corpus.json    written last: parameters, per-subset sizes, speakers

Subsets: unlabeled (self-supervised pre-training; its trans.txt exist only because the
layout has them), train-clean (labeled), dev-clean, test-clean, test-other.

Honesty guarantees, enforced here and checked by tests/test_embedded_corpus.py:
  * a dev/test transcript never equals a training (unlabeled, train-clean) transcript;
  * test-clean/dev-clean speakers are new ids on voice+variant combinations of train-clean
    speakers, with a different speed and pitch; test-other speakers use variants held out
    of every training subset and of dev, so their voice+variant combinations are unseen;
  * every utterance gets its own gain, additive noise (25-45 dB SNR) and speed jitter.

Deterministic for a given --seed and --scale; a complete corpus is not rewritten, an
interrupted one resumes (every file is written under a temporary name, then renamed).
See local/embedded_corpus.md.

Usage: make_embedded_corpus.py --out DIR [--seed 1] [--scale 1.0] [--nj 2]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded_corpus import lexicon as lex  # noqa: E402  (package next to this script)

# Bump when the grammar, the voices or the audio processing change: a corpus made by an
# older version is then refused instead of being silently mixed with new files.
GENERATOR_VERSION = 1

SUBSETS = ("unlabeled", "train-clean", "dev-clean", "test-clean", "test-other")
TRAIN_SUBSETS = ("unlabeled", "train-clean")
TEST_SUBSETS = ("dev-clean", "test-clean", "test-other")

# Full-size targets: minutes of audio and number of speakers per subset.
SUBSET_MINUTES = {"unlabeled": 105.0, "train-clean": 40.0, "dev-clean": 6.0,
                  "test-clean": 7.0, "test-other": 7.0}
SUBSET_SPEAKERS = {"unlabeled": 40, "train-clean": 24, "dev-clean": 8,
                   "test-clean": 8, "test-other": 8}

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050

# espeak-ng English voices (accents) and variants (voice timbres) used. Variants in
# HELD_OUT_VARIANTS appear only in test-other.
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
          "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANT_SEX = {
    "m1": "M", "m2": "M", "m3": "M", "m4": "M", "m5": "M", "m6": "M", "m8": "M",
    "adam": "M", "david": "M", "edward": "M", "benjamin": "M", "Andy": "M",
    "robert": "M", "max": "M", "michel": "M",
    "f1": "F", "f2": "F", "f3": "F", "f5": "F", "linda": "F", "steph": "F", "belinda": "F",
    # held out for test-other
    "m7": "M", "paul": "M", "f4": "F", "Annie": "F",
}
HELD_OUT_VARIANTS = ("m7", "paul", "f4", "Annie")
TRAIN_VARIANTS = tuple(v for v in VARIANT_SEX if v not in HELD_OUT_VARIANTS)

RATE_RANGE = (135, 195)       # espeak-ng words per minute, per speaker
PITCH_RANGE = (25, 75)        # espeak-ng pitch 0-99, per speaker
WORD_GAP_RANGE = (0, 2)       # espeak-ng -g, extra pause between words in 10 ms units
RATE_JITTER = 0.06            # per utterance, relative
SNR_DB_RANGE = (25.0, 45.0)
LEVEL_DBFS_RANGE = (-30.0, -18.0)
MIN_UTT_SEC, MAX_UTT_SEC = 1.8, 8.5

# Text-only language-model corpus, named and formatted like LibriSpeech's
# (OpenSLR 11: librispeech-lm-norm.txt.gz, one upper-case sentence per line, no ids).
LM_TEXT = "librispeech-lm-norm.txt.gz"
LM_SENTENCES = 100_000  # at --scale 1; scaled like the subsets, at least LM_MIN_SENTENCES
LM_MIN_SENTENCES = 2_000

MANIFEST = "embedded_corpus.json"
STARTED = ".embedded_corpus.params.json"
LOCK = ".embedded_corpus.lock"


class CorpusError(RuntimeError):
    """A configuration or corpus-state problem, reported to the user without a traceback."""


# ====================================================================== morphology
_VOWELS = "aeiou"


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


@dataclass(frozen=True)
class _Verb:
    base: str
    s3: str
    past: str
    pp: str
    ing: str


def _parse_verb(spec: str) -> _Verb:
    parts = spec.split("/")
    if len(parts) == 5:
        return _Verb(*parts)
    if len(parts) != 1 or not spec.rstrip("*").isalpha():
        raise ValueError(f"verb spec {spec!r}: give one word or five forms joined by '/'")
    word = parts[0]
    double = word.endswith("*")
    base = word.rstrip("*")
    s3 = _plural(base)
    stem = base + base[-1] if double else base
    if base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in _VOWELS:
        past = base[:-1] + "ied"
    else:
        past = stem + "ed"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        ing = base[:-1] + "ing"
    else:
        ing = stem + "ing"
    return _Verb(base, s3, past, past, ing)


@dataclass(frozen=True)
class _Noun:
    sg: str
    pl: str | None  # None: mass noun


def _parse_nouns(entries: Iterable[str]) -> list[_Noun]:
    out = []
    for e in entries:
        sg, _, pl = e.partition("|")
        out.append(_Noun(sg, None if pl == "-" else (pl or _plural(sg))))
    return out


def _article(word: str) -> str:
    w = word.lower()
    if w.startswith(("uni", "use", "usu", "eu", "one", "once")):
        return "a"
    if w.startswith(("hour", "honest", "honor", "heir")) or w[0] in _VOWELS:
        return "an"
    return "a"


def number_words(n: int, *, rng: random.Random | None = None) -> list[str]:
    """English words for 0 <= n < 10000, LibriSpeech style ("two hundred and five")."""
    if not 0 <= n < 10000:
        raise ValueError(f"number {n} out of range")
    if n < 20:
        return [lex.ONES[n]]
    if n < 100:
        return [lex.TENS[n // 10]] + ([lex.ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        head = [lex.ONES[n // 100], "hundred"]
        if n % 100 == 0:
            return head
        use_and = rng.random() < 0.5 if rng is not None else True
        return head + (["and"] if use_and else []) + number_words(n % 100)
    head = number_words(n // 1000) + ["thousand"]
    return head + (number_words(n % 1000, rng=rng) if n % 1000 else [])


def _year_words(year: int) -> list[str]:
    century, rest = divmod(year, 100)
    if rest == 0:
        return number_words(century) + ["hundred"]
    if rest < 10:
        return number_words(century) + ["oh", lex.ONES[rest]]
    return number_words(century) + number_words(rest)


# ====================================================================== grammar
class _Pool:
    """Sampler over a list ordered from common to rare. Weight of rank i: 1 / (i + 2)^alpha
    in the head (the first ``head`` share of the list), times ``tail`` beyond it, so the
    tail words are rare: they fill the vocabulary of the large unlabeled subset and make a
    few percent of test words unseen in train-clean, as in real read speech."""

    def __init__(self, items: Sequence, alpha: float = 0.6, head: float = 0.35,
                 tail: float = 0.03) -> None:
        self.items = list(items)
        n_head = max(4, head * len(self.items))
        weights = [(1.0 if i < n_head else tail) / (i + 2) ** alpha
                   for i in range(len(self.items))]
        self.cum = list(np.cumsum(weights))

    def pick(self, rng: random.Random):
        return rng.choices(self.items, cum_weights=self.cum, k=1)[0]


@dataclass(frozen=True)
class _NP:
    words: tuple[str, ...]
    person: int = 3
    plural: bool = False


_SUBJECT_PRONOUNS = (("I", 1, False), ("you", 2, False), ("he", 3, False),
                     ("she", 3, False), ("we", 1, True), ("they", 3, True))
_OBJECT_PRONOUNS = ("me", "you", "him", "her", "us", "them")
_POSSESSIVES = ("my", "his", "her", "our", "their", "your")


class _Lexicon:
    """Parsed word lists (built once per process)."""

    def __init__(self) -> None:
        self.nouns = {cat: _Pool(_parse_nouns(getattr(lex, cat)))
                      for cat in ("PERSON", "OCCUPATION", "KIN", "ANIMAL", "FOOD", "DRINK",
                                  "THING", "CLOTHING", "TEXT", "MUSIC", "PLACE", "BUILDING",
                                  "VEHICLE", "ABSTRACT", "PLANT", "NATURE")}
        general = lex.ADJ_THING
        self.adjectives = {
            "PERSON": _Pool(lex.ADJ_PERSON), "ANIMAL": _Pool(lex.ADJ_ANIMAL),
            "FOOD": _Pool(lex.ADJ_FOOD), "DRINK": _Pool(["hot", "cold", "warm", "fresh",
                                                         "sweet", "bitter", "strong"]),
            "THING": _Pool(general), "CLOTHING": _Pool(general), "VEHICLE": _Pool(general),
            "BUILDING": _Pool(general), "PLANT": _Pool(general), "PLACE": _Pool(lex.ADJ_PLACE),
            "TEXT": _Pool(lex.ADJ_ABSTRACT), "ABSTRACT": _Pool(lex.ADJ_ABSTRACT),
            "MUSIC": _Pool(["sad", "happy", "old", "sweet", "strange", "beautiful", "lovely",
                            "cheerful", "gentle", "quiet", "loud", "simple", "famous", "long"]),
            "NATURE": _Pool(["cold", "warm", "strong", "gentle", "bright", "dark", "heavy"]),
        }
        self.colors = _Pool(lex.ADJ_COLOR)
        self.transitive = []
        for spec, frame in lex.TRANSITIVE.items():
            cats = frame.split()
            self.transitive.append((_parse_verb(spec), tuple(c for c in cats if c != "+A"),
                                    "+A" in cats))
        self.transitive_pool = _Pool(self.transitive)
        self.intransitive = _Pool([_parse_verb(s) for s in lex.INTRANSITIVE])
        self.motion = _Pool([_parse_verb(s) for s in lex.MOTION])
        self.say = _Pool([_parse_verb(s) for s in lex.SAY])
        self.control = _Pool([_parse_verb(s) for s in lex.CONTROL])
        self.give = [_parse_verb(s) for s in ("give/gives/gave/given/giving",
                                              "send/sends/sent/sent/sending",
                                              "show/shows/showed/shown/showing", "offer",
                                              "lend/lends/lent/lent/lending", "hand",
                                              "bring/brings/brought/brought/bringing")]
        self.male = _Pool(lex.NAMES_MALE)
        self.female = _Pool(lex.NAMES_FEMALE)
        self.surnames = _Pool(lex.SURNAMES)
        self.cities = _Pool(lex.CITIES)
        self.manner = _Pool(lex.ADVERB_MANNER)
        self.freq = _Pool(lex.ADVERB_FREQ)
        self.prep = _Pool(lex.LOC_PREP)
        self.units = _Pool(lex.UNITS)
        self.openers = _Pool(lex.OPENERS)


_LEX: _Lexicon | None = None


def _lexicon() -> _Lexicon:
    global _LEX
    if _LEX is None:
        _LEX = _Lexicon()
    return _LEX


class SentenceGenerator:
    """Seeded template grammar: declaratives, questions, imperatives, subordinate clauses.

    ``sentence()`` returns (text for espeak-ng with punctuation, transcript words).
    A chapter's recurring characters (``cast``) are about a third of the names used.
    """

    def __init__(self, rng: random.Random, cast: Sequence[str] = ()) -> None:
        self.rng = rng
        self.lx = _lexicon()
        self.cast = list(cast)

    # ---------------------------------------------------------------- small pieces
    def _p(self, prob: float) -> bool:
        return self.rng.random() < prob

    def _name(self) -> list[str]:
        r = self.rng
        if self.cast and self._p(0.35):
            return [r.choice(self.cast)]
        if self._p(0.12):
            title = r.choice(("mister", "missus", "miss", "doctor", "captain"))
            return [title, self.lx.surnames.pick(r)]
        name = (self.lx.male if self._p(0.5) else self.lx.female).pick(r)
        if self._p(0.05):  # "Mary's brother"
            return [name + "'s", self.lx.nouns["KIN"].pick(r).sg]
        return [name]

    def _adjs(self, cat: str) -> list[str]:
        r = self.rng
        out = []
        if self._p(0.42):
            out.append(self.lx.adjectives[cat].pick(r))
        if cat in ("THING", "CLOTHING", "VEHICLE", "BUILDING", "PLANT") and self._p(0.18):
            color = self.lx.colors.pick(r)
            if color not in out:
                out.append(color)
        return out

    def _number(self, low: int, high: int) -> list[str]:
        return number_words(self.rng.randint(low, high), rng=self.rng)

    def _count(self) -> list[str]:
        r = self.rng
        u = r.random()
        if u < 0.6:
            return self._number(2, 12)
        if u < 0.85:
            return self._number(13, 99)
        return self._number(100, 999)

    def noun_phrase(self, cat: str, *, plural: bool | None = None) -> _NP:
        r = self.rng
        noun = self.lx.nouns[cat].pick(r)
        if noun.pl is None:
            plural = False
        elif plural is None:
            plural = self._p(0.3)
        adjs = self._adjs(cat)
        head = noun.pl if plural else noun.sg
        body = adjs + [head]
        u = r.random()
        if noun.pl is None:  # mass noun
            det = ["the"] if u < 0.55 else ["some"] if u < 0.75 else [r.choice(_POSSESSIVES)]
        elif plural:
            if u < 0.42:
                det = ["the"]
            elif u < 0.57:
                det = [r.choice(_POSSESSIVES)]
            elif u < 0.77:
                det = self._count()
            elif u < 0.87:
                det = [r.choice(("some", "many", "several", "a few", "all the", "both"))]
            else:
                det = [r.choice(("these", "those"))]
        else:
            if u < 0.48:
                det = ["the"]
            elif u < 0.72:
                det = [_article(body[0])]
            elif u < 0.88:
                det = [r.choice(_POSSESSIVES)]
            elif u < 0.95:
                det = [r.choice(("this", "that"))]
            else:
                det = [r.choice(("every", "each", "another"))]
        words = [w for d in det for w in d.split()] + body
        if cat == "PERSON" and not plural and self._p(0.06):  # "the baker's wife"
            words = words[:-1] + [words[-1] + "'s", self.lx.nouns["KIN"].pick(r).sg]
        return _NP(tuple(words), 3, plural)

    def person(self, *, pronoun_ok: bool = True, role: str = "subj") -> _NP:
        r = self.rng
        u = r.random()
        if u < 0.3:
            return _NP(tuple(self._name()))
        if u < 0.5 and pronoun_ok:
            if role == "subj":
                word, person, plural = r.choice(_SUBJECT_PRONOUNS)
                return _NP((word,), person, plural)
            return _NP((r.choice(_OBJECT_PRONOUNS),), 3, False)
        return self.noun_phrase("PERSON")

    def subject(self, animal_ok: bool = False) -> _NP:
        if animal_ok and self._p(0.3):
            return self.noun_phrase("ANIMAL")
        return self.person()

    def object_of(self, cats: Sequence[str]) -> _NP:
        cat = self.rng.choice(cats)
        if cat == "PERSON":
            return self.person(role="obj")
        return self.noun_phrase(cat)

    def place(self) -> list[str]:
        if self._p(0.12):
            return [self.lx.cities.pick(self.rng)]
        return list(self.noun_phrase("PLACE", plural=False).words)

    def loc_pp(self) -> list[str]:
        prep = self.lx.prep.pick(self.rng)
        cats = ("PLACE", "PLACE", "PLACE", "BUILDING")
        if prep in ("near", "behind", "beside", "under", "by"):
            cats += ("PLANT", "THING", "VEHICLE")
        cat = self.rng.choice(cats)
        return [prep] + list(self.noun_phrase(cat, plural=False).words)

    def time_phrase(self) -> list[str]:
        r = self.rng
        u = r.random()
        if u < 0.12:
            return [r.choice(("yesterday", "today", "tomorrow", "tonight", "soon", "later",
                              "early", "again", "at once", "at last", "long ago"))]
        if u < 0.22:
            return [r.choice(("last", "this", "next", "every")),
                    r.choice(lex.PARTS_OF_DAY + ["night", "week", "month", "year", "summer",
                                                 "winter", "day"])]
        if u < 0.32:
            return ["on", r.choice(lex.DAYS)] + ([r.choice(lex.PARTS_OF_DAY)]
                                                 if self._p(0.3) else [])
        if u < 0.42:
            return ["in", r.choice(lex.MONTHS + lex.SEASONS)] if self._p(0.6) else \
                   ["in", "the", r.choice(lex.SEASONS + lex.PARTS_OF_DAY)]
        if u < 0.54:
            hour = number_words(r.randint(1, 12))
            v = r.random()
            if v < 0.5:
                return ["at"] + hour + ["o'clock"]
            if v < 0.75:
                return ["at", "half", "past"] + hour
            return ["at", "a", "quarter", r.choice(("to", "past"))] + hour
        if u < 0.62:
            return [r.choice(("before", "after")), r.choice(lex.MEALS)]
        if u < 0.7:
            return ["at", r.choice(("noon", "midnight", "dawn", "dusk", "sunrise",
                                    "sunset", "night"))]
        if u < 0.8:
            return self._number(2, 30) + [r.choice(("days", "weeks", "months", "years")),
                                          r.choice(("ago", "later"))]
        if u < 0.88:
            return ["in"] + _year_words(r.randint(1700, 1999))
        if u < 0.94:
            return ["on", "the", r.choice(lex.ORDINALS[:12] + lex.ORDINALS[19:]), "of",
                    r.choice(lex.MONTHS)]
        return ["for"] + self._number(2, 20) + [r.choice(("days", "hours", "weeks",
                                                          "minutes", "years"))]

    # ---------------------------------------------------------------- verb groups
    def _finite(self, verb: _Verb, subj: _NP, tense: str) -> list[str]:
        sg3 = subj.person == 3 and not subj.plural
        first = subj.person == 1 and not subj.plural
        r = self.rng
        if tense == "past":
            return [verb.past]
        if tense == "present":
            return [verb.s3 if sg3 else verb.base]
        if tense == "past_prog":
            return ["was" if (sg3 or first) else "were", verb.ing]
        if tense == "pres_prog":
            return ["am" if first else "is" if sg3 else "are", verb.ing]
        if tense == "future":
            return ["will", verb.base] if self._p(0.8) else ["is" if sg3 else "am" if first
                                                             else "are", "going", "to",
                                                             verb.base]
        if tense == "perfect":
            return ["has" if sg3 else "have", verb.pp]
        if tense == "past_perfect":
            return ["had", verb.pp]
        if tense == "modal":
            return [r.choice(lex.MODALS), verb.base]
        if tense == "neg_past":
            return ["didn't", verb.base] if self._p(0.5) else ["did", "not", verb.base]
        if tense == "neg_present":
            if self._p(0.5):
                return ["doesn't" if sg3 else "don't", verb.base]
            return ["does" if sg3 else "do", "not", verb.base]
        if tense == "neg_modal":
            return [r.choice(("couldn't", "wouldn't", "won't", "can't", "shouldn't",
                              "could not", "will not", "cannot")), verb.base]
        raise ValueError(tense)

    _TENSES = (("past", 46), ("present", 12), ("past_prog", 7), ("pres_prog", 4),
               ("future", 7), ("perfect", 6), ("past_perfect", 3), ("modal", 7),
               ("neg_past", 4), ("neg_present", 2), ("neg_modal", 2))

    def _tense(self) -> str:
        names, weights = zip(*self._TENSES)
        return self.rng.choices(names, weights=weights, k=1)[0]

    def _finite_be(self, subj: _NP, past: bool) -> list[str]:
        sg3 = subj.person == 3 and not subj.plural
        first = subj.person == 1 and not subj.plural
        if past:
            return ["was" if (sg3 or first) else "were"]
        return ["am" if first else "is" if sg3 else "are"]

    def _tail(self, loc: float = 0.3, manner: float = 0.15, time: float = 0.25) -> list[str]:
        out = []
        if self._p(manner):
            out.append(self.lx.manner.pick(self.rng))
        if self._p(loc):
            out += self.loc_pp()
        if self._p(time):
            out += self.time_phrase()
        return out

    # ---------------------------------------------------------------- clauses
    def transitive_clause(self, tense: str | None = None) -> list[str]:
        verb, cats, animal_ok = self.lx.transitive_pool.pick(self.rng)
        subj = self.subject(animal_ok)
        tense = tense or self._tense()
        vp = self._finite(verb, subj, tense)
        if self._p(0.06) and tense == "past":
            vp = [self.lx.freq.pick(self.rng), verb.past]
        return list(subj.words) + vp + list(self.object_of(cats).words) + self._tail()

    def give_clause(self) -> list[str]:
        r = self.rng
        verb = r.choice(self.lx.give)
        subj = self.person()
        thing = self.object_of(("THING", "FOOD", "TEXT", "THING"))
        to = self.person(role="obj")
        vp = self._finite(verb, subj, self._tense())
        if self._p(0.5):
            return list(subj.words) + vp + list(to.words) + list(thing.words) + self._tail(0.1)
        return list(subj.words) + vp + list(thing.words) + ["to"] + list(to.words) + \
            self._tail(0.1)

    def intransitive_clause(self) -> list[str]:
        verb = self.lx.intransitive.pick(self.rng)
        subj = self.subject(animal_ok=True)
        return list(subj.words) + self._finite(verb, subj, self._tense()) + \
            self._tail(loc=0.6, manner=0.3, time=0.35)

    def motion_clause(self) -> list[str]:
        r = self.rng
        verb = self.lx.motion.pick(r)
        subj = self.subject(animal_ok=verb.base in ("run", "walk", "fly", "wander", "hurry"))
        dest = ["home"] if self._p(0.08) else ["to"] + self.place()
        out = list(subj.words) + self._finite(verb, subj, self._tense()) + dest
        if self._p(0.25):
            out += ["with"] + list(self.person(role="obj").words)
        if self._p(0.2):
            out += ["by", r.choice(("boat", "train", "bus", "car", "coach", "ship"))]
        return out + self._tail(loc=0.0, manner=0.15, time=0.4)

    def copula_clause(self) -> list[str]:
        r = self.rng
        u = r.random()
        past = self._p(0.65)
        if u < 0.35:  # "the baker was tired" / "the old mill is quiet"
            cat = r.choice(("PERSON", "ANIMAL", "PLACE", "THING", "FOOD", "NATURE"))
            subj = self.person(pronoun_ok=True) if cat == "PERSON" else self.noun_phrase(cat)
            pool = self.lx.adjectives["PERSON" if cat == "PERSON" else cat]
            adj = [pool.pick(r)]
            if self._p(0.3):
                second = pool.pick(r)
                if second != adj[0]:
                    adj += ["and", second]
            degree = [r.choice(("very", "quite", "rather", "too", "so"))] if self._p(0.25) \
                else []
            return list(subj.words) + self._finite_be(subj, past) + degree + adj + \
                self._tail(loc=0.15, manner=0.0, time=0.2)
        if u < 0.6:  # "there were five horses in the barn"
            cat = r.choice(("ANIMAL", "PERSON", "THING", "FOOD", "VEHICLE", "PLANT"))
            np_ = self.noun_phrase(cat)
            be = ("was" if past else "is") if not np_.plural else ("were" if past else "are")
            return ["there", be] + list(np_.words) + self.loc_pp() + \
                self._tail(loc=0.0, manner=0.0, time=0.3)
        if u < 0.8:  # "Mary was a kind teacher"
            subj = self.person(pronoun_ok=False)
            noun = self.lx.nouns["OCCUPATION"].pick(r)
            adjs = self._adjs("PERSON")
            if subj.plural and noun.pl:
                pred = adjs + [noun.pl]
            else:
                pred = [_article((adjs + [noun.sg])[0])] + adjs + [noun.sg]
            subj = _NP(subj.words, 3, subj.plural)
            return list(subj.words) + self._finite_be(subj, past) + pred + \
                self._tail(loc=0.2, manner=0.0, time=0.1)
        # measures: "the bridge was two hundred feet long", "the journey took three days"
        v = r.random()
        if v < 0.35:
            np_ = self.noun_phrase(r.choice(("PLACE", "BUILDING", "VEHICLE", "THING")),
                                   plural=False)
            return list(np_.words) + ["was" if past else "is"] + self._number(2, 900) + \
                [r.choice(("feet", "yards", "miles")), r.choice(("long", "high", "wide",
                                                                  "away", "deep"))]
        if v < 0.7:
            subj = self.person()
            thing = self.noun_phrase(r.choice(("THING", "FOOD", "ANIMAL", "CLOTHING")))
            return list(subj.words) + ["paid"] + self._number(2, 99) + \
                [r.choice(("dollars", "pounds", "shillings", "pennies")), "for"] + \
                list(thing.words)
        trip = self.noun_phrase("ABSTRACT", plural=False)
        return list(trip.words) + [r.choice(("took", "lasted"))] + self._number(2, 40) + \
            [r.choice(("days", "hours", "weeks", "minutes", "years"))]

    def clause(self) -> list[str]:
        u = self.rng.random()
        if u < 0.42:
            return self.transitive_clause()
        if u < 0.52:
            return self.give_clause()
        if u < 0.66:
            return self.intransitive_clause()
        if u < 0.8:
            return self.motion_clause()
        return self.copula_clause()

    def short_clause(self) -> list[str]:
        for _ in range(20):
            c = self.clause()
            if len(c) <= 9:
                return c
        return c

    def say_sentence(self) -> list[str]:
        verb = self.lx.say.pick(self.rng)
        subj = self.person()
        tense = self.rng.choice(("past", "past", "past", "present", "perfect"))
        that = ["that"] if self._p(0.6) else []
        return list(subj.words) + self._finite(verb, subj, tense) + that + self.short_clause()

    def control_sentence(self) -> list[str]:
        r = self.rng
        verb = self.lx.control.pick(r)
        subj = self.person()
        tv, cats, _ = self.lx.transitive_pool.pick(r)
        tense = r.choice(("past", "past", "present", "neg_past"))
        return list(subj.words) + self._finite(verb, subj, tense) + ["to", tv.base] + \
            list(self.object_of(cats).words) + self._tail(loc=0.2, manner=0.0, time=0.2)

    def relative_sentence(self) -> list[str]:
        r = self.rng
        head = self.noun_phrase(r.choice(("PERSON", "PERSON", "ANIMAL")), plural=False)
        rel_verb, cats, _ = self.lx.transitive_pool.pick(r)
        if self._p(0.5):
            rel = [rel_verb.past] + list(self.object_of(cats).words)
        else:
            iv = self.lx.intransitive.pick(r)
            rel = [iv.past] + self.loc_pp()
        verb, cats2, _ = self.lx.transitive_pool.pick(r)
        return list(head.words) + [r.choice(("who", "that"))] + rel + [verb.past] + \
            list(self.object_of(cats2).words)

    def question(self) -> list[str]:
        r = self.rng
        u = r.random()
        verb, cats, animal_ok = self.lx.transitive_pool.pick(r)
        subj = self.subject(animal_ok)
        sg3 = subj.person == 3 and not subj.plural
        obj = list(self.object_of(cats).words)
        if u < 0.22:  # yes/no
            aux = r.choice(("did", "did", "does" if sg3 else "do", "will", "can", "could",
                            "should", "would"))
            return [aux] + list(subj.words) + [verb.base] + obj + self._tail(0.2, 0, 0.2)
        if u < 0.45:  # where/when/why/how did ...
            wh = r.choice(("where", "when", "why", "how"))
            aux = r.choice(("did", "does" if sg3 else "do", "will", "can", "should"))
            return [wh, aux] + list(subj.words) + [verb.base] + obj
        if u < 0.58:  # who opened the door
            return ["who", verb.past if self._p(0.7) else verb.s3] + obj + self._tail(0.2, 0, 0.2)
        if u < 0.72:  # how many apples did ... / which book did ...
            cat = r.choice([c for c in cats if c != "PERSON"] or ["THING"])
            noun = self.lx.nouns[cat].pick(r)
            if noun.pl is None:
                lead = ["how", "much", noun.sg]
            elif self._p(0.6):
                lead = ["how", "many", noun.pl]
            else:
                lead = [r.choice(("which", "whose")), noun.sg]
            return lead + ["did"] + list(subj.words) + [verb.base] + self._tail(0.3, 0, 0.3)
        if u < 0.86:  # is the river deep
            cat = r.choice(("PLACE", "THING", "ANIMAL", "FOOD"))
            np_ = self.noun_phrase(cat)
            be = r.choice(("was", "is")) if not np_.plural else r.choice(("were", "are"))
            return [be] + list(np_.words) + [self.lx.adjectives[cat].pick(r)] + \
                (["enough"] if self._p(0.1) else [])
        # what did you find in the garden
        return ["what", r.choice(("did", "will", "can"))] + list(subj.words) + [verb.base] + \
            self.loc_pp()

    def imperative(self) -> list[str]:
        r = self.rng
        u = r.random()
        verb, cats, _ = self.lx.transitive_pool.pick(r)
        obj = list(self.object_of(cats).words)
        if u < 0.45:
            return (["please"] if self._p(0.4) else []) + [verb.base] + obj + \
                self._tail(0.4, 0.2, 0.2)
        if u < 0.7:
            return [r.choice(("don't", "do not", "never"))] + [verb.base] + obj + \
                self._tail(0.2, 0.0, 0.3)
        if u < 0.85:
            return ["let", "us", "go", "to"] + self.place() + self._tail(0.0, 0.0, 0.4)
        return [r.choice(("bring", "show", "give", "hand", "send"))] + \
            [r.choice(("me", "us", "him", "her", "them"))] + \
            list(self.object_of(("THING", "FOOD", "TEXT")).words)

    def sentence(self) -> tuple[str, list[str]]:
        """One sentence: (text with punctuation for espeak-ng, transcript words upper case)."""
        r = self.rng
        u = r.random()
        question = False
        comma_after: int | None = None
        if u < 0.36:
            words = self.clause()
        elif u < 0.5:  # two clauses
            first = self.short_clause()
            conj = r.choice(lex.CONJ)
            words = first + [conj] + self.short_clause()
            comma_after = len(first) if conj in ("but", "so", "although") else None
        elif u < 0.58:
            words = self.say_sentence()
        elif u < 0.65:
            words = self.control_sentence()
        elif u < 0.7:
            words = self.relative_sentence()
        elif u < 0.82:
            words, question = self.question(), True
        elif u < 0.88:
            words = self.imperative()
        elif u < 0.94:  # fronted time or opener: "On monday, ..."
            front = self.time_phrase() if self._p(0.6) else \
                self.lx.openers.pick(r).split()
            words = front + self.clause()
            comma_after = len(front)
        else:  # subordinate clause first: "When the rain stopped, ..."
            sub = self.short_clause()
            words = [r.choice(("when", "after", "before", "because", "although", "while",
                               "if"))] + sub + self.short_clause()
            comma_after = len(sub) + 1
        words = [w for token in words for w in token.split()]
        return _spoken_text(words, question, comma_after), _transcript_words(words)


def _spoken_text(words: list[str], question: bool, comma_after: int | None) -> str:
    shown = list(words)
    if comma_after is not None and 0 < comma_after < len(shown):
        shown[comma_after - 1] += ","
    text = " ".join(shown)
    return text[0].upper() + text[1:] + ("?" if question else ".")


_WORD_RE = re.compile(r"^[A-Z]+(?:'[A-Z]*)*$")


def _transcript_words(words: list[str]) -> list[str]:
    out = [w.upper() for w in words]
    for w in out:
        if not _WORD_RE.match(w):
            raise ValueError(f"grammar produced a word that is not transcript-clean: {w!r}")
    return out


# ====================================================================== plan
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
        return f"{self.voice}+{self.variant}"

    @property
    def name(self) -> str:
        return f"espeak-ng {self.combo} s{self.rate} p{self.pitch} g{self.word_gap}"


@dataclass(frozen=True)
class Utterance:
    """One sentence of one chapter, with the per-utterance audio randomization."""

    uid: str
    subset: str
    speaker: int
    chapter: int
    text: str                 # what espeak-ng reads (with punctuation)
    words: tuple[str, ...]    # transcript, upper case
    rate: int                 # speaker rate with per-utterance jitter (words/min)
    level_dbfs: float         # speech RMS level
    snr_db: float             # additive noise level relative to the speech RMS
    noise_tilt: float         # 0: white noise ... 1: pink noise
    lead_sec: float           # silence (then noise) before the speech
    trail_sec: float          # silence (then noise) after espeak-ng's own trailing pause
    noise_seed: int
    est_sec: float            # planned duration (estimate; the file has the real one)

    @property
    def transcript(self) -> str:
        return " ".join(self.words)

    @property
    def relpath(self) -> str:
        return f"{self.subset}/{self.speaker}/{self.chapter}/{self.uid}.flac"


@dataclass
class CorpusPlan:
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
        out = {s: 0.0 for s in SUBSETS}
        for u in self.utterances:
            out[u.subset] += u.est_sec / 3600
        return out


# Duration model of espeak-ng, fitted on this script's sentences over all voices and
# variants (see local/embedded_corpus.md): seconds at 175 words/min
# = A * letters + B * words + C * commas + D, scaled by 175 / rate.
_EST_A, _EST_B, _EST_C, _EST_D = 0.0494, 0.0584, 0.206, 0.415


def estimate_seconds(text: str, n_words: int, rate: int, word_gap: int,
                     lead_sec: float, trail_sec: float) -> float:
    letters = sum(ch.isalpha() for ch in text)
    speech = (_EST_A * letters + _EST_B * n_words + _EST_C * text.count(",") + _EST_D)
    return speech * 175.0 / rate + 0.01 * word_gap * n_words + lead_sec + trail_sec


def _scaled_count(n: int, scale: float) -> int:
    return max(2, round(n * min(scale, 1.0) ** 0.5 * max(scale, 1.0)))


def _assign_voices(rng: random.Random, counts: dict[str, int]) -> dict[str, list[dict]]:
    """voice, variant, sex, rate, pitch, gap per speaker; enforces the clean/other rules."""
    pools: dict[str, list[tuple[str, str]]] = {"M": [], "F": []}

    def draw_training(sex: str) -> tuple[str, str]:
        if not pools[sex]:  # refill (only when a huge --scale exhausts the combinations)
            pools[sex] = [(v, var) for v in VOICES for var in TRAIN_VARIANTS
                          if VARIANT_SEX[var] == sex]
            rng.shuffle(pools[sex])
        return pools[sex].pop()

    def prosody() -> dict:
        return {"rate": rng.randint(*RATE_RANGE), "pitch": rng.randint(*PITCH_RANGE),
                "word_gap": rng.randint(*WORD_GAP_RANGE)}

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
                if all(abs(p["rate"] - s["rate"]) >= 10 and abs(p["pitch"] - s["pitch"]) >= 8
                       for s in same):
                    break
            else:
                raise RuntimeError(f"no distinct speed/pitch left for {voice}+{variant}")
            out[subset].append({"voice": voice, "variant": variant,
                                "sex": VARIANT_SEX[variant], **p})

    # test-other: variants held out of every training subset and of dev.
    other = [(v, var) for v in VOICES for var in HELD_OUT_VARIANTS]
    out["test-other"] = [{"voice": voice, "variant": variant, "sex": VARIANT_SEX[variant],
                          **prosody()}
                         for voice, variant in alternate(other, counts["test-other"])]
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


def build_plan(seed: int = 1, scale: float = 1.0) -> CorpusPlan:
    """Everything about the corpus except the audio samples: speakers, chapters, sentences,
    per-utterance randomization. Pure Python, deterministic, about a second at full size."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    rng_voice = random.Random(f"embedded-corpus/{GENERATOR_VERSION}/voices/{seed}")
    rng_text = random.Random(f"embedded-corpus/{GENERATOR_VERSION}/text/{seed}")
    rng_audio = random.Random(f"embedded-corpus/{GENERATOR_VERSION}/audio/{seed}")

    counts = {s: _scaled_count(SUBSET_SPEAKERS[s], scale) for s in SUBSETS}
    voices = _assign_voices(rng_voice, counts)
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
                gen = SentenceGenerator(rng_text, cast=_chapter_cast(rng_text))
                acc, n = 0.0, 0
                while n == 0 or acc < target - 2.5:
                    utt = _plan_utterance(gen, rng_audio, spk, chapter, n, seen)
                    utterances.append(utt)
                    acc += utt.est_sec
                    n += 1
    _check_disjoint(utterances)
    order = {s: i for i, s in enumerate(SUBSETS)}
    utterances.sort(key=lambda u: (order[u.subset], u.speaker, u.chapter, u.uid))
    speakers.sort(key=lambda s: (order[s.subset], s.id))
    return CorpusPlan(seed=seed, scale=scale, speakers=speakers, utterances=utterances)


def _chapter_cast(rng: random.Random) -> list[str]:
    """Three recurring characters of a chapter (as in a book chapter)."""
    lx = _lexicon()
    cast: list[str] = []
    while len(cast) < 3:
        name = (lx.male if rng.random() < 0.5 else lx.female).pick(rng)
        if name not in cast:
            cast.append(name)
    return cast


def _plan_utterance(gen: SentenceGenerator, rng: random.Random, spk: Speaker, chapter: int,
                    index: int, seen: set[str]) -> Utterance:
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
        uid=f"{spk.id}-{chapter}-{index:04d}", subset=spk.subset, speaker=spk.id,
        chapter=chapter, text=text, words=tuple(words), rate=rate,
        level_dbfs=round(rng.uniform(*LEVEL_DBFS_RANGE), 2),
        snr_db=round(rng.uniform(*SNR_DB_RANGE), 2), noise_tilt=round(rng.random(), 3),
        lead_sec=round(lead, 3), trail_sec=round(trail, 3),
        noise_seed=rng.getrandbits(63), est_sec=round(est, 3))


def _check_disjoint(utterances: Sequence[Utterance]) -> None:
    train = {u.transcript for u in utterances if u.subset in TRAIN_SUBSETS}
    for u in utterances:
        if u.subset in TEST_SUBSETS and u.transcript in train:
            raise RuntimeError(f"test sentence {u.uid} also occurs in training")


def plan_sentences(seed: int = 1, scale: float = 1.0) -> dict[str, list[str]]:
    """Transcripts per subset of the corpus ``--seed seed --scale scale`` would have,
    computed without synthesis."""
    return build_plan(seed, scale).sentences()


def lm_sentences(plan: CorpusPlan) -> list[str]:
    """The text-only LM corpus of ``plan``: sentences from the same grammar with their own
    random stream (like LibriSpeech's LM text, drawn from other books than the audio), never a
    dev or test transcript of the plan (the grammar can regenerate one; those draws are
    skipped). Training transcripts may recur, as book text recurs in the real LM corpus."""
    held = {u.transcript for u in plan.utterances if u.subset in TEST_SUBSETS}
    rng = random.Random(f"embedded-corpus/{GENERATOR_VERSION}/lmtext/{plan.seed}")
    n = max(LM_MIN_SENTENCES, round(LM_SENTENCES * plan.scale))
    out: list[str] = []
    while len(out) < n:
        gen = SentenceGenerator(rng, cast=_chapter_cast(rng))  # a "chapter" of 20 sentences
        for _ in range(20):
            transcript = " ".join(gen.sentence()[1])
            if transcript not in held:
                out.append(transcript)
    return out[:n]


def _write_lm_text_atomic(path: Path, sentences: Sequence[str]) -> None:
    import gzip

    tmp = _tmp_name(path)
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
        f.write("".join(s + "\n" for s in sentences).encode())
    os.replace(tmp, path)


def vocabulary_stats(sentences: dict[str, list[str]]) -> dict:
    """Distinct words overall and per subset, and the test OOV rate w.r.t. train-clean."""
    words = {s: Counter(w for line in lines for w in line.split())
             for s, lines in sentences.items()}
    train_vocab = set(words["train-clean"])
    out = {"distinct_words": len(set().union(*map(set, words.values()))),
           "distinct_words_per_subset": {s: len(c) for s, c in words.items()},
           "oov_vs_train_clean": {}}
    for name, subsets in [(s, (s,)) for s in TEST_SUBSETS] + [("all-test", TEST_SUBSETS)]:
        tokens = sum((words[s] for s in subsets), Counter())
        oov_tok = sum(c for w, c in tokens.items() if w not in train_vocab)
        oov_types = sum(1 for w in tokens if w not in train_vocab)
        out["oov_vs_train_clean"][name] = {
            "token_rate": round(oov_tok / max(1, sum(tokens.values())), 4),
            "type_rate": round(oov_types / max(1, len(tokens)), 4)}
    return out


# ====================================================================== synthesis
class SynthesisError(CorpusError):
    pass


def _parse_wav(raw: bytes, what: str) -> np.ndarray:
    """int16 samples of espeak-ng's --stdout WAV (its size fields may be 'streaming')."""
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise SynthesisError(f"{what}: espeak-ng did not return a WAV stream")
    pos, fmt = 12, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], int.from_bytes(raw[pos + 4:pos + 8], "little")
        if cid == b"fmt ":
            fmt = (int.from_bytes(raw[pos + 10:pos + 12], "little"),
                   int.from_bytes(raw[pos + 12:pos + 16], "little"),
                   int.from_bytes(raw[pos + 22:pos + 24], "little"))
        elif cid == b"data":
            if fmt != (1, ESPEAK_RATE, 16):
                raise SynthesisError(f"{what}: unexpected WAV format (channels, rate, bits)"
                                     f" = {fmt}, wanted (1, {ESPEAK_RATE}, 16)")
            data = raw[pos + 8:]
            return np.frombuffer(data[:len(data) // 2 * 2], dtype="<i2")
        pos += 8 + size + (size & 1)
    raise SynthesisError(f"{what}: no audio data in espeak-ng output")


def _espeak(utt: Utterance, spk: Speaker) -> np.ndarray:
    cmd = ["espeak-ng", "-v", spk.combo, "-s", str(utt.rate), "-p", str(spk.pitch),
           "-g", str(spk.word_gap), "--stdout", "--stdin"]
    what = f"utterance {utt.uid} ({spk.combo})"
    proc = subprocess.run(cmd, input=utt.text.encode(), capture_output=True)
    if proc.returncode != 0:
        raise SynthesisError(f"{what}: espeak-ng failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace').strip()}")
    pcm = _parse_wav(proc.stdout, what)
    if len(pcm) < ESPEAK_RATE // 4 or not np.any(pcm):
        raise SynthesisError(f"{what}: espeak-ng returned {len(pcm)} samples of silence")
    return pcm


def _noise(n: int, tilt: float, seed: int) -> np.ndarray:
    """Unit-RMS Gaussian noise, spectrum ~ f^-tilt (0 white, 1 pink), seeded."""
    noise = np.random.default_rng(seed).standard_normal(n)
    if tilt > 0:
        spec = np.fft.rfft(noise)
        freq = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 50.0)
        noise = np.fft.irfft(spec * (freq / 1000.0) ** (-tilt / 2), n)
    return noise / np.sqrt(np.mean(noise ** 2))


def render_utterance(utt: Utterance, spk: Speaker) -> np.ndarray:
    """Audio of one utterance: (samples,) int16 at 16 kHz."""
    import soxr

    speech = soxr.resample(_espeak(utt, spk).astype(np.float64) / 32768.0,
                           ESPEAK_RATE, SAMPLE_RATE, quality="HQ")
    speech *= 10 ** (utt.level_dbfs / 20) / np.sqrt(np.mean(speech ** 2))
    lead = np.zeros(round(utt.lead_sec * SAMPLE_RATE))
    trail = np.zeros(round(utt.trail_sec * SAMPLE_RATE))
    signal = np.concatenate([lead, speech, trail])
    noise_rms = 10 ** ((utt.level_dbfs - utt.snr_db) / 20)
    signal += noise_rms * _noise(len(signal), utt.noise_tilt, utt.noise_seed)
    peak = np.max(np.abs(signal))
    if peak > 0.97:
        signal *= 0.97 / peak
    return np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_flac_atomic(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    tmp = _tmp_name(path)
    sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return  # unchanged: keep the file (and its mtime)
    tmp = _tmp_name(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _synthesize(job: tuple[str, Utterance, Speaker]) -> tuple[str, int]:
    path, utt, spk = job
    audio = render_utterance(utt, spk)
    _write_flac_atomic(Path(path), audio)
    return utt.uid, len(audio)


# ====================================================================== corpus on disk
def _espeak_info() -> str:
    """espeak-ng's version; raise if it or a voice/variant this corpus needs is missing."""
    if shutil.which("espeak-ng") is None:
        raise CorpusError("espeak-ng is not installed (Debian/Ubuntu: sudo apt-get install "
                          "espeak-ng)")

    def run(*args: str) -> str:
        return subprocess.run(["espeak-ng", *args], capture_output=True, text=True,
                              check=True).stdout

    m = re.search(r"text-to-speech:\s*(\S+)", run("--version"))
    version = m.group(1) if m else "unknown"
    languages = {line.split()[1] for line in run("--voices=en").splitlines()[1:]
                 if len(line.split()) > 1}
    variant_files = set(re.findall(r"!v/(\S+)", run("--voices=variant")))
    missing = [v for v in VOICES if v not in languages]
    missing += [f"variant {v}" for v in VARIANT_SEX if v not in variant_files]
    if missing:
        raise CorpusError(f"espeak-ng {version} lacks voices this corpus needs: "
                          f"{', '.join(missing)}")
    return version


def _params(seed: int, scale: float, espeak_version: str) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "scale": scale,
            "espeak_ng": espeak_version, "sample_rate": SAMPLE_RATE}


def _chapter_files(plan: CorpusPlan) -> dict[Path, str]:
    """relative path of every trans.txt -> its content."""
    lines: dict[Path, list[str]] = {}
    for u in plan.utterances:
        path = Path(u.subset, str(u.speaker), str(u.chapter), f"{u.speaker}-{u.chapter}.trans.txt")
        lines.setdefault(path, []).append(f"{u.uid} {u.transcript}\n")
    return {p: "".join(sorted(v)) for p, v in lines.items()}


def _speakers_txt(plan: CorpusPlan, seconds: dict[str, float]) -> str:
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
    out = {}
    for subset in SUBSETS:
        utts = [u for u in plan.utterances if u.subset == subset]
        durs = [seconds[u.uid] for u in utts]
        out[subset] = {
            "speakers": sum(1 for s in plan.speakers if s.subset == subset),
            "chapters": len({u.chapter for u in utts}), "utterances": len(utts),
            "hours": round(sum(durs) / 3600, 4),
            "utt_sec_min": round(min(durs), 2), "utt_sec_max": round(max(durs), 2),
            "utt_sec_mean": round(sum(durs) / len(durs), 2),
            "utt_share_2_to_8_sec": round(sum(2 <= d <= 8 for d in durs) / len(durs), 3)}
    return out


def _print_summary(subsets: dict, vocab: dict) -> None:
    print(f"{'subset':<12} {'speakers':>8} {'chapters':>8} {'utts':>6} {'hours':>7} "
          f"{'sec/utt':>8} {'words':>6}")
    for name, s in subsets.items():
        print(f"{name:<12} {s['speakers']:>8} {s['chapters']:>8} {s['utterances']:>6} "
              f"{s['hours']:>7.3f} {s['utt_sec_mean']:>8.2f} "
              f"{vocab['distinct_words_per_subset'][name]:>6}")
    total = sum(s["hours"] for s in subsets.values())
    oov = vocab["oov_vs_train_clean"]["all-test"]
    print(f"total {total:.3f} h; distinct words: {vocab['distinct_words']} overall, "
          f"{vocab['distinct_words_per_subset']['train-clean']} in train-clean; test OOV "
          f"w.r.t. train-clean: {100 * oov['token_rate']:.2f}% of tokens, "
          f"{100 * oov['type_rate']:.2f}% of word types")


def make_corpus(out: Path, *, seed: int, scale: float, nj: int) -> int:
    espeak_version = _espeak_info()
    params = _params(seed, scale, espeak_version)
    started = out / STARTED
    if out.exists() and not out.is_dir():
        raise CorpusError(f"--out {out} exists and is not a directory")
    if out.is_dir() and not started.is_file() and any(p.name != LOCK for p in out.iterdir()):
        raise CorpusError(f"{out} is not empty and was not made by this script; refusing to "
                          f"write into it (choose an empty or new --out)")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a") as lock:  # "a": neither truncates nor touches the file
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CorpusError(f"{out}: another make_embedded_corpus.py run is writing here")
        return _make_locked(out, params, nj)


def _make_locked(out: Path, params: dict, nj: int) -> int:
    seed, scale = params["seed"], params["scale"]
    started = out / STARTED
    if started.is_file():
        previous = json.loads(started.read_text())
        if previous != params:
            raise CorpusError(f"{out} holds an embedded corpus made with other parameters "
                              f"({previous}, not {params}); remove it or choose another --out")

    plan = build_plan(seed, scale)
    trans = _chapter_files(plan)
    wanted = [out / u.relpath for u in plan.utterances] + [out / p for p in trans] + \
        [out / "SPEAKERS.TXT", out / LM_TEXT]
    manifest = out / MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()).get("params") == params \
            and all(p.is_file() for p in wanted):
        print(f"{out}: already complete (seed {seed}, scale {scale}); nothing to do")
        return 0
    manifest.unlink(missing_ok=True)
    if not started.is_file():
        _write_text_atomic(started, json.dumps(params, indent=1) + "\n")
    for stale in out.glob("**/.*.tmp"):  # left by an interrupted run
        stale.unlink()

    for rel, text in trans.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(out / rel, text)

    lm_text = lm_sentences(plan)
    if not (out / LM_TEXT).is_file():
        _write_lm_text_atomic(out / LM_TEXT, lm_text)
    speakers = {s.id: s for s in plan.speakers}
    jobs = [(str(out / u.relpath), u, speakers[u.speaker]) for u in plan.utterances
            if not (out / u.relpath).is_file()]
    print(f"{out}: {len(plan.utterances)} utterances planned, {len(jobs)} to synthesize "
          f"with {nj} process(es)", flush=True)
    started_at = time.monotonic()
    _run_jobs(jobs, nj)
    elapsed = time.monotonic() - started_at

    import soundfile as sf

    seconds = {u.uid: sf.info(str(out / u.relpath)).frames / SAMPLE_RATE
               for u in plan.utterances}
    _write_text_atomic(out / "SPEAKERS.TXT", _speakers_txt(plan, seconds))
    subsets = _summary(plan, seconds)
    vocab = vocabulary_stats(plan.sentences())
    lm_words = Counter(w for t in lm_text for w in t.split())
    lm = {"file": LM_TEXT, "sentences": len(lm_text), "words": sum(lm_words.values()),
          "distinct_words": len(lm_words),
          "test_oov_token_rate": _oov_rate(plan, set(lm_words))}
    record = {"params": params, "subsets": subsets, "vocabulary": vocab, "lm_text": lm,
              "speakers": [asdict(s) for s in plan.speakers]}
    _write_text_atomic(manifest, json.dumps(record, indent=1) + "\n")
    print(f"synthesized {len(jobs)} utterances in {elapsed:.1f} s")
    _print_summary(subsets, vocab)
    print(f"LM text ({LM_TEXT}): {lm['sentences']} sentences, {lm['words']} words, "
          f"{lm['distinct_words']} distinct; test OOV w.r.t. it: "
          f"{100 * lm['test_oov_token_rate']:.2f}% of tokens; no dev/test sentence")
    return 0


def _oov_rate(plan: CorpusPlan, vocab: set[str]) -> float:
    test = [w for u in plan.utterances if u.subset in TEST_SUBSETS for w in u.words]
    return round(sum(w not in vocab for w in test) / max(1, len(test)), 5)


def _run_jobs(jobs: list, nj: int) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="utt", desc="espeak-ng", file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 15.0)
    if nj == 1 or len(jobs) <= 1:
        for job in jobs:
            _synthesize(job)
            bar.update()
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(nj) as pool:
            for _ in pool.imap_unordered(_synthesize, jobs, chunksize=4):
                bar.update()
    bar.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="corpus root (LibriSpeech layout)")
    p.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply all subset sizes (1.0: about 2.7 h in total)")
    p.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problems = []
    if args.seed < 0:
        problems.append(f"--seed must be >= 0, got {args.seed}")
    if not 0 < args.scale <= 20 or math.isnan(args.scale):
        problems.append(f"--scale must be in (0, 20], got {args.scale}")
    if args.nj < 1:
        problems.append(f"--nj must be >= 1, got {args.nj}")
    try:
        if problems:
            raise CorpusError("; ".join(problems))
        return make_corpus(args.out, seed=args.seed, scale=args.scale, nj=args.nj)
    except CorpusError as e:
        print(f"make_embedded_corpus.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
