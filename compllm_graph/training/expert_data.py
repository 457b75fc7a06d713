"""Expert training data: question -> answer pairs from the train split of each domain's sources.

Targets are the answer as a person would give it: the option letter and text for multiple
choice, then the worked solution or explanation where the source has one (GSM8K, PubMedQA),
ending with the answer itself. Multiple-choice items that read as questions on their own also
give an open-form pair (no options, the option text as the answer), so an expert still answers
in words when a user's question comes without options. Only items of the train split
(`Item.in_split`) are used, and benchmarks use only the test split, so no benchmark item can
reach an adapter.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from compllm_graph.datasets.items import SOURCES, Item, as_text, domain_items, round_robin
from compllm_graph.datasets.programs import VariableNames, gsm8k_programs

ALL_DOMAINS = "all-domains"
"""The pseudo-domain of the fine-tuned (FT) baseline: every domain's data, balanced."""

OPEN_FORM = "#open"
"""Suffix of an open-form pair's id: the item's own id, so it keeps the item's split."""

# Questions that point at their options, and options that only make sense beside the others.
_NEEDS_OPTIONS = re.compile(
    r"\b(following|these|those|above|below|listed|statements?|except|not|true|false"
    r"|options?|choices?|correct|incorrect)\b",
    re.IGNORECASE,
)
_RELATIVE_OPTION = re.compile(r"(?i:\b(above|all|none|both|neither)\b)|\b([IV]+|[A-D])\b|^\W*$")


def target_of(item: Item) -> str:
    """The answer a person would give: letter and text, or the solution and the result."""
    if item.choices:
        letter = "ABCDEFGHIJ"[item.choices.index(item.answer)]
        return f"The answer is ({letter}) {item.answer}."
    if item.solution:
        return f"{item.solution}\nThe answer is {item.answer}."
    return f"The answer is {item.answer}."


def open_form(item: Item) -> dict[str, str] | None:
    """The item as an open question answered in words, or None where it needs its options.

    Only a multiple-choice item whose question ends in "?", does not refer to its options
    ("Which of the following ...", "... EXCEPT") and whose gold option stands alone ("All of
    the above" does not) gives one.
    """
    if not item.choices or not item.question.rstrip().endswith("?"):
        return None
    if _NEEDS_OPTIONS.search(item.question) or _RELATIVE_OPTION.search(item.answer):
        return None
    return {
        "id": item.id + OPEN_FORM,
        "question": item.question,
        "answer": f"The answer is {item.answer.rstrip('.')}.",
        "domain": item.domain,
    }


def expert_examples(
    data_dir: Path, domain: str, limit: int, seed: int = 0, open_forms: bool = True
) -> list[dict[str, str]]:
    """Up to `limit` training pairs for `domain`, seeded and balanced across its sources.

    Each source of a domain gives an equal share where it has enough items, so a large
    source (GSM8K train, MedMCQA) does not drown the others. `ALL_DOMAINS` gives the union
    of every domain's pairs (`limit` per domain), shuffled: the FT baseline learns from exactly
    the data the experts learn from.

    Args:
        data_dir: The shared data folder.
        domain: A domain of `SOURCES`, or `ALL_DOMAINS`.
        limit: At most this many items (per domain for `ALL_DOMAINS`).
        seed: Seeds the choice and the order.
        open_forms: Add the open-form pairs. Leave them out where the domain's open questions
            are worked problems (mathematics): a bare "The answer is 190 + 220 - 30 + 4." to an
            MMLU word problem teaches the expert to skip the working GSM8K needs.

    Returns:
        Records with `id`, `question` (the item as a model reads it, options included),
        `answer` (the target) and `domain`; after them, with `open_forms`, the open-form pairs
        of the chosen items (`open_form`), so there are at most `limit` items but more records.

    Raises:
        ValueError: an unknown domain or a limit below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if domain == ALL_DOMAINS:
        union = [
            r
            for d in sorted(SOURCES)
            for r in expert_examples(data_dir, d, limit, seed, open_forms)
        ]
        random.Random(f"expert-data-{seed}").shuffle(union)
        return union
    if domain not in SOURCES:
        raise ValueError(f"unknown domain {domain!r}; use one of {[*sorted(SOURCES), ALL_DOMAINS]}")
    rng = random.Random(f"expert-data-{seed}")
    chosen = round_robin(source_pools(_trainable(domain_items(data_dir, domain)), rng), limit)
    rng.shuffle(chosen)
    pairs = [
        {"id": i.id, "question": as_text(i), "answer": target_of(i), "domain": i.domain}
        for i in chosen
    ]
    if not open_forms:
        return pairs
    return pairs + [p for p in map(open_form, chosen) if p]


def program_examples(
    data_dir: Path, limit: int, seed: int = 0, names: VariableNames = "steps"
) -> list[dict[str, str]]:
    """Up to `limit` GSM8K train problems answered by a program that prints the gold answer.

    The target is the program alone, in a ```python block, as the program expert's prompt asks
    (`PROGRAM_PROMPT`) and as it reads a reply; train the adapter with that prompt as its
    system prompt. The programs are `datasets.programs.gsm8k_programs`: derived from the
    solutions' calculator annotations, kept only where they print the gold answer.

    Args:
        data_dir: The shared data folder (with `gsm8k/train.jsonl`).
        limit: At most this many problems, a seeded draw.
        seed: Seeds the draw and the order.
        names: How the programs name their steps (`datasets.programs.derive_program`); the
            draw does not depend on it.

    Returns:
        Records with `id` (`gsm8k/train/N`), `question`, `answer` (the fenced program) and
        `domain` ("mathematics").

    Raises:
        ValueError: a limit below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    kept, _ = gsm8k_programs(data_dir, "train", names)
    chosen = random.Random(f"program-data-{seed}").sample(kept, min(limit, len(kept)))
    return [
        {
            "id": e.id,
            "question": e.question,
            "answer": f"```python\n{e.program.strip()}\n```",
            "domain": "mathematics",
        }
        for e in chosen
    ]


def _trainable(items: Iterable[Item]) -> list[Item]:
    return [i for i in items if i.in_split == "train"]


def source_pools(items: Sequence[Item], rng: random.Random) -> list[list[Item]]:
    """`items` grouped by source (the id's first part, in sorted order), each group shuffled
    by `rng`: `round_robin` over them gives each source an equal share."""
    by_source: dict[str, list[Item]] = {}
    for item in items:
        by_source.setdefault(item.id.split("/")[0], []).append(item)
    return [rng.sample(pool, len(pool)) for _, pool in sorted(by_source.items())]


__all__ = [
    "ALL_DOMAINS",
    "OPEN_FORM",
    "expert_examples",
    "open_form",
    "program_examples",
    "source_pools",
    "target_of",
]
