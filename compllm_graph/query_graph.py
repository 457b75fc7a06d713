"""The query graph: sub-queries as nodes, "needs the answer of" as edges (a DAG).

`parse_decomposition` reads what a decomposer wrote, in any of the formats seen in the paper and in
the multi-hop datasets, and returns a validated, immutable `QueryGraph`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from compllm_graph.errors import CompLLMError

DEFAULT_MAX_SUB_QUERIES = 12


class DecompositionError(CompLLMError, ValueError):
    """The decomposer's output cannot be turned into a valid query graph."""


@dataclass(frozen=True)
class SubQuery:
    """One node of the query graph.

    Attributes:
        id: 1-based position in the decomposition, as the decomposer numbered it.
        text: The sub-query; `#k` marks where sub-query k's answer belongs.
        parents: Ids of the sub-queries whose answers this one needs.
    """

    id: int
    text: str
    parents: tuple[int, ...] = ()


@dataclass(frozen=True)
class QueryGraph:
    """An immutable, validated DAG of sub-queries.

    Raises:
        DecompositionError: on duplicate ids, a parent that does not exist, a self-dependency or
            a cycle.
    """

    sub_queries: tuple[SubQuery, ...]
    _by_id: dict[int, SubQuery] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.sub_queries:
            raise DecompositionError("the decomposition holds no sub-query")
        by_id = {sq.id: sq for sq in self.sub_queries}
        if len(by_id) != len(self.sub_queries):
            raise DecompositionError("two sub-queries share an id")
        for sq in self.sub_queries:
            for parent in sq.parents:
                if parent == sq.id:
                    raise DecompositionError(f"sub-query {sq.id} depends on itself")
                if parent not in by_id:
                    raise DecompositionError(
                        f"sub-query {sq.id} depends on sub-query {parent}, "
                        f"but only {sorted(by_id)} exist"
                    )
        object.__setattr__(self, "_by_id", by_id)
        _ = self.order  # validates acyclicity eagerly

    @classmethod
    def single(cls, text: str) -> QueryGraph:
        """A graph of one sub-query: the fallback when a query cannot be decomposed."""
        return cls((SubQuery(1, text),))

    def __len__(self) -> int:
        return len(self.sub_queries)

    def __iter__(self) -> Iterator[SubQuery]:
        return iter(self.sub_queries)

    def __getitem__(self, sub_query_id: int) -> SubQuery:
        return self._by_id[sub_query_id]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(sq.id for sq in self.sub_queries)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """All (parent, child) pairs, sorted."""
        return tuple(sorted((p, sq.id) for sq in self.sub_queries for p in sq.parents))

    @cached_property
    def children(self) -> dict[int, tuple[int, ...]]:
        kids: dict[int, list[int]] = {sq.id: [] for sq in self.sub_queries}
        for parent, child in self.edges:
            kids[parent].append(child)
        return {k: tuple(v) for k, v in kids.items()}

    @cached_property
    def order(self) -> tuple[int, ...]:
        """Topological order (Kahn), ties broken by id."""
        indegree = {sq.id: len(sq.parents) for sq in self.sub_queries}
        kids: dict[int, list[int]] = {sq.id: [] for sq in self.sub_queries}
        for sq in self.sub_queries:
            for parent in sq.parents:
                kids[parent].append(sq.id)
        ready = sorted(i for i, d in indegree.items() if d == 0)
        order: list[int] = []
        while ready:
            node = ready.pop(0)
            order.append(node)
            for child in kids[node]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
            ready.sort()
        if len(order) != len(self.sub_queries):
            stuck = sorted(i for i, d in indegree.items() if d > 0)
            raise DecompositionError(f"the dependencies form a cycle through sub-queries {stuck}")
        return tuple(order)

    def ancestors(self, sub_query_id: int) -> tuple[int, ...]:
        """Ids of every sub-query that `sub_query_id` depends on, directly or not, sorted."""
        parents = {sq.id: sq.parents for sq in self.sub_queries}
        return tuple(sorted(ancestors_of(sub_query_id, parents)))

    @property
    def roots(self) -> tuple[int, ...]:
        return tuple(sq.id for sq in self.sub_queries if not sq.parents)

    @property
    def leaves(self) -> tuple[int, ...]:
        return tuple(i for i, kids in self.children.items() if not kids)

    @cached_property
    def remaining_depth(self) -> dict[int, int]:
        """Nodes on the longest path from each sub-query down to a leaf, itself included.

        The scheduler runs the sub-query with the longest remaining path first (critical path).
        """
        depth: dict[int, int] = {}
        for node in reversed(self.order):
            depth[node] = 1 + max((depth[c] for c in self.children[node]), default=0)
        return depth

    @property
    def critical_path_length(self) -> int:
        return max(self.remaining_depth.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, no tuples) for graph state, checkpoints and JSON."""
        return {
            "sub_queries": [
                {"id": sq.id, "text": sq.text, "parents": list(sq.parents)} for sq in self
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueryGraph:
        """Rebuild (and re-validate) a graph from `to_dict` output, e.g. a run's `query_graph`."""
        return cls(
            tuple(
                SubQuery(int(d["id"]), str(d["text"]), tuple(int(p) for p in d["parents"]))
                for d in data["sub_queries"]
            )
        )

    def to_text(self) -> str:
        """The paper's tagged format: `<q>…</q>` per sub-query, then `<dep>i->j, …</dep>`."""
        questions = "".join(f"<q>{sq.text}</q>" for sq in self.sub_queries)
        deps = ", ".join(f"{p}->{c}" for p, c in self.edges)
        return f"{questions}<dep>{deps}</dep>"


