"""Composed multi-domain questions: the paper's benchmarks, and the decomposer's training ones.

The answer benchmarks are built from single-domain items of the test split; the decomposer's
training compositions (`training.composed`) come from the train split, with other templates.

- MultiExpertQA-P (`compose_parallel`): 2 or 3 parts from different domains joined into one
  question, with no dependency. Each part keeps its own options in the text, and the joining
  template varies, so a decomposer cannot rely on one fixed header.
- MultiExpertQA-All (`compose_dependent`): a later part needs an earlier part's answer. Half
  the questions are GSM8K problems asked as their socratic steps (real dependent steps with
  numeric answers); the other half are bridges (`bridges`): a GSM8K answer is the atomic number
  of the element asked for next, and with 3 parts that element is then asked about in biology.

Builds are seeded and use the items of one split only; benchmark builds also leave out every
question that built a centroid. Records have exactly the benchmark keys: `id`, `question`,
`parts` (each `question`, `answer`, `choices`, `domain`) and `edges` (1-based part indices,
earlier part first).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from compllm_graph.datasets.bridges import atomic_number, body_element_part, element_part
from compllm_graph.datasets.items import Chain, Item, as_text, centroid_texts, lettered
from compllm_graph.datasets.splits import ItemSplit, item_split

TEMPLATES: Mapping[int, tuple[str, ...]] = {
    2: (
        "{0} Also, {1}",
        "I have two questions. First: {0} Second: {1}",
        "Please answer both. {0} And then: {1}",
        "Two things: {0} Moreover, {1}",
        "First, {0} Then, {1}",
    ),
    3: (
        "I have three questions. First: {0} Second: {1} Third: {2}",
        "{0} Next, {1} Finally, {2}",
        "Please answer all of these. 1) {0} 2) {1} 3) {2}",
        "First, {0} Then, {1} And last, {2}",
    ),
}
"""Joining templates of MultiExpertQA-P, by part count."""

STEP_TEMPLATES: Mapping[int, tuple[str, ...]] = {
    2: ("{context} First: {0} Then: {1}", "{context} Answer two things. {0} And: {1}"),
    3: ("{context} First: {0} Next: {1} Finally: {2}", "{context} Work it out. {0} {1} {2}"),
}
"""Templates of the socratic questions of MultiExpertQA-All."""

BRIDGE_TEMPLATES: tuple[str, ...] = ("{0} Then: {1}", "First: {0} Next: {1}", "{0} With that: {1}")
"""Templates joining a bridge's parts (each part's text in order)."""


def compose_parallel(
    pools: Mapping[str, Sequence[Item]],
    parts: int,
    count: int,
    seed: int = 0,
    exclude: Collection[str] | None = None,
    *,
    split: ItemSplit = "test",
    templates: Mapping[int, Sequence[str]] = TEMPLATES,
) -> list[dict[str, Any]]:
    """`count` composed questions of `parts` parts, each part from a different domain.

    Args:
        pools: Domain -> its items; only items of `split` are used.
        parts: 2 or 3.
        count: Questions to build; no item is used twice.
        seed: Makes the build reproducible.
        exclude: Questions that built a centroid or trained a model, never used as parts;
            None: the demo store's (`centroid_texts`).
        split: `test` for benchmarks; `train` for the decomposer's training compositions.
        templates: Joining templates by part count (training uses other ones than benchmarks).

    Returns:
        Records with exactly the benchmark keys: `id`, `question`, `parts`, `edges`.

    Raises:
        ValueError: an unsupported part count, fewer domains than parts, or too few items.
    """
    if parts not in TEMPLATES:
        raise ValueError(f"parts must be one of {sorted(TEMPLATES)}, got {parts}")
    rng = random.Random(seed)
    used = left_out(exclude, split, pools.values())
    available = {
        domain: benchmark_items(items, used, rng, split) for domain, items in sorted(pools.items())
    }
    if len(available) < parts:
        raise ValueError(f"{parts} parts need {parts} domains, got {sorted(available)}")
    records = []
    for number in range(count):
        left = sorted(d for d, items in available.items() if items)
        if len(left) < parts:
            raise ValueError(f"the pools ran out of items after {number} questions")
        domains = rng.sample(left, parts)
        chosen = [available[d].pop() for d in domains]
        template = rng.choice(templates[parts])
        records.append(
            {
                "id": f"p{parts}-{split}-{seed}-{number}"
                if split != "test"
                else f"p{parts}-{seed}-{number}",
                "question": template.format(*(as_text(item) for item in chosen)),
                "parts": [
                    {
                        "question": as_text(item),
                        "answer": item.answer,
                        "choices": list(item.choices) if item.choices else None,
                        "domain": item.domain,
                    }
                    for item in chosen
                ],
                "edges": [],
            }
        )
    return records


def compose_dependent(
    maths: Sequence[Item],
    chains: Sequence[Chain],
    parts: int,
    count: int,
    seed: int = 0,
    exclude: Collection[str] | None = None,
    *,
    split: ItemSplit = "test",
    bridge_templates: Sequence[str] = BRIDGE_TEMPLATES,
    step_templates: Mapping[int, Sequence[str]] = STEP_TEMPLATES,
) -> list[dict[str, Any]]:
    """`count` MultiExpertQA-All questions of `parts` dependent parts (a chain 1 -> 2 -> 3).

    Even-numbered questions are socratic GSM8K steps, odd-numbered ones bridges from a GSM8K
    answer to chemistry (and, with 3 parts, on to biology); with no chains, all are bridges.

    Args:
        maths: Word problems with numeric answers for the bridges' first part (`gsm8k_items`;
            the easy tier's also `asdiv_items`).
        chains: Socratic GSM8K problems (`socratic_chains`); may be empty.
        parts: 2 or 3.
        count: Questions to build; no problem is used twice.
        seed: Makes the build reproducible.
        exclude: Questions never used (see `compose_parallel`).
        split: `test` for benchmarks; `train` for the decomposer's training compositions.
        bridge_templates: Templates joining a bridge's parts.
        step_templates: Templates of the socratic questions, by part count.

    Raises:
        ValueError: an unsupported part count, or too few problems.
    """
    if parts not in STEP_TEMPLATES:
        raise ValueError(f"parts must be one of {sorted(STEP_TEMPLATES)}, got {parts}")
    rng = random.Random(f"all-{parts}-{seed}")
    used = left_out(exclude, split, [maths])
    used_text = "\x00".join(used) if used else None  # one search a chain, not one a text
    steps = [c for c in chains if _usable_chain(c, used_text, split) and len(c.steps) >= parts]
    rng.shuffle(steps)
    numbers = [i for i in benchmark_items(maths, used, rng, split) if atomic_number(i.answer)]
    taken: set[str] = set()
    records = []
    for number in range(count):
        socratic = bool(chains) and number % 2 == 0
        pool: list = steps if socratic else numbers
        while pool and pool[-1].id in taken:
            pool.pop()  # a problem already used by the other kind
        if not pool:
            raise ValueError(f"the problems ran out after {number} questions")
        source = pool.pop()
        taken.add(source.id)
        built = (
            _socratic(source, parts, rng, step_templates[parts])
            if socratic
            else _bridge(source, parts, rng, bridge_templates)
        )
        prefix = f"all{parts}" if split == "test" else f"all{parts}-{split}"
        records.append({"id": f"{prefix}-{seed}-{number}", **built})
    return records


def _socratic(
    chain: Chain, parts: int, rng: random.Random, templates: Sequence[str]
) -> dict[str, Any]:
    """The first `parts - 1` steps and the last one, each part with the problem's context."""
    chosen = [*chain.steps[: parts - 1], chain.steps[-1]]
    template = rng.choice(templates)
    return {
        "question": template.format(*(q for q, _ in chosen), context=chain.context),
        "parts": [
            {
                "question": f"{chain.context} {q}",
                "answer": a,
                "choices": None,
                "domain": "mathematics",
            }
            for q, a in chosen
        ],
        "edges": [[i, i + 1] for i in range(1, parts)],
    }


