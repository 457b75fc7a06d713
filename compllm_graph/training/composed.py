"""Composed multi-domain questions for the decomposer's training mix (`composed` in `--mix`).

MuSiQue, StrategyQA and Break have no question made of several multiple-choice parts, so a
decomposer trained on them alone drops each part's options or splits one part into hops. These
examples join train-split items of different domains, each part kept whole with its options,
as the benchmarks do, but with other joining templates (so the benchmarks' wording stays
unseen) and only train-split items (so no benchmark item is learnt).

Half are dependent: half of those bridges, whose later part refers to the earlier answer as `#k`,
and half GSM8K problems asked as their socratic steps. A step names no `#k`: it needs the
problem's context and the earlier results, so its gold sub-query is the step alone, the context
stays in the first sub-query, and every earlier step is its parent (the executor gives a child
its parents' questions and answers). Without these, a decomposer splits such a problem into
steps with no dependency and the later steps lose the problem they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from compllm_graph.evaluation.compose import compose_dependent, compose_parallel
from compllm_graph.evaluation.items import SOURCES, domain_items, gsm8k_items, socratic_chains
from compllm_graph.query_graph import REFERENCE, DecompositionError, QueryGraph, SubQuery
from compllm_graph.training.data import DecompositionExample, graph_from_steps

COMPOSED = "composed"

TRAINING_TEMPLATES: Mapping[int, tuple[str, ...]] = {
    2: (
        "{0} In addition, {1}",
        "Question 1: {0} Question 2: {1}",
        "Can you help me with two questions? {0} The other one: {1}",
        "{0} Furthermore: {1}",
    ),
    3: (
        "Question 1: {0} Question 2: {1} Question 3: {2}",
        "{0} In addition, {1} Lastly, {2}",
        "Here are three questions. {0} / {1} / {2}",
    ),
}
"""Joining templates of the training compositions; none is a benchmark template."""

TRAINING_BRIDGE_TEMPLATES = ("{0} Afterwards: {1}", "Solve this: {0} And then: {1}")

TRAINING_STEP_TEMPLATES: Mapping[int, tuple[str, ...]] = {
    2: ("{context} To begin: {0} After that: {1}", "{context} {0} Using this, {1}"),
    3: (
        "{context} Step one: {0} Step two: {1} Step three: {2}",
        "{context} {0} After that, {1} In the end, {2}",
    ),
}
"""Templates of the training socratic questions; none is a benchmark template."""


def composed_examples(data_dir: Path, count: int, seed: int = 0) -> list[DecompositionExample]:
    """`count` training compositions: 3/8 of 2 parallel parts, 1/8 of 3, 1/3 dependent 2-part
    (bridges and socratic steps, alternately), the rest dependent 3-part.

    Raises:
        ValueError: the train split holds too few items.
    """
    pools = {domain: domain_items(data_dir, domain) for domain in SOURCES}
    maths = [*gsm8k_items(data_dir, "train"), *gsm8k_items(data_dir)]
    chains = list(socratic_chains(data_dir))  # compose_dependent keeps the train split's
    two, three, dependent_two = count * 3 // 8, count // 8, count // 3
    records = [
        *compose_parallel(pools, 2, two, seed, split="train", templates=TRAINING_TEMPLATES),
        *compose_parallel(pools, 3, three, seed, split="train", templates=TRAINING_TEMPLATES),
    ]
    for parts, size in ((2, dependent_two), (3, count - two - three - dependent_two)):
        records += compose_dependent(
            maths,
            chains,
            parts,
            size,
            seed,
            split="train",
            bridge_templates=TRAINING_BRIDGE_TEMPLATES,
            step_templates=TRAINING_STEP_TEMPLATES,
        )
    return as_examples(records)


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
    "COMPOSED",
    "TRAINING_BRIDGE_TEMPLATES",
    "TRAINING_STEP_TEMPLATES",
    "TRAINING_TEMPLATES",
    "as_examples",
    "composed_examples",
    "socratic_graph",
]
