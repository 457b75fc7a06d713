"""The premise rule: a sub-query cut off from the facts it asks about gets them back.

A word problem states its facts first and then asks about them, sometimes twice: "The elevator
supports 700 kg. An adult weighs 80 kg. First: How many adults can ride? Then: If Jack rides
with 8 other adults, by how much will they exceed the load?" A small decomposer keeps the facts
with the first question and writes the second alone, which no expert can answer (the default
model's decomposer did so for 81 of the easy tier's 200 All-2 questions, 2026-12-07). The rule
gives the facts back, and only where all of these hold:

- the query opens with *facts*: sentences that ask nothing (no "?", not opened by a question
  word, an auxiliary or an instruction such as "Answer two things.", which is left out; a
  marker such as "First:" or "Two things:" is dropped), at most `MAX_FACT_WORDS` words in all
  (the facts are copied into each sub-query that gets them, so a passage is left alone);
- a sub-query holds them all (the decomposer read them as a premise of its questions);
- the sub-query that gets them is one question, a single sentence ending in "?" after any of
  the facts, that lacks some of them; it has no parent whose question holds them (a child's
  prompt already carries its parents' questions); and it points at them: a personal pronoun
  ("If he has 4 more days ..."), a quantity asked with no number of its own ("How much change
  does the cashier give back?"), a capitalised name the facts hold ("By how many points is
  Joey winning?"), or a content word they share ("How many sandwiches does this family eat in
  one week?").

Questions that state no facts (MuSiQue, Break and the like), questions with options or a
passage, and questions with statements of their own are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from compllm_graph.query_graph import QueryGraph, SubQuery

from .split_rule import AUXILIARIES, INTERROGATIVES

MAX_FACT_WORDS = 120
"""Longest facts (in words) the rule copies."""
MIN_FACT_WORDS = 4
"""Shortest facts (in words) the rule copies."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9$])")
_MARKER = re.compile(r"^(?:[A-Z][A-Za-z]*(?:\s+[a-z]+){0,2})[:,]\s+")
_WORD = re.compile(r"[A-Za-z][\w']*")
_TOKEN = re.compile(r"[\w']+")
_INSTRUCTIONS = frozenset(
    {
        "answer", "give", "tell", "name", "list", "find", "state", "say", "write", "explain",
        "describe", "calculate", "compute", "determine", "solve", "choose", "pick", "select",
        "please", "identify", "provide", "show", "estimate", "use",
    }
)  # fmt: skip
_PRONOUNS = frozenset(
    {
        "he", "she", "they", "him", "her", "them", "his", "hers", "their", "theirs", "i", "me",
        "my", "mine", "we", "us", "our", "ours", "you", "your", "yours",
    }
)  # fmt: skip
_QUANTITY = re.compile(r"\bhow (?:much|many|long|old|far|fast|often)\b", re.IGNORECASE)
_COMMON = frozenset(
    {
        "about", "after", "again", "their", "there", "these", "those", "which", "where", "while",
        "would", "could", "should", "other", "every", "first", "second", "third", "total",
        "number", "answer", "question", "before", "being", "between", "following", "given",
        "since", "still", "through", "under", "until", "whose", "within", "without",
        "another", "options",
    }
)  # fmt: skip
"""Words too common to tie a question to the facts."""


def carry_premise(query: str, query_graph: QueryGraph) -> tuple[QueryGraph, tuple[int, ...]]:
    """`query_graph` with the query's facts put back into the sub-queries that need them (the
    module's docstring gives the rule).

    Args:
        query: The user's question.
        query_graph: The decomposition of `query`.

    Returns:
        The graph and the ids of the sub-queries that got the facts; the graph unchanged and ()
        when the rule does nothing.

    Example:
        >>> query = "Tom has 3 red apples. How many has he? Then: If he eats one, how many ...?"
        >>> graph = QueryGraph((SubQuery(1, "Tom has 3 red apples. How many has he?"),
        ...                     SubQuery(2, "If he eats one, how many are left?")))
        >>> new, carried = carry_premise(query, graph)
        >>> new[2].text, carried
        ('Tom has 3 red apples. If he eats one, how many are left?', (2,))
    """
    facts = opening_facts(query)
    if not facts or not any(not _missing(facts, sq.text) for sq in query_graph):
        return query_graph, ()
    texts = {sq.id: sq.text for sq in query_graph}
    carried = []
    for sq_id in query_graph.order:
        sq = query_graph[sq_id]
        missing = _missing(facts, sq.text)
        if missing and _needs(sq.text, facts, [texts[p] for p in sq.parents]):
            texts[sq_id] = " ".join([*missing, sq.text])
            carried.append(sq_id)
    if not carried:
        return query_graph, ()
    new = tuple(SubQuery(sq.id, texts[sq.id], sq.parents) for sq in query_graph)
    return QueryGraph(new), tuple(sorted(carried))


