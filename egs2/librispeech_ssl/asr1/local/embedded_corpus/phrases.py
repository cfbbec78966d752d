"""Phrases of the sentence grammar: noun phrases, names, places, times, verb groups.

Guarantees: a noun phrase's determiner agrees with its noun (a/an, mass nouns without a
number or "a", plurals with plural determiners), a verb group agrees with its subject in
person and number, adjectives fit the class of the noun they describe, and every number,
time and date is spelled out in words. All randomness comes from the generator's ``rng``,
in a fixed order of calls, so a seeded stream always yields the same phrases.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from . import lexicon as lex
from .words import Verb, article, lexicon, number_words, year_words


@dataclass(frozen=True)
class NP:
    """A noun phrase with the person and number its verb agrees with."""

    words: tuple[str, ...]
    person: int = 3
    plural: bool = False


_SUBJECT_PRONOUNS = (
    ("I", 1, False),
    ("you", 2, False),
    ("he", 3, False),
    ("she", 3, False),
    ("we", 1, True),
    ("they", 3, True),
)
_OBJECT_PRONOUNS = ("me", "you", "him", "her", "us", "them")
_POSSESSIVES = ("my", "his", "her", "our", "their", "your")


class PhraseGenerator:
    """The phrases clauses are built from, drawn from ``rng``: names (a chapter's recurring
    characters, ``cast``, are about a third of them), noun phrases with determiners and
    adjectives that fit the noun's class, places, times and dates, and finite verb groups
    that agree with their subject. ``SentenceGenerator`` (grammar.py) adds the clauses.
    """

    def __init__(self, rng: random.Random, cast: Sequence[str] = ()) -> None:
        self.rng = rng
        self.lx = lexicon()
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

    def noun_phrase(self, cat: str, *, plural: bool | None = None) -> NP:
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
                det = [article(body[0])]
            elif u < 0.88:
                det = [r.choice(_POSSESSIVES)]
            elif u < 0.95:
                det = [r.choice(("this", "that"))]
            else:
                det = [r.choice(("every", "each", "another"))]
        words = [w for d in det for w in d.split()] + body
        if cat == "PERSON" and not plural and self._p(0.06):  # "the baker's wife"
            words = words[:-1] + [words[-1] + "'s", self.lx.nouns["KIN"].pick(r).sg]
        return NP(tuple(words), 3, plural)

    def person(self, *, pronoun_ok: bool = True, role: str = "subj") -> NP:
        r = self.rng
        u = r.random()
        if u < 0.3:
            return NP(tuple(self._name()))
        if u < 0.5 and pronoun_ok:
            if role == "subj":
                word, person, plural = r.choice(_SUBJECT_PRONOUNS)
                return NP((word,), person, plural)
            return NP((r.choice(_OBJECT_PRONOUNS),), 3, False)
        return self.noun_phrase("PERSON")

    def subject(self, animal_ok: bool = False) -> NP:
        if animal_ok and self._p(0.3):
            return self.noun_phrase("ANIMAL")
        return self.person()

    def object_of(self, cats: Sequence[str]) -> NP:
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
            return [
                r.choice(
                    (
                        "yesterday",
                        "today",
                        "tomorrow",
                        "tonight",
                        "soon",
                        "later",
                        "early",
                        "again",
                        "at once",
                        "at last",
                        "long ago",
                    )
                )
            ]
        if u < 0.22:
            return [
                r.choice(("last", "this", "next", "every")),
                r.choice(lex.PARTS_OF_DAY + ["night", "week", "month", "year", "summer", "winter", "day"]),
            ]
        if u < 0.32:
            return ["on", r.choice(lex.DAYS)] + ([r.choice(lex.PARTS_OF_DAY)] if self._p(0.3) else [])
        if u < 0.42:
            return (
                ["in", r.choice(lex.MONTHS + lex.SEASONS)]
                if self._p(0.6)
                else ["in", "the", r.choice(lex.SEASONS + lex.PARTS_OF_DAY)]
            )
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
            return ["at", r.choice(("noon", "midnight", "dawn", "dusk", "sunrise", "sunset", "night"))]
        if u < 0.8:
            return self._number(2, 30) + [
                r.choice(("days", "weeks", "months", "years")),
                r.choice(("ago", "later")),
            ]
        if u < 0.88:
            return ["in"] + year_words(r.randint(1700, 1999))
        if u < 0.94:
            return ["on", "the", r.choice(lex.ORDINALS[:12] + lex.ORDINALS[19:]), "of", r.choice(lex.MONTHS)]
        return ["for"] + self._number(2, 20) + [r.choice(("days", "hours", "weeks", "minutes", "years"))]

    # ---------------------------------------------------------------- verb groups
    def _finite(self, verb: Verb, subj: NP, tense: str) -> list[str]:
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
            return (
                ["will", verb.base]
                if self._p(0.8)
                else ["is" if sg3 else "am" if first else "are", "going", "to", verb.base]
            )
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
            return [
                r.choice(
                    ("couldn't", "wouldn't", "won't", "can't", "shouldn't", "could not", "will not", "cannot")
                ),
                verb.base,
            ]
        raise ValueError(tense)

    _TENSES = (
        ("past", 46),
        ("present", 12),
        ("past_prog", 7),
        ("pres_prog", 4),
        ("future", 7),
        ("perfect", 6),
        ("past_perfect", 3),
        ("modal", 7),
        ("neg_past", 4),
        ("neg_present", 2),
        ("neg_modal", 2),
    )

    def _tense(self) -> str:
        names, weights = zip(*self._TENSES)
        return self.rng.choices(names, weights=weights, k=1)[0]

    def _finite_be(self, subj: NP, past: bool) -> list[str]:
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