def _bridge(item: Item, parts: int, rng: random.Random, templates: Sequence[str]) -> dict[str, Any]:
    """A GSM8K problem, the element with its answer as atomic number, then (3 parts) biology."""
    number = atomic_number(item.answer)
    assert number is not None  # the pool holds only such items
    chain = [
        {
            "question": item.question,
            "answer": item.answer,
            "choices": None,
            "domain": "mathematics",
        },
        element_part(number, 1, rng),
    ]
    if parts == 3:
        chain.append(body_element_part(chain[1]["answer"], 2))
    texts = [lettered(p["question"], p["choices"]) for p in chain]
    joined = [texts[0], *(_as_follow_up(t) for t in texts[1:])]
    return {
        "question": rng.choice(templates).format(joined[0], " ".join(joined[1:])),
        "parts": [{**p, "question": t} for p, t in zip(chain, texts)],
        "edges": [[i, i + 1] for i in range(1, parts)],
    }


def _as_follow_up(text: str) -> str:
    """A part's text as it reads inside the question: `#k` becomes the earlier answer."""
    return text.replace("the atomic number #1", "that number as its atomic number").replace(
        "Is #2 one of", "Is that element one of"
    )


def benchmark_items(
    items: Sequence[Item], used: Collection[str], rng: random.Random, split: ItemSplit = "test"
) -> list[Item]:
    """The items of `split` whose question is not in `used` (see `left_out`), shuffled."""
    chosen = [i for i in items if i.in_split == split and i.question not in used]
    rng.shuffle(chosen)
    return chosen


def left_out(
    exclude: Collection[str] | None, split: ItemSplit, pools: Iterable[Sequence[Item]]
) -> frozenset[str]:
    """The questions a build of `split` may not use.

    A benchmark (`split="test"`) leaves out `exclude` (None: the demo centroids' texts) and the
    text of every train-split item in `pools`, even where a test item repeats one under another
    id (MMLU has the same question in two subjects). Training compositions may use centroid
    questions: they leave out `exclude` only.
    """
    if split != "test":
        return frozenset(exclude or ())
    given = centroid_texts() if exclude is None else exclude
    return frozenset(
        {*given, *(i.question for items in pools for i in items if i.in_split == "train")}
    )


def _usable_chain(chain: Chain, used_text: str | None, split: ItemSplit) -> bool:
    """A chain of `split` whose context is in no used question (`used_text`: them joined by
    NUL, which no question holds; None when there are none)."""
    in_used = used_text is not None and chain.context in used_text
    return item_split(chain.id) == split and not in_used


__all__ = [
    "BRIDGE_TEMPLATES",
    "STEP_TEMPLATES",
    "TEMPLATES",
    "benchmark_items",
    "compose_dependent",
    "compose_parallel",
    "left_out",
]
