"""The sentence grammar of the embedded corpus: clauses and sentences (``SentenceGenerator``).

A seeded template grammar over the word lists of ``lexicon.py``: transitive clauses whose
objects fit the verb, ditransitives, motion, copulas and "there was/were", measures,
"that"-clauses, "decided to ...", relative clauses, two clauses joined by a conjunction
or a fronted subordinate clause, yes/no and wh-questions, imperatives, fronted time
phrases.

Guarantees: ``sentence()`` returns the text espeak-ng reads and its transcript, and the
two hold the same words in the same order (the text only adds capitals, commas and the
final "?" or "."; nothing else is spoken); transcripts are upper-case letters and
apostrophes only, numbers spelled out. The output is a function of the ``rng`` stream
alone. Which sentences may go where (test sentences never in training) is decided by the
plan (plan.py), not here.
"""

from __future__ import annotations

import random
import re

from . import lexicon as lex
from .phrases import NP, PhraseGenerator
from .words import article, lexicon


class SentenceGenerator(PhraseGenerator):
    """Seeded template grammar: declaratives, questions, imperatives, subordinate clauses.

    ``SentenceGenerator(rng, cast)``; ``sentence()`` returns (text for espeak-ng with
    punctuation, transcript words). A chapter's recurring characters (``cast``) are about a
    third of the names used.
    """

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
        return list(subj.words) + vp + list(thing.words) + ["to"] + list(to.words) + self._tail(0.1)

    def intransitive_clause(self) -> list[str]:
        verb = self.lx.intransitive.pick(self.rng)
        subj = self.subject(animal_ok=True)
        return (
            list(subj.words)
            + self._finite(verb, subj, self._tense())
            + self._tail(loc=0.6, manner=0.3, time=0.35)
        )

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
            degree = [r.choice(("very", "quite", "rather", "too", "so"))] if self._p(0.25) else []
            return (
                list(subj.words)
                + self._finite_be(subj, past)
                + degree
                + adj
                + self._tail(loc=0.15, manner=0.0, time=0.2)
            )
        if u < 0.6:  # "there were five horses in the barn"
            cat = r.choice(("ANIMAL", "PERSON", "THING", "FOOD", "VEHICLE", "PLANT"))
            np_ = self.noun_phrase(cat)
            be = ("was" if past else "is") if not np_.plural else ("were" if past else "are")
            return ["there", be] + list(np_.words) + self.loc_pp() + self._tail(loc=0.0, manner=0.0, time=0.3)
        if u < 0.8:  # "Mary was a kind teacher"
            subj = self.person(pronoun_ok=False)
            noun = self.lx.nouns["OCCUPATION"].pick(r)
            adjs = self._adjs("PERSON")
            if subj.plural and noun.pl:
                pred = adjs + [noun.pl]
            else:
                pred = [article((adjs + [noun.sg])[0])] + adjs + [noun.sg]
            subj = NP(subj.words, 3, subj.plural)
            return (
                list(subj.words)
                + self._finite_be(subj, past)
                + pred
                + self._tail(loc=0.2, manner=0.0, time=0.1)
            )
        # measures: "the bridge was two hundred feet long", "the journey took three days"
        v = r.random()
        if v < 0.35:
            np_ = self.noun_phrase(r.choice(("PLACE", "BUILDING", "VEHICLE", "THING")), plural=False)
            return (
                list(np_.words)
                + ["was" if past else "is"]
                + self._number(2, 900)
                + [r.choice(("feet", "yards", "miles")), r.choice(("long", "high", "wide", "away", "deep"))]
            )
        if v < 0.7:
            subj = self.person()
            thing = self.noun_phrase(r.choice(("THING", "FOOD", "ANIMAL", "CLOTHING")))
            return (
                list(subj.words)
                + ["paid"]
                + self._number(2, 99)
                + [r.choice(("dollars", "pounds", "shillings", "pennies")), "for"]
                + list(thing.words)
            )
        trip = self.noun_phrase("ABSTRACT", plural=False)
        return (
            list(trip.words)
            + [r.choice(("took", "lasted"))]
            + self._number(2, 40)
            + [r.choice(("days", "hours", "weeks", "minutes", "years"))]
        )

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
        return (
            list(subj.words)
            + self._finite(verb, subj, tense)
            + ["to", tv.base]
            + list(self.object_of(cats).words)
            + self._tail(loc=0.2, manner=0.0, time=0.2)
        )

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
        return (
            list(head.words)
            + [r.choice(("who", "that"))]
            + rel
            + [verb.past]
            + list(self.object_of(cats2).words)
        )

    def question(self) -> list[str]:
        r = self.rng
        u = r.random()
        verb, cats, animal_ok = self.lx.transitive_pool.pick(r)
        subj = self.subject(animal_ok)
        sg3 = subj.person == 3 and not subj.plural
        obj = list(self.object_of(cats).words)
        if u < 0.22:  # yes/no
            aux = r.choice(("did", "did", "does" if sg3 else "do", "will", "can", "could", "should", "would"))
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
            return (
                [be]
                + list(np_.words)
                + [self.lx.adjectives[cat].pick(r)]
                + (["enough"] if self._p(0.1) else [])
            )
        # what did you find in the garden
        return ["what", r.choice(("did", "will", "can"))] + list(subj.words) + [verb.base] + self.loc_pp()

    def imperative(self) -> list[str]:
        r = self.rng
        u = r.random()
        verb, cats, _ = self.lx.transitive_pool.pick(r)
        obj = list(self.object_of(cats).words)
        if u < 0.45:
            return (["please"] if self._p(0.4) else []) + [verb.base] + obj + self._tail(0.4, 0.2, 0.2)
        if u < 0.7:
            return [r.choice(("don't", "do not", "never"))] + [verb.base] + obj + self._tail(0.2, 0.0, 0.3)
        if u < 0.85:
            return ["let", "us", "go", "to"] + self.place() + self._tail(0.0, 0.0, 0.4)
        return (
            [r.choice(("bring", "show", "give", "hand", "send"))]
            + [r.choice(("me", "us", "him", "her", "them"))]
            + list(self.object_of(("THING", "FOOD", "TEXT")).words)
        )

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
            front = self.time_phrase() if self._p(0.6) else self.lx.openers.pick(r).split()
            words = front + self.clause()
            comma_after = len(front)
        else:  # subordinate clause first: "When the rain stopped, ..."
            sub = self.short_clause()
            words = (
                [r.choice(("when", "after", "before", "because", "although", "while", "if"))]
                + sub
                + self.short_clause()
            )
            comma_after = len(sub) + 1
        words = [w for token in words for w in token.split()]
        return spoken_text(words, question, comma_after), transcript_words(words)


def spoken_text(words: list[str], question: bool, comma_after: int | None) -> str:
    """What espeak-ng reads: the words, capitalized, with a comma after word
    ``comma_after`` and a final "?" or "."."""
    shown = list(words)
    if comma_after is not None and 0 < comma_after < len(shown):
        shown[comma_after - 1] += ","
    text = " ".join(shown)
    return text[0].upper() + text[1:] + ("?" if question else ".")


_WORD_RE = re.compile(r"^[A-Z]+(?:'[A-Z]*)*$")


def transcript_words(words: list[str]) -> list[str]:
    """The transcript: the same words upper case; raise on anything but letters and
    apostrophes (LibriSpeech's transcript alphabet)."""
    out = [w.upper() for w in words]
    for w in out:
        if not _WORD_RE.match(w):
            raise ValueError(f"grammar produced a word that is not transcript-clean: {w!r}")
    return out


def chapter_cast(rng: random.Random) -> list[str]:
    """Three recurring characters of a chapter (as in a book chapter)."""
    lx = lexicon()
    cast: list[str] = []
    while len(cast) < 3:
        name = (lx.male if rng.random() < 0.5 else lx.female).pick(rng)
        if name not in cast:
            cast.append(name)
    return cast
