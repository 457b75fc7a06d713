"""Which word problems of an All-k file ask a first part whose facts come only later.

GSM8K's socratic steps are written for a reader who holds the whole problem. "How many adults
are there?" is the first step of a problem whose last sentence says "If Jack rides the elevator
with 8 other adults, by how much will they exceed the load?", and its answer, 9, needs the 8.
The tier asks a chain as its facts, then its steps, the last one the problem's own question
(`datasets.items.Chain`), so such a first part can be answered only by reading the part after
it. A monolith reads the whole question at once; a pipeline's first sub-query has what the
decomposer put in it.

Each chain question is put in one class by the numbers its first step's calculator annotations
(`<<9*80=720>>`) compute with:

- `stated`: every one is in the first part's text (as a numeral or a word: "twice", "dozen");
- `constant`: one is in no part's text (100 for a percent, 12 inches to the foot), none later;
- `later`: one is stated only by a later part.

It prints each Table 5 system's question accuracy in each class (the chemistry chains, whose
first step is one whole word problem, as their own row), and the paired differences of the
Comp-LLM cells against the monoliths with the `later` questions left out. No model runs.

Usage: python -m benchmarks.later_facts [--file all2] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import redirect_stdout
from functools import cache
from pathlib import Path
from typing import Any, Literal

from compllm_graph.data_dir import DEFAULT_DATA_DIR
from compllm_graph.datasets.items import socratic_chains
from compllm_graph.evaluation.stats import paired_difference

from . import answer_tables as tables

FactClass = Literal["stated", "constant", "later"]
CLASSES: tuple[FactClass, ...] = ("stated", "constant", "later")
OTHER = "not a chain"
"""The row of the questions that are not GSM8K chains (the chemistry chains of All-2)."""
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_CALCULATION = re.compile(r"<<([^=>]*)=")
_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "twice": "2", "double": "2", "half": "2",
    "triple": "3", "thrice": "3", "dozen": "12", "quarter": "4", "third": "3",
}  # fmt: skip


def numbers(text: str, words: bool = False) -> set[str]:
    """The numbers `text` writes as numerals ("1,200" as "1200"), and as words if `words`.

    Example:
        >>> sorted(numbers("He buys 1,200 eggs, twice.", words=True))
        ['1200', '2']
    """
    found = {n.replace(",", "") for n in _NUMBER.findall(text)}
    if words:
        lowered = text.lower()
        found |= {n for word, n in _WORDS.items() if re.search(rf"\b{word}\b", lowered)}
    return found


def classify(first_part: str, later_parts: Iterable[str], working: str) -> FactClass:
    """The class of a chain question from its first part, the parts after it and its first
    step's worked answer (see the module docstring).

    Example:
        >>> classify("An adult weighs 80 kg. How many adults are there?",
        ...          ["If Jack rides with 8 other adults, by how much ...?"],
        ...          "Jack and 8 others make 1+8=<<1+8=9>>9 adults.")
        'later'
    """
    used = set().union(*(numbers(c) for c in _CALCULATION.findall(working)))
    unstated = used - numbers(first_part, words=True)
    if unstated & set().union(*(numbers(p, words=True) for p in later_parts)):
        return "later"
    return "constant" if unstated else "stated"


@cache
def _first_workings(data_dir: Path) -> dict[str, str]:
    """Each test chain's first worked step (its calculator annotations), by the tier's first
    part text."""
    path = data_dir / "gsm8k" / "test_socratic.jsonl"
    rows = path.read_text(encoding="utf-8").splitlines()
    found = {}
    for chain in socratic_chains(data_dir):
        answer = json.loads(rows[int(chain.id.rsplit("/", 1)[1])])["answer"]
        working = answer.splitlines()[0].partition(" ** ")[2]
        found[f"{chain.context} {chain.steps[0][0]}"] = working
    return found


def question_class(record: Mapping[str, Any], data_dir: Path = DEFAULT_DATA_DIR) -> str:
    """A benchmark record's class, or `OTHER` when its first part is no GSM8K chain's."""
    parts = [p["question"] for p in record["parts"]]
    working = _first_workings(data_dir).get(parts[0])
    if working is None or len(parts) < 2:
        return OTHER
    return classify(parts[0], parts[1:], working)


def report(file: str) -> dict[str, Any]:
    """Each class's size, each Table 5 system's right answers in it, and the paired
    differences of the Comp-LLM cells against the monoliths without the `later` class."""
    records = tables._all_records(file)  # the file as the tables read it, read once
    classes = {r["id"]: question_class(r) for r in records}
    rows: dict[str, dict[str, list[int]]] = {}
    rights = {}
    for label, model, system in tables.COLUMNS:
        right = tables.question_rights(tables.find_cell(model, system, file))
        if not right:
            continue
        rights[(model, system)] = right
        counts = rows.setdefault(label, {})
        for qid, ok in right.items():
            tally = counts.setdefault(classes[qid], [0, 0])
            tally[0] += ok
            tally[1] += 1
    differences = {}
    for mine in (tables.GAIN, tables.GAIN_WRITER):
        for model, system in ((tables.QWEN15, "monolith"), (tables.QWEN05, "monolith")):
            a, b = rights.get((tables.QWEN05, mine)), rights.get((model, system))
            if not a or not b:
                continue
            shared = sorted(q for q in a.keys() & b.keys() if classes[q] != "later")
            diff = paired_difference([a[q] for q in shared], [b[q] for q in shared])
            differences[f"{mine} - {model}/{system}"] = {**diff, "n": len(shared)}
    asked = set().union(*(right.keys() for right in rights.values()))
    sizes = dict(Counter(classes[qid] for qid in asked))
    return {"file": file, "sizes": sizes, "right": rows, "without_later": differences}


def markdown(result: Mapping[str, Any]) -> str:
    """The report as a table (right / asked per class) and a list of differences."""
    names = [c for c in (*CLASSES, OTHER) if c in result["sizes"]]
    lines = [
        f"{result['file']}: " + ", ".join(f"{n} {result['sizes'][n]}" for n in names),
        "",
        "| system | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for label, counts in result["right"].items():
        cells = [f"{counts[n][0]}/{counts[n][1]}" if n in counts else "–" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for pair, diff in result["without_later"].items():
        low, high = diff["ci95"]
        verdict = "differs" if diff["significant"] else "no call"
        lines.append(
            f"- {pair}, without `later`: {diff['difference']:+.1%} [{low:+.1%}, {high:+.1%}] "
            f"(n={diff['n']}, {verdict})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default="all2", choices=("all2", "all3"))
    parser.add_argument("--tier", default="easy", choices=tables.TIERS)
    parser.add_argument("--json", action="store_true", help="print JSON, not markdown")
    args = parser.parse_args(argv)
    tables._select_tier(args.tier)
    with redirect_stdout(sys.stderr):  # the report alone on stdout
        tables._ensure_data(args.tier)  # a fresh clone has no benchmark files yet
    result = report(args.file)
    print(json.dumps(result, indent=1) if args.json else markdown(result))


if __name__ == "__main__":
    main()