_TAGGED_Q = re.compile(r"<q>\s*(.*?)\s*(?:</q>|<\\q>|(?=<q>|<dep>))", re.DOTALL | re.IGNORECASE)
_UNCLOSED_Q = re.compile(r"<q>(?:(?!</q>|<\\q>|<q>|<dep>).)*\Z", re.DOTALL | re.IGNORECASE)
_TAGGED_DEP = re.compile(r"<dep>(.*?)(?:</dep>|<\\dep>|\Z)", re.DOTALL | re.IGNORECASE)
_NUMBERED = re.compile(r"^\s*(?:Q\s*)?(\d+)\s*[.):](?:\s+(.*?))?\s*$", re.IGNORECASE)
_DEP_GRAPH = re.compile(r"dependency\s+graph\s*:?(.*)", re.DOTALL | re.IGNORECASE)
_ARROW = re.compile(r"\s*(?:-\s*>|→|=>)\s*")
_CHAIN_SEP = re.compile(r"[,;\n]+")
MAX_SUB_QUERY_CHARS = 500
"""Longer sub-queries are refused unless the query itself is longer (`sub_query_char_limit`): a
decomposer that runs on inside one tag has failed."""
REWORDING_CHARS = 100
"""How much longer than its query a sub-query may be (a rewording, a `#k` spelled out)."""
REFERENCE = re.compile(r"#(\d+)")
"""`#k` in a sub-query: the answer of sub-query k belongs here."""
_NO_DEPS = {"", "none", "n/a", "no dependencies", "-"}


def ancestors_of(node: int, parents: Mapping[int, Iterable[int]]) -> set[int]:
    """Every node that `node` depends on, directly or not; `parents` maps a node to its parents
    (a node missing from it has none)."""
    found: set[int] = set()
    todo = list(parents.get(node, ()))
    while todo:
        if (parent := todo.pop()) not in found:
            found.add(parent)
            todo += parents.get(parent, ())
    return found


def sub_query_char_limit(query: str) -> int:
    """The longest sub-query accepted in a decomposition of `query`.

    A part may be nearly as long as the whole query (a multiple-choice question with long
    options, a clinical vignette), so the limit grows with the query; only a sub-query longer
    than the query and a rewording shows a decomposer that ran on.
    """
    return max(MAX_SUB_QUERY_CHARS, len(query) + REWORDING_CHARS)


