"""The chain rule: a question that asks about a thing it only describes becomes two steps.

"What is the chemical symbol of the element that makes up most of the Sun?" asks for an
attribute ("the chemical symbol") of a thing named only by a description ("the element that
makes up most of the Sun"). Small decomposers write such a question back whole (their training
chains all bridge through a named entity), which leaves one expert to find the thing and its
attribute in one step. The rule splits it into the description, asked on its own, and the
attribute of its answer:

    What is the element that makes up most of the Sun?
    What is the chemical symbol of #1?

It applies only to one question of that form: "(what|who|which) (is|was|are|were) the ATTRIBUTE
of the THING (that|which|who|whom|whose|where) CLAUSE?", where

- THING is "the" and one to three words, none of them a preposition or pronoun (the "of" just
  before THING is the last "of" before the relative word: "the population of the capital of
  the country that …" asks for "the population of the capital" of "the country that …");
- ATTRIBUTE is "the" and one to five words, its head not a count, a quantity, a name or a kind
  ("the number of the cells that …", "the name of the man who …" are one step);
- CLAUSE has at least two words, and the question has no digit, bracket, colon, quote,
  newline or second sentence, and at most `MAX_WORDS` words (arithmetic, options and passages
  are left alone).

The description is asked as "Who …" after "who"/"whom" and "What …" otherwise, with the
question's own verb ("Who was the man who …").
"""

from __future__ import annotations

import re

from compllm_graph.query_graph import DEFAULT_MAX_SUB_QUERIES, REFERENCE, QueryGraph, SubQuery

MAX_WORDS = 30
"""Longest question (in words) the rule reads."""

_HEAD = re.compile(r"^(what|who|which)\s+(is|was|are|were)\s+the\s+(.+)$", re.IGNORECASE)
_RELATIVE = re.compile(r"\s(that|which|who|whom|whose|where)\s", re.IGNORECASE)
_LEFT_ALONE = re.compile(r"[\d()\[\]{}:;\"\n]|[?!.]\s")
_THING_WORDS = (1, 3)
_ATTRIBUTE_WORDS = (1, 5)
_NOT_IN_THING = frozenset(
    {
        "of", "in", "on", "at", "for", "from", "by", "with", "to", "about", "into", "than",
        "and", "or", "it", "its", "he", "his", "she", "her", "they", "their", "this", "these",
        "those", "one",
    }
)  # fmt: skip
_ONE_STEP_HEADS = frozenset(
    {
        "number", "numbers", "count", "value", "values", "sum", "product", "total", "amount",
        "average", "mean", "median", "difference", "ratio", "percentage", "percent", "fraction",
        "probability", "proportion", "rate", "share", "majority", "rest", "remainder", "result",
        "set", "list", "name", "names", "title", "kind", "type", "types", "sort", "part",
        "parts",
    }
)  # fmt: skip
"""Attribute heads that make the question one step: counts and quantities over the described
things, and heads that only rephrase the thing: the answer to "the man who …" is his name
already, so "the name of the man who …" is one step, as is "the kind of animal that …"."""


def split_chain(question: str) -> list[str] | None:
    """The description and the attribute of `question` as two questions, or None where the
    rule does not apply (the module's docstring gives the rule).

    Args:
        question: One question (a sub-query).

    Returns:
        Two questions: the described thing, then the attribute of `#1`; None otherwise.

    Example:
        >>> split_chain("What is the chemical symbol of the element that makes up most of the Sun?")
        ['What is the element that makes up most of the Sun?', 'What is the chemical symbol of #1?']
        >>> split_chain("What is the number of bones that an adult human has?") is None
        True
    """
    text = " ".join(question.split()).rstrip()
    if not text.endswith("?") or len(text.split()) > MAX_WORDS:
        return None
    text = text[:-1].rstrip()
    if _LEFT_ALONE.search(text) or (head := _HEAD.match(text)) is None:
        return None
    wh, verb, rest = head.groups()
    relative = _RELATIVE.search(rest)
    if relative is None:
        return None
    before, clause = rest[: relative.start()], rest[relative.end() :]
    attribute, of, thing = before.rpartition(" of the ")
    if not of or len(clause.split()) < 2 or not _is_thing(thing):
        return None
    if not _is_attribute(attribute):
        return None
    asks = "Who" if relative.group(1).lower() in ("who", "whom") else "What"
    return [
        f"{asks} {verb} the {thing} {relative.group(1)} {clause}?",
        f"{wh[0].upper()}{wh[1:]} {verb} the {attribute} of #1?",
    ]


def split_chains(
    query_graph: QueryGraph, max_sub_queries: int = DEFAULT_MAX_SUB_QUERIES
) -> tuple[QueryGraph, tuple[int, ...]]:
    """`query_graph` with each sub-query that stands alone (no parents, no children, no `#k`)
    and reads as a described thing's attribute (`split_chain`) made two dependent sub-queries.

    Sub-queries that are part of a chain already are left as the decomposer wrote them.

    Args:
        query_graph: The decomposition.
        max_sub_queries: Most sub-queries the graph may grow to; the first sub-queries that
            fit are split, the others left whole.

    Returns:
        The graph, renumbered in order (`#k` and parents follow), and the ids, in the graph
        given, of the sub-queries that were split (empty: the graph given, unchanged).

    Example:
        >>> graph = QueryGraph.single("Who is the spouse of the director who made Titanic?")
        >>> chained, split = split_chains(graph)
        >>> [(sq.text, sq.parents) for sq in chained], split
        ([('Who is the director who made Titanic?', ()), ('Who is the spouse of #1?', (1,))], (1,))
    """
    children = query_graph.children
    splittable = {
        sq.id: parts
        for sq in query_graph
        if not sq.parents and not children.get(sq.id) and "#" not in sq.text
        if (parts := split_chain(sq.text)) is not None
    }
    room = max(0, max_sub_queries - len(query_graph))
    steps = dict(list(splittable.items())[:room])
    if not steps:
        return query_graph, ()
    new_id: dict[int, int] = {}
    next_id = 1
    for sq in query_graph:  # a split sub-query's first step takes an id before its own
        next_id += sq.id in steps
        new_id[sq.id] = next_id
        next_id += 1
    built: list[SubQuery] = []
    for sq in query_graph:
        if sq.id in steps:
            first, second = steps[sq.id]
            last = new_id[sq.id]
            built += [
                SubQuery(last - 1, first),
                SubQuery(last, second.replace("#1", f"#{last - 1}"), (last - 1,)),
            ]
        else:
            text = REFERENCE.sub(lambda m: f"#{new_id.get(int(m.group(1)), m.group(1))}", sq.text)
            built.append(SubQuery(new_id[sq.id], text, tuple(new_id[p] for p in sq.parents)))
    return QueryGraph(tuple(built)), tuple(steps)


def _is_thing(thing: str) -> bool:
    words = thing.split()
    low, high = _THING_WORDS
    return low <= len(words) <= high and not _NOT_IN_THING.intersection(w.lower() for w in words)


def _is_attribute(attribute: str) -> bool:
    words = attribute.split()
    low, high = _ATTRIBUTE_WORDS
    if not low <= len(words) <= high:
        return False
    # the head is the last word before any "of" ("the name of the capital": "name")
    head = attribute.split(" of ")[0].split()[-1].lower()
    return head not in _ONE_STEP_HEADS


__all__ = ["MAX_WORDS", "split_chain", "split_chains"]
