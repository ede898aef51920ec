"""Polarity of a mention in shopper text: the negation cues, complaint cues and their scope, in one place.

Both the critique parser (:mod:`lumenrec.agent.critique`, hard constraints) and the LUMEN retriever's
brand features (:class:`lumenrec.retriever.lumen.BrandLexicon`, wanted / negated brand parts) decide
with the functions here whether "HP" in a message is wanted or negated:

- **Tokens and clauses** (:func:`tokenize`): lower-case word tokens, contractions expanded ("don't" ->
  "do not"), split into clauses at punctuation and at "but", "though", "also", ... (a cue never
  reaches across a clause: "HP was fine, but not Canon").
- **Negation before** a mention (:func:`negated_before`): the nearest cue within the window ("not",
  "no more", "anything but", "instead of", "other than", "sick of"), unless a word after it cancels
  it ("I don't mind HP", "not sure").
- **Cue after** a mention (:func:`cue_after`): a complaint ("HP broke", "Canon is too expensive",
  "stopped working") or a preference ("Epson again", "Avery instead", "Pilot please").

The word lists are general English, never taken from an evaluation text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "NEG_BEFORE",
    "NEG_BEFORE_PHRASES",
    "NEG_CANCEL",
    "NEG_AFTER",
    "NEG_AFTER_PHRASES",
    "PREFER_AFTER",
    "PREFER_BEFORE",
    "SAME_CUE",
    "CLAUSE_SPLIT_WORDS",
    "WISH_AFTER_AND",
    "Token",
    "tokenize",
    "clause_context",
    "negated_before",
    "cue_after",
    "mention_polarity",
    "span_tokens",
]

# Tokens that negate what follows in the same clause.
NEG_BEFORE = {"not", "no", "nothing", "never", "without", "except", "avoid", "hate", "against", "skip",
              "ditch", "nor", "neither", "besides", "excluding", "unlike", "than", "enough", "over"}
NEG_BEFORE_PHRASES = [("no", "more"), ("anything", "but"), ("everything", "but"), ("all", "but"),
                      ("instead", "of"), ("other", "than"), ("rather", "than"), ("different", "from"),
                      ("different", "than"), ("away", "from"), ("sick", "of"), ("tired", "of"),
                      ("done", "with"), ("switch", "from"), ("moving", "away"), ("anything", "other"),
                      ("apart", "from"), ("aside", "from"), ("other", "brand"), ("another", "brand"),
                      ("so", "much"), ("too", "much"), ("too", "many")]
# Words after a negation that cancel it ("I don't mind HP", "not sure", "not only").
NEG_CANCEL = {"mind", "sure", "only", "bad", "just", "too", "care"}
# A complaint after a mention, in the same clause.
NEG_AFTER = {"sucks", "sucked", "broke", "broken", "jams", "jammed", "died", "overpriced", "pricey",
             "expensive", "overkill", "disappointing", "disappointed", "terrible", "awful", "junk",
             "killing", "flimsy", "leaks", "leaked", "hate", "pain", "annoying", "useless", "bad", "worst"}
NEG_AFTER_PHRASES = [("not", "working"), ("stopped", "working"), ("cost", "too"), ("too", "much"),
                     ("not", "for"), ("not", "good"), ("no", "good"), ("not", "great"), ("not", "working"),
                     ("let", "me"), ("not", "what")]
# "prefer A over B": B is negated ("over" alone is not a cue: "over 20 sheets", "switched over to").
PREFER_BEFORE = {"prefer", "preferably", "preferred", "prefered", "rather", "favor", "favour", "choose", "pick"}
# A preference after a mention ("Epson again", "Avery instead").
PREFER_AFTER = {"again", "instead", "please", "pls", "preferred", "prefered", "preferably"}
# "Same brand as before": the previous item's brand is wanted.
SAME_CUE = re.compile(r"\b(same (brand|line|company|maker|series|kind)|stick with|from them|matching|that matches|again would)\b")
# After "and"/"or", a word that starts a new wish ends a negation's reach: "no Expo this time and in
# red", "anything but Paper Mate and preferably blue" want red and blue.
WISH_AFTER_AND = {"preferably", "ideally", "prefer", "rather", "in", "with", "make", "want", "need", "needs",
                  "like", "love", "get", "maybe", "also", "definitely", "should", "must", "it"}
# Words that start a new clause (a cue before them does not reach past them).
CLAUSE_SPLIT_WORDS = {"but", "though", "although", "however", "whereas", "while", "also", "plus"}

CONTRACTION_WORDS = {"dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "cant", "wont", "wouldnt",
                     "couldnt", "shouldnt", "havent", "hasnt", "aint", "nah"}
_CONTRACTIONS = [
    (re.compile(r"\b(do|does|did|is|are|was|were|ca|wo|would|could|should|have|has|had)n['’]?t\b"), r"\1 not"),
    (re.compile(r"\b(dont|doesnt|didnt|isnt|arent|wasnt|werent|cant|wont|wouldnt|couldnt|shouldnt|havent|hasnt|aint)\b"),
     lambda m: {"dont": "do not", "doesnt": "does not", "didnt": "did not", "isnt": "is not", "arent": "are not",
                "wasnt": "was not", "werent": "were not", "cant": "can not", "wont": "will not",
                "wouldnt": "would not", "couldnt": "could not", "shouldnt": "should not",
                "havent": "have not", "hasnt": "has not", "aint": "is not"}[m.group(1)]),
    (re.compile(r"\bnah\b"), "no"),
]
_PIECES = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?|[.!?;,:()\n]|\s-\s|\.\.+")
_SUFFIXES = {"s": "s", "re": "are", "ve": "have", "ll": "will", "d": "would", "m": "am"}


@dataclass
class Token:
    """One word token of a message."""

    low: str          # lower case, contractions expanded
    orig: str         # the token as typed ('' for the second token of an expansion)
    start: int        # character offsets in the message (-1 for the second token of an expansion)
    end: int
    clause: int       # clause number
    sent_start: bool  # first token of a sentence


def tokenize(message: str) -> list[Token]:
    """Word tokens with clause numbers (see the module docstring)."""
    toks: list[Token] = []
    clause = 0
    sent_start = True
    for m in _PIECES.finditer(message):
        s = m.group(0)
        if not s[0].isalnum():  # clause-breaking punctuation
            clause += 1
            if s in ".!?;\n" or s.startswith(".."):
                sent_start = True
            continue
        low = s.lower().replace("’", "'")
        if "'" in low or low in CONTRACTION_WORDS:  # only these can change: skip 3 regexes per token
            for rx, rep in _CONTRACTIONS:
                low = rx.sub(rep, low)
        if "'" in low:
            a, b = low.split("'", 1)
            parts = [a, _SUFFIXES.get(b, b)]
        else:
            parts = low.split()
        for j, p in enumerate(parts):
            if p in CLAUSE_SPLIT_WORDS and not (p == "but" and toks and toks[-1].low in {"anything", "everything", "all", "nothing"}):
                clause += 1
                toks.append(Token(p, s if j == 0 else "", m.start(), m.end(), clause, False))
                clause += 1
                sent_start = False
                continue
            toks.append(Token(p, s if j == 0 else "", m.start() if j == 0 else -1, m.end() if j == 0 else -1,
                              clause, sent_start and j == 0))
            sent_start = False
    return toks


def clause_context(toks: Sequence[Token], i: int, length: int, window: int = 4) -> tuple[list[str], list[str]]:
    """The words before (up to `window` + 2) and after (up to 6) the mention toks[i:i+length], in its clause."""
    clause = toks[i].clause
    before = [t.low for t in toks[max(0, i - window - 2):i] if t.clause == clause]
    after = [t.low for t in toks[i + length:i + length + 6] if t.clause == clause]
    return before, after


def negated_before(before: Sequence[str], kind: str = "brand") -> bool:
    """True when the nearest negation cue before a mention applies to it (`kind`: brand or category)."""
    for j in range(len(before) - 1, -1, -1):
        w = before[j]
        if w in WISH_AFTER_AND and j > 0 and before[j - 1] in {"and", "or"}:
            return False  # "... and preferably X": a new wish, past the negation's reach
        pair = tuple(before[j:j + 2])
        if pair in NEG_BEFORE_PHRASES or w in NEG_BEFORE:
            if j + 1 < len(before) and before[j + 1] in NEG_CANCEL:
                return False
            if w in {"than", "over"} and (j == 0 or before[j - 1] not in {"other", "rather", "different"}
                                          and (kind == "category" or before[j - 1] not in {"cheaper", "better", "nicer"})) \
                    and not (w == "over" and PREFER_BEFORE.intersection(before[:j])):  # "prefer Avery over 3M"
                continue
            if w == "enough" and j + 1 < len(before):  # "enough HP": only right before the mention
                continue
            if w == "no" and j + 1 < len(before) and before[j + 1] in {"idea", "problem", "worries", "clue"}:
                continue
            return True
    return False


def cue_after(after: Sequence[str]) -> str | None:
    """The first cue after a mention: 'complaint' ("HP broke"), 'prefer' ("Epson again"), or None."""
    for j in range(len(after)):
        if after[j] in NEG_AFTER or tuple(after[j:j + 2]) in NEG_AFTER_PHRASES:
            return "complaint"
        if after[j] in PREFER_AFTER:
            return "prefer"
    return None


def mention_polarity(toks: Sequence[Token], i: int, length: int, kind: str = "brand", window: int = 4) -> str | None:
    """'exclude', 'include' or None (no cue) for the mention toks[i:i+length].

    A negation before it excludes; a complaint after it excludes a brand (about a product type it
    asks for a better one of the same type: no cue); a preference after it includes.
    """
    before, after = clause_context(toks, i, length, window)
    if negated_before(before, kind):
        return "exclude"
    cue = cue_after(after)
    if cue == "complaint":
        return "exclude" if kind == "brand" else None
    return "include" if cue == "prefer" else None


def span_tokens(toks: Sequence[Token], start: int, end: int) -> tuple[int, int] | None:
    """(first token index, token count) of the tokens inside the character span [start, end), or None."""
    inside = [k for k, t in enumerate(toks) if t.start >= start and 0 <= t.end <= end]
    return (inside[0], inside[-1] - inside[0] + 1) if inside else None
