"""Gold decompositions from MuSiQue, StrategyQA and Break, as the paper's target sequences.

Each builder reads one dataset file and yields `DecompositionExample`s whose `graph` is a validated
`QueryGraph`; `example.target` is the tagged text `<q>…</q>…<dep>i->j</dep>` the decomposer learns
to write. `#k` references stay in the sub-query text (the executor substitutes sub-query k's
answer there) and also become edges. Splits are deterministic: a hash of the question id
(`splits.decomposition_split`).

Two kinds of composed question are gold decompositions too: `conjunctions` (two independent
dataset questions joined, no edge between them) and `as_examples` (the composed multi-domain
questions of `compositions`, whose parts are the gold sub-queries). Three more reshape the
datasets' own gold for shapes a decomposer trained on them gets wrong: `chained_conjunctions` (a
two-hop chain joined with an independent single-hop question), `relative_chains` (chains whose
bridge is a relative clause, "the place where the Chausie breed originated") and `single_counts`
(Break's single-hop counts as one sub-query).
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compllm_graph.datasets.splits import DecompositionSplit, decomposition_split
from compllm_graph.errors import CompLLMError
from compllm_graph.query_graph import (
    DEFAULT_MAX_SUB_QUERIES,
    REFERENCE,
    DecompositionError,
    QueryGraph,
    SubQuery,
)

DATASETS = ("musique", "strategyqa", "break")
BREAK_SOURCES = ("cwq", "drop")
"""The question sets inside the shared Break file, by question-id prefix: ComplexWebQuestions
(knowledge-base chains, conjunctions, comparisons and superlatives, the kind HotpotQA asks) and
DROP (counts and arithmetic over a passage)."""

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,?.!;:])")
_SPACES = re.compile(r"\s+")
_BREAK_RETURN = re.compile(r"^\s*return\s+", re.IGNORECASE)
_PREPOSITIONS = {"by", "in", "with", "at", "of", "to", "on", "after", "from", "for", "into"}


@dataclass(frozen=True)
class DecompositionExample:
    """A question with its gold decomposition.

    Attributes:
        qid: The dataset's question id (the split is a hash of it).
        question: The complex question.
        graph: The gold query graph.
        dataset: One of `DATASETS`.
    """

    qid: str
    question: str
    graph: QueryGraph
    dataset: str

    @property
    def target(self) -> str:
        """The paper's target sequence for this example."""
        return self.graph.to_text()

    @property
    def split(self) -> DecompositionSplit:
        return decomposition_split(self.qid)

    @property
    def source(self) -> str:
        """The question set it comes from: Break's (`BREAK_SOURCES`, from the id's prefix,
        `CWQ_dev_1` is `cwq`), else its dataset."""
        if self.dataset == "break":
            return self.qid.split("_", 1)[0].lower()
        return self.dataset


def without_sources(
    examples: Iterable[DecompositionExample], sources: Iterable[str]
) -> list[DecompositionExample]:
    """`examples` but those whose `source` is one of `sources`."""
    left_out = set(sources)
    return [e for e in examples if e.source not in left_out]


class DatasetFormatError(CompLLMError, ValueError):
    """A dataset file is not MuSiQue JSON, StrategyQA JSON or Break CSV."""


