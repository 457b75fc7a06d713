"""Single-domain items with exact answers, read from the shared data (`../shared/data`).

Each source becomes `Item`s with a stable id (source, file, row), so `splits.item_split` gives
every item one split for good: by a hash of the id, or by the source's official split
(PubMedQA's test ids, GSM8K's train file). Sources: MMLU by subject, GSM8K (with worked
solutions), MedMCQA, MedQA, PubMedQA (with long answers) and ARC, whose science questions are
given a domain by their words (`word_domain`).

The easy benchmark tier (`easy_tier`) reads four more, which train nothing: OpenBookQA (a
domain by the same words), ASDiv word problems, PubMedQA with its abstract in the question, and
ARC-Easy alone (the same ids, so the same splits, as `arc_items`).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from compllm_graph.datasets.splits import ItemSplit, item_split

MMLU_SUBJECTS = {
    "chemistry": ("high_school_chemistry", "college_chemistry"),
    "biology": ("high_school_biology", "college_biology"),
    "mathematics": ("elementary_mathematics", "high_school_mathematics", "college_mathematics"),
    "medicine": (
        "clinical_knowledge",
        "college_medicine",
        "medical_genetics",
        "anatomy",
        "professional_medicine",
    ),
}
"""The experts' domains as MMLU subjects (4-way multiple choice)."""

_OPTION = re.compile(r"^([A-J])\.\s*(.*)$")
_OPTIONS_HEAD = " Options: "
_ASKED_HEAD = " Question: "  # a question asked after its passage: "Abstract: ... Question: Q"
_CALCULATION = re.compile(r"<<[^>]*>>")
_RESULT = re.compile(r"=\s*(-?[\d,]*\.?\d+)>>")
# An ASDiv answer with one number and at most a unit ("9 apples", "3.5 dollars", "8 km/hour");
# times, ratios, fractions, names and several numbers ("6 cm; 15 cm") do not match.
_ASDIV_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)(?:\s+[^\d;]*)?$")
# ARC is grade-school science without subjects; these words give a question a domain, and a
# question with words of both (or neither) is left out rather than guessed.
_ARC_WORDS = {
    "chemistry": re.compile(
        r"\b(atoms?|molecules?|elements?|compounds?|chemical|reactions?|acids?|bases?|ions?|"
        r"electrons?|protons?|neutrons?|periodic|mixtures?|solutions?|dissolve[sd]?|salt|"
        r"oxygen|hydrogen|carbon dioxide|metals?)\b",
        re.IGNORECASE,
    ),
    "biology": re.compile(
        r"\b(cells?|organisms?|plants?|animals?|genes?|genetic|species|traits?|inherit\w*|"
        r"photosynthesis|bacteria|fungi|ecosystems?|food chain|offspring|cells|organs?|"
        r"digest\w*|predators?|prey|habitats?|evolution|fossils?|seeds?|leaves)\b",
        re.IGNORECASE,
    ),
}


@dataclass(frozen=True)
class Item:
    """One question with an exact answer.

    Attributes:
        id: Stable id: source, file and row.
        question: The question text, without its options.
        answer: The gold answer: an option's text, a number, or yes/no/maybe.
        choices: The option texts in order A, B, C, ...; None for open answers.
        domain: The expert domain (`chemistry`, `biology`, `mathematics`, `medicine`).
        solution: The worked solution or explanation a person would give, where the source
            has one (GSM8K, PubMedQA); training targets use it.
        split: The source's official split, where it has one (PubMedQA); None: by id.
    """

    id: str
    question: str
    answer: str
    choices: tuple[str, ...] | None
    domain: str
    solution: str | None = None
    split: ItemSplit | None = None

    @property
    def in_split(self) -> ItemSplit:
        """The item's split: the source's own when it has one, else by a hash of the id."""
        return self.split or item_split(self.id)


def mmlu_items(data_dir: Path, domain: str) -> Iterator[Item]:
    """MMLU test questions of `domain`'s subjects (`MMLU_SUBJECTS`)."""
    for subject in MMLU_SUBJECTS[domain]:
        yield from mmlu_subject_items(data_dir, subject, domain)


def mmlu_subject_items(data_dir: Path, subject: str, domain: str) -> Iterator[Item]:
    """The MMLU test questions of one subject (`mmlu/test/SUBJECT_test.csv`), as `domain`'s."""
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