def parse_decomposition(
    text: str,
    max_sub_queries: int = DEFAULT_MAX_SUB_QUERIES,
    max_chars: int = MAX_SUB_QUERY_CHARS,
) -> QueryGraph:
    """Parse a decomposer's output into a query graph.

    Accepted, tolerantly (extra text around them is ignored):
      1. the paper's tagged format: `<q>…</q>` (or `<q>…<\\q>`) per sub-query, then
         `<dep>1->2, 2->3</dep>` (or one `<dep>` per edge); `→`, `- >`, `;` and newlines also
         work;
      2. the paper's prompt format: a numbered list `1. …` followed by
         `Dependency Graph: "1 -> 2 -> 3"` chains;
      3. `#k` references inside a sub-query (MuSiQue, Break, StrategyQA), which imply k -> this one.

    Args:
        text: The decomposer's raw output.
        max_sub_queries: Reject decompositions with more sub-queries than this.
        max_chars: Reject a sub-query longer than this; pass `sub_query_char_limit(query)`
            when the query is known.

    Returns:
        The validated query graph; ids are 1-based in the order written.

    Raises:
        DecompositionError: no sub-query, too many, one over `max_chars`, a cycle, a
            self-dependency, or a dependency on a sub-query that does not exist.
    """
    questions, dep_text = _split_format(text)
    for number, question in enumerate(questions, start=1):
        if not question.strip():
            raise DecompositionError(f"sub-query {number} is empty")
        if len(question) > max_chars:
            raise DecompositionError(
                f"sub-query {number} is {len(question)} characters long "
                f"(at most {max_chars}): the decomposer ran on inside it"
            )
    if not questions:
        raise DecompositionError(
            "no sub-query found: expected <q>…</q> tags or a numbered list '1. …'"
        )
    if len(questions) > max_sub_queries:
        raise DecompositionError(
            f"{len(questions)} sub-queries exceed the maximum of {max_sub_queries}"
        )
    edges = set(_parse_dependencies(dep_text))
    for child, question in enumerate(questions, start=1):
        edges.update((int(k), child) for k in REFERENCE.findall(question))
    parents: dict[int, set[int]] = {i: set() for i in range(1, len(questions) + 1)}
    for parent, child in edges:
        for end in (parent, child):
            if end not in parents:
                raise DecompositionError(
                    f"dependency {parent}->{child} names sub-query {end}, "
                    f"but only {len(questions)} exist"
                )
        parents[child].add(parent)
    return QueryGraph(
        tuple(SubQuery(i, q, tuple(sorted(parents[i]))) for i, q in enumerate(questions, start=1))
    )


def _split_format(text: str) -> tuple[list[str], str]:
    """Find the sub-queries and the dependency text of whichever format `text` is in."""
    if _UNCLOSED_Q.search(text):
        raise DecompositionError("the last <q> is never closed (was the output cut off?)")
    tagged = _TAGGED_Q.findall(text)
    if tagged:
        # a decomposer without the grammar may write one <dep> per edge
        return tagged, ", ".join(_TAGGED_DEP.findall(text))
    graph_match = _DEP_GRAPH.search(text)
    listing = text[: graph_match.start()] if graph_match else text
    numbered = [m for m in map(_NUMBERED.match, listing.splitlines()) if m]
    if [int(m.group(1)) for m in numbered] != list(range(1, len(numbered) + 1)):
        if numbered:
            raise DecompositionError("numbered sub-queries must be numbered 1, 2, 3, … in order")
        return [], ""
    return [m.group(2) or "" for m in numbered], graph_match.group(1) if graph_match else ""


def _parse_dependencies(text: str) -> Iterable[tuple[int, int]]:
    """Read `1->2, 2->3` or chains `1 -> 2 -> 3`; each chain yields consecutive pairs."""
    for chain in _CHAIN_SEP.split(text.strip().strip("\"'`")):
        chain = chain.strip().strip("\"'`.")
        if chain.lower() in _NO_DEPS:
            continue
        nodes = [_node_number(part, chain) for part in _ARROW.split(chain)]
        yield from itertools.pairwise(nodes)


def _node_number(part: str, chain: str) -> int:
    numbers = re.findall(r"\d+", part)
    if len(numbers) != 1:
        raise DecompositionError(f"cannot read the dependency {chain!r}: expected 'i->j'")
    return int(numbers[0])
