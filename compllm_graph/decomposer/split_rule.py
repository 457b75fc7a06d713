"""The and-split rule: independent questions joined by "and" become sub-queries of their own.

A small decomposer sometimes writes a question such as "Which organelle makes most of a cell's
ATP, and what is the chemical formula of glucose?" back as one sub-query, or writes something
the parser rejects. The decompose node then asks `split_questions`. The rule is conservative:
it splits only where each side is a question on its own, and leaves noun coordination ("What
is the sum of 3 and 4?", "Who wrote A and B?") and dependent second parts ("…, and how old is
he?") alone.

A split point is ", and", "; and", "? and", a bare " and", or "? " before another question,
outside quotes and brackets; in a list "A, B, and C" the commas before the last "and" are
split points too. Both sides of a split point must pass these tests:

- each side is a question: it opens with an auxiliary (is, does, can, …) or a question word
  (what, which, who, whom, whose, when, where, why, how; also after a preposition: "in what
  year", "to whom") not followed by a preposition ("who in 1991") or "about"; "when", "where"
  and "why" need an inverted auxiliary next ("when did …"; "when the war ended" is a clause of
  another question), "how" one within its next two words ("how does", "how old is"), and "how
  many" a noun and then an auxiliary ("how many bones are …"; not "how many did Manning throw",
  whose noun is left out, nor "how many apples", which shares the verb of the next part);
- each side has at least `MIN_WORDS` words;
- the second side opens with an auxiliary only after a "?" ("…, and was crowned emperor" goes
  on the first question, with its subject), and at a bare " and" not with a word that also
  opens relative clauses (who, whom, whose, which: "a man who … and who died …");
- the second side has no pronoun or word that points back (he, it, its, they, this, those,
  the former, …): it would depend on the first side's answer;
- the first side has no word that pairs with "and" (between, both, either, neither, whether);
- at a bare " and" the first side also has an auxiliary or copula, so that it is a clause.

On MuSiQue, Break and StrategyQA (6,224 questions, each one question) it fires once; on two
of their single-hop steps joined by ", and" it gives back the two in 90 % of pairs
(`tests/unit/test_split_rule.py`).
"""

from __future__ import annotations

import re

INTERROGATIVES = frozenset({"what", "which", "who", "whom", "whose", "when", "where", "why", "how"})
AUXILIARIES = frozenset(
    {
        "is", "are", "was", "were", "am", "do", "does", "did", "can", "could", "will",
        "would", "shall", "should", "may", "might", "must", "has", "have", "had",
    }
)  # fmt: skip
MIN_WORDS = 3
"""Fewest words on either side of a split."""

_BACK_REFERENCES = frozenset(
    {
        "he", "she", "it", "they", "him", "her", "them", "his", "hers", "its", "their",
        "theirs", "this", "these", "those", "former", "latter", "one's",
    }
)  # fmt: skip
_AFTER_PREPOSITION = frozenset({"what", "which", "whom", "whose"})
_RELATIVES = frozenset({"who", "whom", "whose", "which"})
"""Question words that also open relative clauses ("a man who … and who died …", "the city
in which …")."""
_PAIRED_WITH_AND = frozenset({"between", "both", "either", "neither", "whether"})
_PREPOSITIONS = frozenset(
    {"in", "on", "at", "for", "from", "by", "with", "to", "during", "after", "before"}
)  # not "of": "which of these …" is a question
_AND = re.compile(r"\s*[,;?]?\s+and\s+|\?\s+", re.IGNORECASE)
_COMMA = re.compile(r",\s+")
_WORD = re.compile(r"\w[\w']*")
_OPENING_QUOTE = re.compile(r"(?:^|\s)'")  # an apostrophe follows a letter
_CLOSING_QUOTE = re.compile(r"[A-Za-z.?!]'(?=\s|$|[,;.?!])")
_OPENERS = {"(": ")", "[": "]", "“": "”", "‘": "’"}