def tidy(text: str) -> str:
    """Collapse whitespace and drop the space the datasets put before punctuation."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text)).strip()


def musique_step(text: str) -> str:
    """MuSiQue writes Wikidata hops as `subject >> relation`; make them read as a query.

    `Green >> performer` becomes `performer of Green`; a relation ending in a preposition
    (`UHF >> distributed by`) becomes `UHF distributed by what?`.
    """
    if ">>" not in text:
        return tidy(text)
    subject, _, relation = (part.strip() for part in text.partition(">>"))
    if relation.rsplit(" ", 1)[-1].lower() in _PREPOSITIONS:
        return tidy(f"{subject} {relation} what?")
    return tidy(f"{relation} of {subject}")


def break_step(text: str) -> str:
    """Break writes every QDMR step as `return …`; keep only the step itself."""
    return tidy(_BREAK_RETURN.sub("", text))


def graph_from_steps(steps: Sequence[str]) -> QueryGraph:
    """A query graph whose edges are the `#k` references inside the steps.

    Raises:
        DecompositionError: no steps, too many, an empty step, or a reference to a step that
            does not come earlier.
    """
    if len(steps) > DEFAULT_MAX_SUB_QUERIES:
        raise DecompositionError(f"{len(steps)} steps exceed {DEFAULT_MAX_SUB_QUERIES}")
    nodes = []
    for i, step in enumerate(steps, start=1):
        if not step:
            raise DecompositionError(f"step {i} is empty")
        parents = sorted({int(k) for k in REFERENCE.findall(step)})
        if any(p >= i or p < 1 for p in parents):
            raise DecompositionError(f"step {i} refers to a step that does not come before it")
        nodes.append(SubQuery(i, step, tuple(parents)))
    return QueryGraph(tuple(nodes))


def _examples(
    rows: Iterable[tuple[str, str, list[str]]], dataset: str
) -> Iterator[DecompositionExample]:
    """Build examples, skipping the few gold decompositions that are not a valid graph."""
    for qid, question, steps in rows:
        try:
            graph = graph_from_steps(steps)
        except DecompositionError:
            continue
        yield DecompositionExample(qid, tidy(question), graph, dataset)


def load_musique(path: Path) -> list[DecompositionExample]:
    """MuSiQue JSON (a list) or JSONL with `id`, `question`, `question_decomposition`."""
    records = _read_json_records(path)
    rows = (
        (
            str(r["id"]),
            r["question"],
            [musique_step(step["question"]) for step in r["question_decomposition"]],
        )
        for r in records
    )
    return list(_examples(rows, "musique"))


def load_strategyqa(path: Path) -> list[DecompositionExample]:
    """StrategyQA JSON with `qid`, `question`, `decomposition` (a list of steps)."""
    records = _read_json_records(path)
    rows = ((str(r["qid"]), r["question"], [tidy(s) for s in r["decomposition"]]) for r in records)
    return list(_examples(rows, "strategyqa"))


def load_break(path: Path) -> list[DecompositionExample]:
    """Break QDMR CSV with `question_id`, `question_text`, `decomposition` (steps split by `;`)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"question_id", "question_text", "decomposition"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetFormatError(f"{path}: not a Break QDMR CSV, missing columns {missing}")
        rows = [
            (
                r["question_id"],
                r["question_text"],
                [break_step(step) for step in r["decomposition"].split(";")],
            )
            for r in reader
        ]
    return list(_examples(rows, "break"))


