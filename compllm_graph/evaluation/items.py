"""Single-domain items with exact answers, read from the shared data (`../shared/data`).

Each source becomes `Item`s with a stable id (source, file, row), so `splits.split_of` gives
every item one split for good.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from compllm_graph.expert_store.demo import DEMO_DATA

MMLU_SUBJECTS = {
    "chemistry": ("high_school_chemistry", "college_chemistry"),
    "biology": ("high_school_biology", "college_biology"),
    "mathematics": ("elementary_mathematics", "high_school_mathematics", "college_mathematics"),
    "medicine": ("clinical_knowledge", "college_medicine", "medical_genetics", "anatomy"),
}
"""The experts' domains as MMLU subjects (4-way multiple choice)."""

_OPTION = re.compile(r"^([A-J])\.\s*(.*)$")


@dataclass(frozen=True)
class Item:
    """One question with an exact answer.

    Attributes:
        id: Stable id: source, file and row.
        question: The question text, without its options.
        answer: The gold answer: an option's text, a number, or yes/no/maybe.
        choices: The option texts in order A, B, C, ...; None for open answers.
        domain: The expert domain (`chemistry`, `biology`, `mathematics`, `medicine`).
    """

    id: str
    question: str
    answer: str
    choices: tuple[str, ...] | None
    domain: str


def mmlu_items(data_dir: Path, domain: str) -> Iterator[Item]:
    """MMLU test questions of `domain`'s subjects (`MMLU_SUBJECTS`)."""
    for subject in MMLU_SUBJECTS[domain]:
        path = data_dir / "mmlu" / "test" / f"{subject}_test.csv"
        with path.open(newline="", encoding="utf-8") as handle:
            for row_number, row in enumerate(csv.DictReader(handle)):
                choices = tuple(row[f"choice{i}"].strip() for i in range(4))
                if len(set(choices)) < 4:
                    continue  # two equal options cannot be told apart by text
                yield Item(
                    id=f"mmlu/{subject}/{row_number}",
                    question=row["question"].strip(),
                    answer=choices[int(row["answer"])],
                    choices=choices,
                    domain=domain,
                )


def gsm8k_items(data_dir: Path) -> Iterator[Item]:
    """GSM8K test problems; the answer is the number after `####`."""
    path = data_dir / "gsm8k" / "test.jsonl"
    with path.open(encoding="utf-8") as handle:
        for row_number, line in enumerate(handle):
            row = json.loads(line)
            number = row["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
            yield Item(
                f"gsm8k/test/{row_number}", row["question"].strip(), number, None, "mathematics"
            )


def medmcqa_items(data_dir: Path) -> Iterator[Item]:
    """MedMCQA validation questions (every medical subject file), 4-way multiple choice."""
    folder = data_dir / "medical_and_science" / "medmcqa_validation"
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for row_number, line in enumerate(handle):
                row = json.loads(line)
                options = [_OPTION.match(o.strip()) for o in row["options"].splitlines()]
                choices = tuple(m.group(2).strip() for m in options if m)
                gold = _OPTION.match(row["answer"].strip())
                if len(choices) < 2 or gold is None or len(set(choices)) < len(choices):
                    continue
                yield Item(
                    id=f"medmcqa/{path.stem}/{row_number}",
                    question=row["question"].strip(),
                    answer=gold.group(2).strip(),
                    choices=choices,
                    domain="medicine",
                )


@cache
def centroid_texts() -> frozenset[str]:
    """The questions the demo store's centroids and thresholds were built from.

    They are MMLU test and GSM8K questions too, so a benchmark must leave them out: an item
    that built a centroid never appears in an evaluation.
    """
    texts: set[str] = set()
    for path in sorted(DEMO_DATA.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            texts.update(json.loads(line)["text"].strip() for line in handle if line.strip())
    return frozenset(texts)


def as_text(item: Item) -> str:
    """The item as a question a model reads: its options listed after it, lettered."""
    if not item.choices:
        return item.question
    options = "; ".join(f"({'ABCDEFGHIJ'[i]}) {c}" for i, c in enumerate(item.choices))
    return f"{item.question} Options: {options}."


__all__ = [
    "MMLU_SUBJECTS",
    "Item",
    "as_text",
    "centroid_texts",
    "gsm8k_items",
    "medmcqa_items",
    "mmlu_items",
]