def split_questions(question: str, max_parts: int = 12) -> list[str] | None:
    """Independent questions joined by "and" in `question`, or None where the rule does not
    apply (the module's docstring gives the rule).

    Args:
        question: The user's question.
        max_parts: Most parts allowed (the decomposition's `max_sub_queries`); a question with
            more is left whole.

    Returns:
        Two or more questions, each ending in "?", in their order in `question`; None when
        `question` is not independent questions by the rule.

    Example:
        >>> split_questions("What is the capital of Peru, and how many legs does a spider have?")
        ['What is the capital of Peru?', 'How many legs does a spider have?']
        >>> split_questions("What is the sum of 3 and 4?") is None
        True
    """
    text = " ".join(question.split())
    if not _is_question(_words(text)):
        return None
    parts = _split_all(text, _AND)
    if len(parts) < 2:
        return None
    # In a list "A, B, and C" the commas before the "and" part questions too.
    parts = [p for part in parts[:-1] for p in _split_all(part, _COMMA)] + parts[-1:]
    return [_as_question(part) for part in parts] if len(parts) <= max_parts else None


def _split_all(text: str, separator: re.Pattern[str]) -> list[str]:
    """`text` cut at every split point that passes the rule, left to right."""
    parts, rest = [], text
    while (cut := _split_point(rest, separator)) is not None:
        head, rest = cut
        parts.append(head)
    return [*parts, rest]


def _split_point(text: str, separator: re.Pattern[str]) -> tuple[str, str] | None:
    """The first split point of `text` where both sides pass the rule, as (first, rest)."""
    for match in separator.finditer(text):
        head, tail = text[: match.start()], text[match.end() :]
        if not _nested(head) and _independent(head, tail, match.group(0)):
            return head, tail
    return None


def _independent(head: str, tail: str, separator: str) -> bool:
    """Whether `head` and `tail`, joined by `separator`, are two questions, the second not
    pointing back at the first."""
    bare = not any(mark in separator for mark in ",;?")
    head_words, tail_words = _words(head), _words(tail)
    if not (_is_question(head_words) and _is_question(tail_words)):
        return False
    # "…, and was crowned emperor" goes on the same question: a part opened by an auxiliary
    # is a question of its own only as a new sentence.
    if tail_words[0] in AUXILIARIES and "?" not in separator:
        return False
    if bare and _RELATIVES.intersection(tail_words[:2]):
        return False
    if _BACK_REFERENCES.intersection(tail_words) or _PAIRED_WITH_AND.intersection(head_words):
        return False
    return not bare or bool(AUXILIARIES.intersection(head_words))


def _is_question(words: list[str]) -> bool:
    """Whether `words` open a question of their own: an auxiliary or a question word, followed
    by what makes it a clause (the inverted auxiliary of "when did", the verb of "how many
    bones are"), and not an elliptical "who in 1991" or "what about Y"."""
    if len(words) > MIN_WORDS and words[0] in _PREPOSITIONS and words[1] in _AFTER_PREPOSITION:
        words = words[1:]  # "in what year did …", "to whom was …"
    if len(words) < MIN_WORDS:
        return False
    first, second, third = words[:3]
    if first in AUXILIARIES:
        return True
    if first not in INTERROGATIVES or second in _PREPOSITIONS or second == "about":
        return False
    if first == "how" and second in ("many", "much"):
        # "how many did Manning throw" leaves its noun out ("how much does gold cost" does
        # not); "how many apples" has no verb.
        if third in AUXILIARIES:
            return second == "much"
        return bool(AUXILIARIES.intersection(words[3:]))
    if first == "how":
        return second in AUXILIARIES or third in AUXILIARIES  # how does, how old is
    if first in ("when", "where", "why"):
        return second in AUXILIARIES  # "when the war ended" is no question
    return True


def _nested(text: str) -> bool:
    """Whether the end of `text` is inside quotes or brackets."""
    opened = len(_OPENING_QUOTE.findall(text)) > len(_CLOSING_QUOTE.findall(text))
    if text.count('"') % 2 or opened:
        return True
    return any(text.count(o) > text.count(c) for o, c in _OPENERS.items())


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _as_question(part: str) -> str:
    part = part.strip().rstrip(",;.? ")
    return f"{part[0].upper()}{part[1:]}?"


__all__ = ["AUXILIARIES", "INTERROGATIVES", "MIN_WORDS", "split_questions"]