def load_examples(path: str | Path) -> list[DecompositionExample]:
    """Read any supported file, recognising its format from its columns or keys.

    Raises:
        FileNotFoundError: `path` does not exist.
        DatasetFormatError: the file is none of the supported formats.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file at {path}")
    if path.suffix.lower() == ".csv":
        return load_break(path)
    records = _read_json_records(path)
    first = records[0] if records else {}
    if "question_decomposition" in first:
        return load_musique(path)
    if "decomposition" in first and "qid" in first:
        return load_strategyqa(path)
    raise DatasetFormatError(
        f"{path}: expected MuSiQue (question_decomposition), StrategyQA (qid, decomposition) "
        "or a Break CSV"
    )


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.split("\n") if line.strip()]
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path}: neither JSON nor JSON lines ({err})") from err
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DatasetFormatError(f"{path}: expected a list of objects")
    return data


def default_files(data_dir: Path) -> dict[str, Path]:
    """Where each dataset lives under the shared data folder."""
    return {
        "musique": data_dir / "musique" / "musique_ans_v1.0_dev_decomp_only.json",
        "strategyqa": data_dir / "strategyqa" / "train.json",
        "break": data_dir / "break_qdmr" / "QDMR-high-level_dev_no_hotpot.csv",
    }


def select(
    examples: Iterable[DecompositionExample], split: DecompositionSplit
) -> list[DecompositionExample]:
    """The examples of one split, in file order."""
    return [e for e in examples if e.split == split]


def mix(
    pools: dict[str, list[DecompositionExample]],
    total: int,
    weights: dict[str, float],
    seed: int = 0,
) -> list[DecompositionExample]:
    """Draw `total` examples from several pools in proportion to `weights`, shuffled.

    A pool too small for its share gives all it has and the others make up the difference.

    Raises:
        ValueError: `total` is not positive, a weight names no pool, or the pools hold fewer
            than `total` examples together.
    """
    if total <= 0:
        raise ValueError("the number of training examples must be positive")
    unknown = set(weights) - set(pools)
    if unknown:
        raise ValueError(f"weights for unknown datasets {sorted(unknown)}")
    available = sum(len(pools[name]) for name in weights if weights[name] > 0)
    if available < total:
        raise ValueError(f"asked for {total} examples but only {available} are available")
    rng = random.Random(seed)
    shuffled = {name: rng.sample(pools[name], len(pools[name])) for name in weights}
    quota = _quotas({name: len(shuffled[name]) for name in weights}, total, weights)
    chosen = [e for name in weights for e in shuffled[name][: quota[name]]]
    rng.shuffle(chosen)
    return chosen


def _quotas(sizes: dict[str, int], total: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer shares of `total` by weight, capped by each pool's size."""
    quota = dict.fromkeys(sizes, 0)
    remaining = total
    open_pools = {n for n in sizes if weights[n] > 0}
    while remaining > 0 and open_pools:
        # Summed in a fixed order: a set's order varies with the hash seed, and so would the float.
        weight_sum = sum(weights[n] for n in sorted(open_pools))
        shares = {n: max(1, int(remaining * weights[n] / weight_sum)) for n in sorted(open_pools)}
        for name, share in shares.items():
            take = min(share, sizes[name] - quota[name], remaining)
            quota[name] += take
            remaining -= take
            if quota[name] == sizes[name]:
                open_pools.discard(name)
    return quota


CONJUNCTION = "conjunction"
"""The dataset name of composed questions (see `conjunctions`)."""
COMPOSED = "composed"
"""The dataset name of composed multi-domain questions (see `as_examples`)."""
COMPOSED_EASY = "composed_easy"
"""The dataset name of composed questions from the easy tier's sources, whose parts can be a
whole abstract and its question (`training.composed.composed_easy_examples`)."""

_QUESTION_STARTS = {
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how",
    "is", "are", "was", "were", "do", "does", "did", "can", "could", "will", "would",
    "has", "have", "had", "in", "on", "at",
}  # fmt: skip
_MAX_PART_STEPS = 3

Part = tuple[str, str, list[str]]
"""A part of a composed question: its id, its question and its steps."""


def conjunctions(
    pools: dict[str, list[DecompositionExample]], count: int, seed: int = 0
) -> list[DecompositionExample]:
    """Questions that join two independent questions, with no edge between the two parts.

    Every gold decomposition in MuSiQue, StrategyQA and Break is one connected graph, so a
    decomposer trained on them alone links independent parts too ("Which organelle makes ATP,
    and what is the formula of glucose?" comes out as a chain). Each part here is either a
    single-hop question (a gold step with no `#k` that reads as a question) or a whole example
    of up to three steps; the second part's references are renumbered after the first's.

    Args:
        pools: Examples to draw parts from; pass train splits only, so no test question leaks.
        count: How many composed examples to make (fewer if the pools are too small).
        seed: Drawing is deterministic for a seed.

    Returns:
        Examples named `CONJUNCTION`, each with a qid `a+b` built from its parts' qids.
    """
    examples = [e for pool in pools.values() for e in pool]
    wholes = [e for e in examples if len(e.graph.sub_queries) <= _MAX_PART_STEPS]
    singles = _single_hops(examples)
    if len(wholes) < 2 or len(singles) < 2:
        return []

    def pair(rng: random.Random) -> tuple[Part, Part] | None:
        first, second = (_part(rng, wholes, singles) for _ in range(2))
        return None if first[0] == second[0] else (first, second)

    return _draw(pair, count, random.Random(seed), CONJUNCTION)