def opening_facts(query: str) -> list[str]:
    """The statements that open `query`, markers and instructions left out, up to its first
    sentence that asks; [] when they hold fewer than `MIN_FACT_WORDS` or more than
    `MAX_FACT_WORDS` words.

    Example:
        >>> opening_facts("Two things: Ann has 4 pens. She buys 2. Answer both. How many ...?")
        ['Ann has 4 pens.', 'She buys 2.']
    """
    facts = []
    for sentence in sentences(query):
        if _instruction(sentence):
            continue
        if not is_statement(sentence):
            break
        facts.append(_unmarked(sentence))
    words = len(_WORD.findall(" ".join(facts)))
    return facts if MIN_FACT_WORDS <= words <= MAX_FACT_WORDS else []


def sentences(text: str) -> list[str]:
    """`text` cut into sentences at ".", "!" or "?" followed by a space and a capital, digit,
    quote or bracket (so "$50.00" stays whole)."""
    return [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]


def is_statement(sentence: str) -> bool:
    """Whether `sentence` asks nothing: no "?", and it does not open with an instruction, nor,
    unless it ends in ".", with a question word or an auxiliary ("When he got there he saw
    ..." states; "How many are left" asks)."""
    words = [w.lower() for w in _WORD.findall(_unmarked(sentence))]
    end = sentence.rstrip()[-1:]
    if end == "?" or not words or words[0] in _INSTRUCTIONS:
        return False
    return end == "." or words[0] not in INTERROGATIVES | AUXILIARIES


def _unmarked(sentence: str) -> str:
    return _MARKER.sub("", sentence.strip())


def _instruction(sentence: str) -> bool:
    words = [w.lower() for w in _WORD.findall(_unmarked(sentence))]
    return bool(words) and words[0] in _INSTRUCTIONS and not sentence.rstrip().endswith("?")


def _key(text: str) -> str:
    """`text`'s words and numbers, lower-cased: what "holds a fact" compares."""
    return " ".join(_TOKEN.findall(text.lower()))


def _missing(facts: list[str], text: str) -> list[str]:
    """The facts `text` does not hold."""
    held = _key(text)
    return [fact for fact in facts if _key(fact) not in held]


def _needs(text: str, facts: list[str], parent_texts: list[str]) -> bool:
    """Whether a sub-query lacks the facts: one question (after any of the facts) that no
    parent carries them to, and that points at them."""
    fact_keys = {_key(fact) for fact in facts}
    question = [s for s in sentences(text) if _key(_unmarked(s)) not in fact_keys]
    if len(question) != 1 or not question[0].endswith("?"):
        return False
    if any(not _missing(facts, parent) for parent in parent_texts):
        return False
    words = _WORD.findall(text)
    if _PRONOUNS.intersection(w.lower() for w in words):
        return True
    if _QUANTITY.search(text) and not any(c.isdigit() for c in text):
        return True
    fact_words = set(_WORD.findall(" ".join(facts)))
    names = {w for w in fact_words if w[0].isupper()}
    if any(w in names for w in words[1:] if w[0].isupper()):
        return True
    return bool(_content(words) & _content(fact_words))


def _content(words: Iterable[str]) -> set[str]:
    """Lower-cased content words of at least five letters, a plural "s" dropped."""
    lowered = (w.lower() for w in words)
    return {w.removesuffix("s") for w in lowered if len(w) >= 5 and w not in _COMMON}