def gsm8k_items(data_dir: Path, file: str = "test") -> Iterator[Item]:
    """GSM8K problems of `file` (`test`, `train`); the answer is the number after `####`.

    The solution is the worked answer without its `<<...>>` calculator notes. Items of the
    train file are always in the train split; test-file items split by id.
    """
    path = data_dir / "gsm8k" / f"{file}.jsonl"
    with path.open(encoding="utf-8") as handle:
        for row_number, line in enumerate(handle):
            row = json.loads(line)
            steps, _, number = row["answer"].rpartition("####")
            yield Item(
                f"gsm8k/{file}/{row_number}",
                row["question"].strip(),
                number.strip().replace(",", ""),
                None,
                "mathematics",
                solution=_CALCULATION.sub("", steps).strip(),
                split="train" if file == "train" else None,
            )


def medmcqa_items(data_dir: Path, subjects: Collection[str] | None = None) -> Iterator[Item]:
    """MedMCQA validation questions, 4-way multiple choice.

    Args:
        data_dir: The shared data folder.
        subjects: Subject files to read (`Anatomy`, ...: `medmcqa_validation/SUBJECT.jsonl`);
            None: every one.

    Raises:
        ValueError: a subject with no file.
    """
    folder = data_dir / "medical_and_science" / "medmcqa_validation"
    paths = sorted(folder.glob("*.jsonl"))
    if subjects is not None:
        unknown = sorted(set(subjects) - {p.stem for p in paths})
        if unknown:
            raise ValueError(f"no MedMCQA subject file for {unknown} in {folder}")
        paths = [p for p in paths if p.stem in subjects]
    for path in paths:
        yield from _lettered_items(path, f"medmcqa/{path.stem}")


def medqa_items(data_dir: Path) -> Iterator[Item]:
    """MedQA (USMLE) test questions, 4- or 5-way multiple choice."""
    yield from _lettered_items(data_dir / "medical_and_science" / "medqa_test.jsonl", "medqa")


def _lettered_items(path: Path, prefix: str) -> Iterator[Item]:
    """Rows with `options` as "A. text" lines and `answer` as "B. text"."""
    with path.open(encoding="utf-8") as handle:
        for row_number, line in enumerate(handle):
            row = json.loads(line)
            options = [_OPTION.match(o.strip()) for o in row["options"].splitlines()]
            choices = tuple(m.group(2).strip() for m in options if m)
            gold = _OPTION.match(row["answer"].strip())
            if len(choices) < 2 or gold is None or len(set(choices)) < len(choices):
                continue
            answer = gold.group(2).strip()
            if answer not in choices:
                continue
            yield Item(
                f"{prefix}/{row_number}", row["question"].strip(), answer, choices, "medicine"
            )


def pubmedqa_items(data_dir: Path) -> Iterator[Item]:
    """PubMedQA expert-labelled questions (yes / no / maybe) with their long answers.

    The official 500 test ids are the test split; the other 500 are for training only.
    """
    folder = data_dir / "medical_and_science" / "pubmedqa"
    rows = _pubmedqa_rows(data_dir)
    test_ids = set(json.loads((folder / "test_ground_truth.json").read_text(encoding="utf-8")))
    for pmid, row in sorted(rows.items()):
        yield Item(
            f"pubmedqa/{pmid}",
            row["QUESTION"].strip(),
            row["final_decision"].strip().lower(),
            None,
            "medicine",
            solution=row["LONG_ANSWER"].strip(),
            split="test" if pmid in test_ids else "train",
        )


def _pubmedqa_rows(data_dir: Path) -> dict[str, dict]:
    path = data_dir / "medical_and_science" / "pubmedqa" / "ori_pqal.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def word_domain(question: str) -> str | None:
    """`chemistry` or `biology` when the question's words are of that domain only
    (`_ARC_WORDS`); None for the rest (physics, earth science, both, neither)."""
    domains = [d for d, words in _ARC_WORDS.items() if words.search(question)]
    return domains[0] if len(domains) == 1 else None


def arc_items(data_dir: Path) -> Iterator[Item]:
    """ARC-Easy (train, validation) and ARC-Challenge (train) questions with a domain.

    A question gets `chemistry` or `biology` by its words (`word_domain`); the rest (physics,
    earth science, mixed) is left out.
    """
    folder = data_dir / "science"
    files = {
        "arc_easy_train": json.loads((folder / "arc_easy_train.json").read_text("utf-8")),
        "arc_easy_validation": json.loads((folder / "arc_easy_validation.json").read_text("utf-8")),
        "arc_challenge_train": [
            json.loads(line)
            for line in (folder / "arc_challenge_train_partial.jsonl")
            .read_text("utf-8")
            .split("\n")
            if line.strip()
        ],
    }
    for name, rows in files.items():
        for row in rows:
            question = row["question"].strip()
            domain = word_domain(question)
            labels, texts = row["choices"]["label"], row["choices"]["text"]
            if domain is None or row["answerKey"] not in labels or len(set(texts)) < len(texts):
                continue
            choices = tuple(t.strip() for t in texts)
            answer = choices[labels.index(row["answerKey"])]
            yield Item(f"arc/{name}/{row['id']}", question, answer, choices, domain)


