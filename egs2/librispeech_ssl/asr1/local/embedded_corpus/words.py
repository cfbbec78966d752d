"""Words of the grammar: English morphology, Zipf-weighted samplers, the parsed word lists.

Guarantees: every inflected form comes from ``lexicon.py`` by the rules below (regular
plurals and verb forms unless the list spells them out), numbers are spelled out the way
LibriSpeech transcripts spell them (``number_words``, ``year_words``), and each list is
sampled with weights that fall with its position (``Pool``), so the end of every list is a
rare tail. ``lexicon()`` parses the lists once per process; parsing draws no random numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from . import lexicon as lex

_VOWELS = "aeiou"


def _plural(word: str) -> str:
    """Regular English plural (also the third person singular of a verb)."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


@dataclass(frozen=True)
class Verb:
    """The five forms of a verb: base, 3rd person singular, past, past participle, -ing."""

    base: str
    s3: str
    past: str
    pp: str
    ing: str


def parse_verb(spec: str) -> Verb:
    """A verb from its word-list entry: "base", "base*" (doubles its final consonant) or
    all five forms joined by "/"."""
    parts = spec.split("/")
    if len(parts) == 5:
        return Verb(*parts)
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
    return Verb(base, s3, past, past, ing)


@dataclass(frozen=True)
class Noun:
    """A noun's singular and plural (``pl`` None: a mass noun, no plural and no a/an)."""

    sg: str
    pl: str | None  # None: mass noun


def parse_nouns(entries: Iterable[str]) -> list[Noun]:
    """Nouns from word-list entries "singular", "singular|plural" or "singular|-"."""
    out = []
    for e in entries:
        sg, _, pl = e.partition("|")
        out.append(Noun(sg, None if pl == "-" else (pl or _plural(sg))))
    return out


def article(word: str) -> str:
    """ "a" or "an" before ``word``, by its sound as far as the spelling tells."""
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


def year_words(year: int) -> list[str]:
    """A year as read aloud: 1805 -> "eighteen oh five", 1900 -> "nineteen hundred"."""
    century, rest = divmod(year, 100)
    if rest == 0:
        return number_words(century) + ["hundred"]
    if rest < 10:
        return number_words(century) + ["oh", lex.ONES[rest]]
    return number_words(century) + number_words(rest)


# ====================================================================== sampling
class Pool:
    """Sampler over a list ordered from common to rare. Weight of rank i: 1 / (i + 2)^alpha
    in the head (the first ``head`` share of the list), times ``tail`` beyond it, so the
    tail words are rare: they fill the vocabulary of the large unlabeled subset and make a
    few percent of test words unseen in train-clean, as in real read speech."""

    def __init__(self, items: Sequence, alpha: float = 0.6, head: float = 0.35, tail: float = 0.03) -> None:
        self.items = list(items)
        n_head = max(4, head * len(self.items))
        weights = [(1.0 if i < n_head else tail) / (i + 2) ** alpha for i in range(len(self.items))]
        self.cum = list(np.cumsum(weights))

    def pick(self, rng: random.Random):
        """One item, drawn with one call of ``rng.choices``."""
        return rng.choices(self.items, cum_weights=self.cum, k=1)[0]


# ====================================================================== word lists
class Lexicon:
    """Parsed word lists, each a ``Pool``: nouns and adjectives by semantic class, verbs by
    frame (transitive verbs with the classes of object they take), names, places, adverbs."""

    def __init__(self) -> None:
        self.nouns = {
            cat: Pool(parse_nouns(getattr(lex, cat)))
            for cat in (
                "PERSON",
                "OCCUPATION",
                "KIN",
                "ANIMAL",
                "FOOD",
                "DRINK",
                "THING",
                "CLOTHING",
                "TEXT",
                "MUSIC",
                "PLACE",
                "BUILDING",
                "VEHICLE",
                "ABSTRACT",
                "PLANT",
                "NATURE",
            )
        }
        general = lex.ADJ_THING
        self.adjectives = {
            "PERSON": Pool(lex.ADJ_PERSON),
            "ANIMAL": Pool(lex.ADJ_ANIMAL),
            "FOOD": Pool(lex.ADJ_FOOD),
            "DRINK": Pool(["hot", "cold", "warm", "fresh", "sweet", "bitter", "strong"]),
            "THING": Pool(general),
            "CLOTHING": Pool(general),
            "VEHICLE": Pool(general),
            "BUILDING": Pool(general),
            "PLANT": Pool(general),
            "PLACE": Pool(lex.ADJ_PLACE),
            "TEXT": Pool(lex.ADJ_ABSTRACT),
            "ABSTRACT": Pool(lex.ADJ_ABSTRACT),
            "MUSIC": Pool(
                [
                    "sad",
                    "happy",
                    "old",
                    "sweet",
                    "strange",
                    "beautiful",
                    "lovely",
                    "cheerful",
                    "gentle",
                    "quiet",
                    "loud",
                    "simple",
                    "famous",
                    "long",
                ]
            ),
            "NATURE": Pool(["cold", "warm", "strong", "gentle", "bright", "dark", "heavy"]),
        }
        self.colors = Pool(lex.ADJ_COLOR)
        self.transitive = []
        for spec, frame in lex.TRANSITIVE.items():
            cats = frame.split()
            self.transitive.append((parse_verb(spec), tuple(c for c in cats if c != "+A"), "+A" in cats))
        self.transitive_pool = Pool(self.transitive)
        self.intransitive = Pool([parse_verb(s) for s in lex.INTRANSITIVE])
        self.motion = Pool([parse_verb(s) for s in lex.MOTION])
        self.say = Pool([parse_verb(s) for s in lex.SAY])
        self.control = Pool([parse_verb(s) for s in lex.CONTROL])
        self.give = [
            parse_verb(s)
            for s in (
                "give/gives/gave/given/giving",
                "send/sends/sent/sent/sending",
                "show/shows/showed/shown/showing",
                "offer",
                "lend/lends/lent/lent/lending",
                "hand",
                "bring/brings/brought/brought/bringing",
            )
        ]
        self.male = Pool(lex.NAMES_MALE)
        self.female = Pool(lex.NAMES_FEMALE)
        self.surnames = Pool(lex.SURNAMES)
        self.cities = Pool(lex.CITIES)
        self.manner = Pool(lex.ADVERB_MANNER)
        self.freq = Pool(lex.ADVERB_FREQ)
        self.prep = Pool(lex.LOC_PREP)
        self.units = Pool(lex.UNITS)
        self.openers = Pool(lex.OPENERS)


_LEX: Lexicon | None = None


def lexicon() -> Lexicon:
    """The parsed word lists of this process (built on first use)."""
    global _LEX
    if _LEX is None:
        _LEX = Lexicon()
    return _LEX