def _draw(
    pair: Callable[[random.Random], tuple[Part, Part] | None],
    count: int,
    rng: random.Random,
    dataset: str,
) -> list[DecompositionExample]:
    """Up to `count` examples, each joining the two parts one call of `pair` draws (None: a
    draw to skip), in at most `3 * count` draws; a qid drawn again replaces the earlier one."""
    composed: dict[str, DecompositionExample] = {}
    for _ in range(count * 3):
        if len(composed) == count:
            break
        parts = pair(rng)
        if parts is not None:
            example = _compose(*parts, rng, dataset)
            composed[example.qid] = example
    return list(composed.values())


def _compose(first: Part, second: Part, rng: random.Random, dataset: str) -> DecompositionExample:
    """One question joining two parts, the second part's `#k` renumbered after the first's."""
    question = _join(first[1], second[1], rng)
    steps = [*first[2], *(_shift(step, len(first[2])) for step in second[2])]
    return DecompositionExample(
        f"{first[0]}+{second[0]}", question, graph_from_steps(steps), dataset
    )


def _single_hops(examples: Iterable[DecompositionExample]) -> list[Part]:
    parts = []
    for e in examples:
        for node in e.graph.sub_queries:
            text = node.text
            # graph_from_steps made every `#k` a parent, so no parents means no reference.
            if node.parents or not text.endswith("?"):
                continue
            if text.split(" ", 1)[0].lower() in _QUESTION_STARTS:
                parts.append((f"{e.qid}/{node.id}", text, [text]))
    return parts


def _part(rng: random.Random, wholes: list[DecompositionExample], singles: list[Part]) -> Part:
    # Single hops dominate: the demo-style "X, and Y?" is the shape the datasets lack most.
    if rng.random() < 0.7:
        return rng.choice(singles)
    whole = rng.choice(wholes)
    return whole.qid, whole.question, [n.text for n in whole.graph.sub_queries]


def _shift(step: str, offset: int) -> str:
    return REFERENCE.sub(lambda m: f"#{int(m.group(1)) + offset}", step)


def _join(first: str, second: str, rng: random.Random) -> str:
    head = first.rstrip(" ?.")
    starts_with_question_word = second.split(" ", 1)[0].lower() in _QUESTION_STARTS
    tail = second[0].lower() + second[1:] if starts_with_question_word else second
    if rng.random() < 0.7:
        return f"{head}, and {tail}"
    return f"{head}? Also, {tail}"


CHAINED_CONJUNCTION = "chained_conjunction"
"""The dataset name of a two-hop chain joined with a single-hop question (see
`chained_conjunctions`)."""
RELATIVE_CHAIN = "relative_chain"
"""The dataset name of chains whose bridge is a relative clause (`relative_chains`)."""
SINGLE_COUNT = "single_count"
"""The dataset name of Break's single-hop counts kept as one sub-query (`single_counts`)."""

_RELATIVE_CLAUSE = re.compile(
    r"\b(?:the|a|an)\s+(?:[\w'-]+\s+){0,3}?[\w'-]+\s+(?:that|which|where|who|whom|whose)\b",
    re.IGNORECASE,
)
"""A noun phrase with a relative clause: "the element that …", "the place where …"."""
_FILTER_STEP = re.compile(r"^#\d+\s+(?:that|which|who|whom|whose|where)\b", re.IGNORECASE)
"""A QDMR filter ("#1 that speaks Arabic"): it narrows #1 rather than asking about it."""
_OPERATION_STEP = re.compile(
    r"^(?:the\s+)?(?:number|sum|difference|total|average|highest|lowest|largest|smallest|"
    r"maximum|minimum)\s+of\s+(?:#\d+|\d)",
    re.IGNORECASE,
)
"""A QDMR operation on earlier results ("number of #1", "the difference of 100 and #1")."""
_COUNT_STEP = re.compile(r"^(?:the\s+)?number\s+of\s+#1$", re.IGNORECASE)