def arc_easy_items(data_dir: Path) -> Iterator[Item]:
    """The ARC-Easy questions of `arc_items` (its train and validation files), same ids."""
    return (i for i in arc_items(data_dir) if i.id.startswith("arc/arc_easy_"))


def openbookqa_items(data_dir: Path) -> Iterator[Item]:
    """OpenBookQA questions (4-way multiple choice) with a domain by ARC's rule (`word_domain`).

    Ids are `openbookqa/ROW`; the split is by id. Questions of no single domain are left out.
    """
    path = data_dir / "medical_and_science" / "openbookqa_test.jsonl"
    for item in _lettered_items(path, "openbookqa"):
        domain = word_domain(item.question)
        if domain is not None:
            yield replace(item, domain=domain)


def asdiv_items(data_dir: Path) -> Iterator[Item]:
    """ASDiv word problems (`passage` then `question`) whose answer is one number.

    Ids are `asdiv/ROW`, in `mathematics`; the split is by id. The answer's unit is dropped
    ("9 apples" -> "9"); answers that are no single number (times, ratios, fractions, names,
    several numbers) are left out.
    """
    path = data_dir / "medical_and_science" / "asdiv_test.jsonl"
    with path.open(encoding="utf-8") as handle:
        for row_number, line in enumerate(handle):
            row = json.loads(line)
            number = _ASDIV_NUMBER.match(row["answer"].strip())
            if number is None:
                continue
            question = f"{row['passage'].strip()} {row['question'].strip()}".strip()
            yield Item(f"asdiv/{row_number}", question, number.group(1), None, "mathematics")


def pubmedqa_abstract_items(data_dir: Path) -> Iterator[Item]:
    """PubMedQA's expert-labelled questions asked with their abstract (yes / no / maybe).

    The question reads "Abstract: CONTEXTS Question: QUESTION", the abstract without its
    conclusion (which is the long answer). Ids are `pubmedqa-abstract/PMID`, in the same
    official split as `pubmedqa_items` (the 500 test ids; the rest train).
    """
    rows = _pubmedqa_rows(data_dir)
    for item in pubmedqa_items(data_dir):
        pmid = item.id.removeprefix("pubmedqa/")
        abstract = " ".join(c.strip() for c in rows[pmid]["CONTEXTS"])
        yield replace(
            item,
            id=f"pubmedqa-abstract/{pmid}",
            question=f"Abstract: {abstract}{_ASKED_HEAD}{item.question}",
        )


def domain_items(data_dir: Path, domain: str) -> list[Item]:
    """Every source's items of `domain`, in a fixed order (see `SOURCES`).

    Raises:
        ValueError: an unknown domain.
    """
    if domain not in SOURCES:
        raise ValueError(f"unknown domain {domain!r}; use one of {sorted(SOURCES)}")
    items: list[Item] = []
    for source in SOURCES[domain]:
        items.extend(item for item in _READERS[source](data_dir) if item.domain == domain)
    return items


_READERS: dict[str, Callable[[Path], Iterable[Item]]] = {
    "mmlu": lambda data_dir: (i for d in MMLU_SUBJECTS for i in mmlu_items(data_dir, d)),
    "arc": arc_items,
    "gsm8k-test": gsm8k_items,
    "gsm8k-train": lambda data_dir: gsm8k_items(data_dir, "train"),
    "medmcqa": medmcqa_items,
    "medqa": medqa_items,
    "pubmedqa": pubmedqa_items,
}
SOURCES: dict[str, tuple[str, ...]] = {
    "chemistry": ("mmlu", "arc"),
    "biology": ("mmlu", "arc"),
    "mathematics": ("mmlu", "gsm8k-test", "gsm8k-train"),
    "medicine": ("mmlu", "medmcqa", "medqa", "pubmedqa"),
}
"""Each domain's sources (keys of `_READERS`), in the order `domain_items` reads them."""