def is_bridge_chain(example: DecompositionExample, max_steps: int = 2) -> bool:
    """Whether the gold steps form a chain of 2 to `max_steps` bridges: each later step asks
    about the one before it ("the form of government of #1"), none only filters it ("#1 that
    …") or operates on it ("number of #1")."""
    nodes = example.graph.sub_queries
    if not 2 <= len(nodes) <= max_steps:
        return False
    return all(
        node.parents == (node.id - 1,)
        and not _FILTER_STEP.match(node.text)
        and not _OPERATION_STEP.match(node.text)
        for node in nodes[1:]
    )


def chained_conjunctions(
    chains: Iterable[DecompositionExample],
    singles_from: Iterable[DecompositionExample],
    count: int,
    seed: int = 0,
) -> list[DecompositionExample]:
    """A two-hop chain joined with an independent single-hop question, in either order.

    `conjunctions` joins whole questions and single hops at random, so a chain is rarely one
    half of a question ("What is the chemical symbol of the element that makes up most of the
    Sun, and how many bones are in an adult human body?"); a decomposer trained on it writes
    such a half back whole. Here one part is always a two-step bridge chain (`is_bridge_chain`)
    and the other a single-hop question; the target is the chain's two steps with their edge
    and the single step, the later part's `#k` renumbered (`<q>A</q><q>B of #1</q><q>C?</q>`
    with 1->2, or `<q>C?</q><q>A</q><q>B of #2</q>` with 2->3).

    Args:
        chains: Examples to take chain parts from (those that are two-step bridge chains).
        singles_from: Examples whose single-hop steps (no `#k`, read as a question) are the
            other parts. Pass train splits only, so no test question leaks.
        count: How many examples to make (fewer if the pools are too small).
        seed: Drawing is deterministic for a seed.

    Returns:
        Examples named `CHAINED_CONJUNCTION`, each with a qid `a+b` built from its parts' qids.
    """
    chain_parts = [
        (e.qid, e.question, [n.text for n in e.graph.sub_queries])
        for e in chains
        if is_bridge_chain(e, 2)
    ]
    singles = _single_hops(singles_from)
    if not chain_parts or not singles:
        return []

    def pair(rng: random.Random) -> tuple[Part, Part] | None:
        chain, single = rng.choice(chain_parts), rng.choice(singles)
        if single[0].split("/")[0] == chain[0]:
            return None  # a step of the chain itself is not independent of it
        return (chain, single) if rng.random() < 0.5 else (single, chain)

    return _draw(pair, count, random.Random(seed), CHAINED_CONJUNCTION)


def relative_chains(
    examples: Iterable[DecompositionExample], max_steps: int = 3
) -> list[DecompositionExample]:
    """Questions whose hidden bridge is a relative clause, with their own gold chain.

    "What form of government is used in the place where the Chausie breed originated?" asks
    first for "the place where the Chausie breed originated", then "the form of government of
    #1". MuSiQue and Break (its ComplexWebQuestions rows) hold such questions with gold steps
    that are bridge chains (`is_bridge_chain`); this selects them, unchanged but renamed
    `RELATIVE_CHAIN`, so that a mix can weigh the shape a decomposer left whole.

    Args:
        examples: The examples to select from (pass train splits only).
        max_steps: Longest chain kept.
    """
    return [
        replace(e, dataset=RELATIVE_CHAIN)
        for e in examples
        if _RELATIVE_CLAUSE.search(e.question) and is_bridge_chain(e, max_steps)
    ]


def is_single_count(example: DecompositionExample) -> bool:
    """Whether the gold is Break's count of one retrieval: `X`, then `number of #1`."""
    nodes = example.graph.sub_queries
    return len(nodes) == 2 and bool(_COUNT_STEP.match(nodes[1].text))


def single_counts(examples: Iterable[DecompositionExample]) -> list[DecompositionExample]:
    """Break's single-hop counts as one sub-query: the question itself.

    QDMR writes "How many years did the Polish-Soviet War last?" as "years the Polish-Soviet
    War did last" then "number of #1" (11 % of Break's high-level rows), and a decomposer
    trained on it splits "How many bones are in an adult human body?" the same way, handing an
    expert a first part that is no question. Here the count is one sub-query, the question,
    which an expert answers directly. A question holding `#k` text cannot be one sub-query and
    is left out.

    Returns:
        Examples named `SINGLE_COUNT`, with the qids of the Break rows they rewrite.
    """
    rewritten = []
    for e in examples:
        if not is_single_count(e):
            continue
        try:
            graph = graph_from_steps([e.question])
        except DecompositionError:
            continue
        rewritten.append(DecompositionExample(e.qid, e.question, graph, SINGLE_COUNT))
    return rewritten


def as_examples(records: Sequence[Mapping]) -> list[DecompositionExample]:
    """Composed questions (the answer benchmarks' format) as decomposition examples.

    Their parts are the gold sub-queries, with two exceptions: a record whose option text reads
    as `#k` is skipped, and socratic steps (edges, but no `#k`) become `socratic_graph`'s.
    """
    examples = []
    for record in records:
        texts = [part["question"] for part in record["parts"]]
        try:
            if record["edges"] and not any(REFERENCE.search(t) for t in texts):
                graph = socratic_graph(texts)
            else:
                graph = graph_from_steps(texts)
        except DecompositionError:
            continue  # an option text that reads as a `#k` reference
        examples.append(DecompositionExample(record["id"], record["question"], graph, COMPOSED))
    return examples


def socratic_graph(steps: Sequence[str]) -> QueryGraph:
    """Steps of one problem, each written with the problem's context, as a query graph: the
    context stays in the first step only, and each step's parents are all the steps before it,
    so every step sees the context and the earlier results (the executor's context passing)."""
    cut = _shared_context_length(steps)
    texts = [steps[0], *(s[cut:] for s in steps[1:])]
    return QueryGraph(
        tuple(SubQuery(i, text, tuple(range(1, i))) for i, text in enumerate(texts, start=1))
    )


def _shared_context_length(steps: Sequence[str]) -> int:
    """The length of the whole sentences every step starts with (0 when none)."""
    # The lexicographic first and last strings share exactly the prefix all of them share.
    first, last = min(steps), max(steps)
    size = next((i for i, (a, b) in enumerate(zip(first, last)) if a != b), len(first))
    prefix = first[:size]
    ends = [prefix.rfind(mark) for mark in (". ", "? ", "! ")]
    end = max(ends)
    return end + 2 if end >= 0 and all(len(s) > end + 2 for s in steps) else 0


__all__ = [
    "BREAK_SOURCES",
    "CHAINED_CONJUNCTION",
    "COMPOSED",
    "COMPOSED_EASY",
    "CONJUNCTION",
    "DATASETS",
    "RELATIVE_CHAIN",
    "SINGLE_COUNT",
    "DatasetFormatError",
    "DecompositionExample",
    "as_examples",
    "break_step",
    "chained_conjunctions",
    "conjunctions",
    "default_files",
    "graph_from_steps",
    "is_bridge_chain",
    "is_single_count",
    "load_break",
    "load_examples",
    "load_musique",
    "load_strategyqa",
    "mix",
    "musique_step",
    "relative_chains",
    "select",
    "single_counts",
    "socratic_graph",
    "tidy",
    "without_sources",
]