@cache
def centroid_texts() -> frozenset[str]:
    """The questions (without their options) the demo store's centroids and thresholds were
    built from.

    They come from the train split, so no benchmark should hold them; benchmarks leave them
    out anyway, so that rule holds whatever the demo data is: an item that built a centroid
    never appears in an evaluation.
    """
    from compllm_graph.expert_store.demo import DEMO_DATA  # the [router] extra, only here

    texts: set[str] = set()
    for path in sorted(DEMO_DATA.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    texts.add(unlettered(json.loads(line)["text"]))
    return frozenset(texts)


def round_robin(pools: Sequence[list[Item]], limit: int) -> list[Item]:
    """One item from the end of each pool in turn, until `limit` items or every pool is empty.

    The pools are emptied as their items are taken.
    """
    left = [pool for pool in pools if pool]
    chosen: list[Item] = []
    while left and len(chosen) < limit:
        for pool in list(left):
            if len(chosen) == limit:
                break
            chosen.append(pool.pop())
            if not pool:
                left.remove(pool)
    return chosen


def as_text(item: Item) -> str:
    """The item as a question a model reads: its options listed after it, lettered."""
    return lettered(item.question, item.choices)


def unlettered(text: str) -> str:
    """The question of a `lettered` text, without its options."""
    return text.split(_OPTIONS_HEAD, 1)[0].strip()


def asked_question(text: str) -> str:
    """The question of a text that asks it after a passage ("Abstract: ... Question: Q"), else
    the whole text."""
    return text.rpartition(_ASKED_HEAD)[2]


def lettered(question: str, choices: Sequence[str] | None) -> str:
    """`question` with its options listed after it as "(A) ...; (B) ...", if it has any."""
    if not choices:
        return question
    options = "; ".join(f"({'ABCDEFGHIJ'[i]}) {c}" for i, c in enumerate(choices))
    return f"{question}{_OPTIONS_HEAD}{options}."


@dataclass(frozen=True)
class Chain:
    """A GSM8K problem as its socratic steps: dependent sub-questions with numeric answers.

    Attributes:
        id: The problem's item id (`gsm8k/test/N`, the same as `gsm8k_items`'), so it shares
            the problem's split.
        context: The problem without its final question.
        steps: (sub-question, numeric answer) in order; the last is the problem's own final
            question, not its socratic rephrasing, which can leave out data the final question
            gives ("If he runs 10 miles an hour, how many hours ...?" became "How many hours
            ...?", unanswerable once the context is cut before it).
    """

    id: str
    context: str
    steps: tuple[tuple[str, str], ...]


def socratic_chains(data_dir: Path) -> Iterator[Chain]:
    """GSM8K test problems with socratic steps whose every answer is a calculator result."""
    path = data_dir / "gsm8k" / "test_socratic.jsonl"
    with path.open(encoding="utf-8") as handle:
        for row_number, line in enumerate(handle):
            row = json.loads(line)
            steps = []
            working_out, _, gold = row["answer"].rpartition("####")
            for step in working_out.strip().splitlines():
                question, sep, working = step.partition(" ** ")
                results = _RESULT.findall(working)
                if not sep or not results:
                    break
                steps.append((question.strip(), _plain_number(results[-1])))
            else:
                context, asked = _split_question(row["question"])
                final = gold.strip().replace(",", "")
                if context and len(steps) >= 2 and _same_number(steps[-1][1], final):
                    if asked:
                        steps[-1] = (asked, steps[-1][1])
                    yield Chain(f"gsm8k/test/{row_number}", context, tuple(steps))


def _plain_number(text: str) -> str:
    """ "1,200" -> "1200", ".5" -> "0.5"."""
    text = text.replace(",", "")
    return f"0{text}" if text.startswith(".") else text.replace("-.", "-0.")


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _split_question(problem: str) -> tuple[str, str]:
    """The problem without its last sentence, and that sentence, when it is a question; else
    the whole problem and "" (the context is "" when nothing is left)."""
    sentences = re.split(r"(?<=[.!?])\s+", problem.strip())
    if sentences[-1].endswith("?"):
        return " ".join(sentences[:-1]), sentences[-1]
    return " ".join(sentences), ""


__all__ = [
    "MMLU_SUBJECTS",
    "SOURCES",
    "Chain",
    "Item",
    "arc_easy_items",
    "arc_items",
    "as_text",
    "asdiv_items",
    "asked_question",
    "centroid_texts",
    "domain_items",
    "gsm8k_items",
    "lettered",
    "medmcqa_items",
    "medqa_items",
    "mmlu_items",
    "mmlu_subject_items",
    "openbookqa_items",
    "pubmedqa_abstract_items",
    "pubmedqa_items",
    "round_robin",
    "socratic_chains",
    "unlettered",
    "word_domain",
]
