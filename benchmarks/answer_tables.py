"""The paper's Tables 5 and 7 on our models: answer accuracy of Comp-LLM against monoliths.

Each cell is one `compllm eval answers` run (a fresh process) on one benchmark file, with its
answers appended to `benchmarks/answers/outputs/MODEL/SYSTEM.FILE.jsonl`, so a cell that stops
resumes where it stopped and a finished one costs nothing; after a rebuild of the benchmark
files, a cell answers again only the questions whose text changed (`--redo-changed`), and the
tables never score an answer given to an older text. Cells run a few at a time (`--jobs`,
with `--threads` each). After the runs, the tables are written to
`benchmarks/answers/tables.md` from every outputs file there: accuracy with a 95 % bootstrap
interval, seconds per question, the paired difference where two systems answered the same
questions, and the per-stage attribution of the wrong answers. A cell with no answers yet is
written `–` (not run), never a number. Questions with a part that shares
a passage with a train-split item (`evaluation.leakage`) are left out of every table. With the
tables goes a figure of the same numbers, question accuracy against seconds per question
(`answer_figure`), to `docs/results/figures/answers-TIER.svg`, which the tables file shows at its
top; it needs matplotlib (the `[eval]` extra), and without it the tables are written alone.

The benchmark files come from `compllm eval benchmarks --out benchmarks/answers/data` (built
here when missing; they hold dataset text, so they are not committed).

Usage: `python -m benchmarks.answer_tables [--cells NAME ...] [--jobs 2] [--threads 1]
[--concurrency 4] [--tables-only] [--tier easy]`; `--list` shows the cells. `--tier easy` runs
the same cells on the easy tier's files (`easy-p2`, ...; `tables-easy.md`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

from compllm_graph.data_dir import DEFAULT_DATA_DIR
from compllm_graph.evaluation.answers import answered, changed_ids, read_benchmark, summarise
from compllm_graph.evaluation.attribution import attribution, attribution_table
from compllm_graph.evaluation.benchmarks import TIER_PREFIX, TIERS
from compllm_graph.evaluation.experts import expert_row, expert_table
from compllm_graph.evaluation.leakage import shared_passage_ids, train_runs
from compllm_graph.evaluation.scoring import score_question
from compllm_graph.evaluation.stats import paired_difference

from . import gain_store
from .answer_figure import Point, answers_figure, save_svg

ROOT = Path(__file__).resolve().parent / "answers"
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "results" / "figures"
"""Where the figure goes (`answers-TIER.svg`): inside the docs, so that the site shows it too."""
FIGURE_NEEDS = "the figure needs `pip install 'compllm-graph[eval]'` (matplotlib)"
SECTION = "tables"
"""The snippet section around the tables in the tables file: `docs/results/tables.md` includes
it alone and shows the figure with its own path (the file's image path is relative to itself)."""
DATA, OUTPUTS, TABLES = ROOT / "data", ROOT / "outputs", ROOT / "tables.md"
PREFIX = TIER_PREFIX["standard"]
"""The benchmark tier's file prefix, set once by `--tier`: with `easy`, cell `p2` answers
`DATA/easy-p2.jsonl` into `SYSTEM.easy-p2.jsonl`, and the tables go to `tables-easy.md`."""
SMOL, QWEN05, QWEN15 = (
    "smollm2-135m-instruct",
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-1.5b-instruct",
)
FILES = ("p2", "p3", "all2", "all3")
SHORT = {SMOL: "SmolLM2-135M", QWEN05: "Qwen2.5-Coder-0.5B", QWEN15: "Qwen2.5-Coder-1.5B"}
LABELS = {"p2": "P-2", "p3": "P-3", "all2": "All-2", "all3": "All-3"}
COLUMNS = [
    (f"monolith {SHORT[SMOL]}", SMOL, "monolith"),
    (f"monolith {SHORT[QWEN05]}", QWEN05, "monolith"),
    (f"monolith {SHORT[QWEN15]}", QWEN15, "monolith"),
    ("FT 135M (all-domains adapter)", SMOL, "ft"),
    ("FT 0.5B (all-domains adapter)", QWEN05, "ft"),
    ("one-adapter 0.5B (pipeline)", QWEN05, "one-adapter"),
    (f"Comp-LLM {SHORT[SMOL]}", SMOL, "compllm"),
    (f"Comp-LLM {SHORT[QWEN05]}", QWEN05, "compllm"),
    ("Comp-LLM 0.5B, program expert", QWEN05, "compllm-program"),
    ("Comp-LLM 0.5B, gain-routed", QWEN05, "compllm-gain"),
    ("Comp-LLM 0.5B, gain-routed, no 1.5B", QWEN05, "compllm-gain-alone"),
    ("Comp-LLM 0.5B, gain-routed, 1.5B programs", QWEN05, "compllm-gain-writer"),
]
"""Table 5's columns: label, base model, system. `ft` is the paper's FT row; `one-adapter` is
not one of the paper's systems (it was called `all-experts` before the paper's was built);
`compllm-program` is Comp-LLM with the program expert answering mathematics parts;
`compllm-gain` is that, routed by measured gain with the 1.5B model as a gain-only candidate;
`compllm-gain-alone` the same without the candidate (the demo store where the 1.5B model is not
fetched); `compllm-gain-writer` the same with a second candidate, the 1.5B model writing the
programs."""
ROUTERS = ("compllm", "all-experts", "one-adapter", "random-router", "oracle-router")
"""Table 7's columns: the router against the paper's all-experts, one adapter, random, oracle."""
PROGRAM = "compllm-program"
"""Comp-LLM whose `mathematics` expert writes a program the sandbox runs (`--program-expert`)."""
GAIN = "compllm-gain"
"""Comp-LLM with the program expert on the calibrated store of `benchmarks.gain_store` (a part
goes to an expert only where its measured gain passes; the 1.5B model takes the domains where
only it is measured right)."""
GAIN_TEAM = "all-experts-gain"
"""The paper's all-experts over the gain-routed cell's team (the calibrated store's adapters,
the program expert and the 1.5B model): Table 7's router against all-experts, like with like."""
GAIN_ALONE = "compllm-gain-alone"
"""`GAIN` on the calibrated store without the 1.5B candidate (`gain_store.ALONE_STORE`)."""
GAIN_RANDOM = "random-router-gain"
"""Random routing over the gain-routed cell's team (`--system random-router` on its store):
Table 7's random row, like with like."""
GAIN_WRITER = "compllm-gain-writer"
"""`GAIN` on the calibrated store with the second 1.5B candidate, the 1.5B model writing the
programs (`gain_store.WRITER_STORE`): it takes the domains where it is measured best."""
WRITER_TEAM = "all-experts-gain-writer"
"""The paper's all-experts over `GAIN_WRITER`'s team (its adapters, the program expert, the
1.5B model and the 1.5B model writing programs): Table 7 for the default's own team."""
WRITER_RANDOM = "random-router-gain-writer"
"""Random routing over `GAIN_WRITER`'s team."""
GAIN_TEAM_SYSTEMS = (GAIN, GAIN_TEAM, GAIN_ALONE, GAIN_RANDOM)
"""The systems over the first gain store's team (its table's columns)."""
WRITER_TEAM_SYSTEMS = (GAIN_WRITER, WRITER_TEAM, WRITER_RANDOM)
"""The systems over the writer's store (`gain_store.WRITER_STORE`; its table's columns)."""
GAIN_STORE_SYSTEMS = (*GAIN_TEAM_SYSTEMS, *WRITER_TEAM_SYSTEMS)
_GAIN_SYSTEM = {
    GAIN_TEAM: "all-experts",
    GAIN_RANDOM: "random-router",
    WRITER_TEAM: "all-experts",
    WRITER_RANDOM: "random-router",
}
"""The `--system` of a gain-store system other than Comp-LLM."""
UNPROMPTED = "monolith-unprompted"
"""The monolith without `BASE_SYSTEM_PROMPT` (`--no-base-prompt`): each target is judged against
the stronger of the two monolith forms, since the prompt helps some rows and costs others."""
WHOLE_QUESTION = ("monolith", UNPROMPTED, "ft")
"""The systems that answer in one call, with no expert store."""
PREMISE_RULE = frozenset(
    {(QWEN05, system, "easy-all2") for system in (GAIN, GAIN_ALONE, GAIN_TEAM, GAIN_RANDOM)}
    | {
        (QWEN05, system, f"easy-{file}")
        for system in WRITER_TEAM_SYSTEMS
        for file in ("p2", "all2")
    }
)
"""The pipeline cells answered with the premise rule (`decomposer.premise_rule`, 2026-12-07):
model, system and file. Every other pipeline cell was answered before the rule and resumes
with `--no-carry-premise`; on the easy tier's P-2 the rule changes none of the decompositions
the committed cells record (`tests/unit/test_premise_rule.py`)."""


@dataclass(frozen=True)
class Cell:
    """One system on one benchmark file with one base model, on its first `limit` questions."""

    model: str
    system: str
    file: str
    limit: int

    @property
    def name(self) -> str:
        return f"{self.model}/{self.system}.{self.file}"

    @property
    def outputs(self) -> Path:
        return OUTPUTS / self.model / f"{self.system}.{PREFIX}{self.file}.jsonl"

    @property
    def store(self) -> Path | None:
        """The store the cell is pinned to (`benchmarks.gain_store`), or None: the demo store
        of a model whose demo store has not changed since its cells were answered."""
        if self.system == GAIN_ALONE:
            return gain_store.ALONE_STORE
        if self.system in WRITER_TEAM_SYSTEMS:
            return gain_store.WRITER_STORE
        if self.system in GAIN_STORE_SYSTEMS:
            return gain_store.STORE
        if self.model == gain_store.MODEL and self.system not in WHOLE_QUESTION:
            return gain_store.SIMILARITY_STORE
        return None

    @property
    def system_args(self) -> list[str]:
        if self.system == UNPROMPTED:
            return ["--system", "monolith", "--no-base-prompt"]
        if self.system in WHOLE_QUESTION:
            return ["--system", self.system]
        flags = [] if self.store is None else ["--store", str(self.store)]
        if (self.model, self.system, f"{PREFIX}{self.file}") not in PREMISE_RULE:
            flags.append("--no-carry-premise")
        if self.system == PROGRAM:
            return ["--system", "compllm", "--program-expert", *flags]
        if self.system in GAIN_STORE_SYSTEMS:
            system = _GAIN_SYSTEM.get(self.system, "compllm")
            return ["--system", system, "--program-expert", *flags]
        return ["--system", self.system, *flags]


def _limit(file: str) -> int:
    return 200 if file in ("p2", "all2") else 100


TABLE5 = [
    *(Cell(model, "monolith", f, _limit(f)) for model in (SMOL, QWEN05, QWEN15) for f in FILES),
    *(Cell(model, UNPROMPTED, f, _limit(f)) for model in (SMOL, QWEN05, QWEN15) for f in FILES),
    *(Cell(model, "ft", f, _limit(f)) for model in (SMOL, QWEN05) for f in FILES),
    *(Cell(QWEN05, "one-adapter", f, _limit(f)) for f in FILES),
    *(Cell(model, "compllm", f, _limit(f)) for model in (SMOL, QWEN05) for f in FILES),
    *(
        Cell(QWEN05, system, f, _limit(f))
        for system in (PROGRAM, GAIN, GAIN_ALONE, GAIN_WRITER)
        for f in FILES
    ),
]
TABLE7 = [
    Cell(model, system, f, 100)
    for model in (SMOL, QWEN05)
    for system in ROUTERS[1:]
    for f in ("p2", "all2")
] + [
    Cell(QWEN05, system, f, 100)
    for system in (GAIN_TEAM, GAIN_RANDOM, WRITER_TEAM, WRITER_RANDOM)
    for f in ("p2", "all2")
]
CELLS = {c.name: c for c in [*TABLE7, *TABLE5]}
"""Every cell; a cell in both tables keeps Table 5's (larger) size."""


def run_cell(cell: Cell, threads: int, concurrency: int = 1) -> dict[str, Any]:
    """Run (or resume) one cell in a fresh process; returns its summary."""
    cell.outputs.parent.mkdir(parents=True, exist_ok=True)
    if cell.store is not None:
        gain_store.ensure(cell.store, calibrated=cell.system in GAIN_STORE_SYSTEMS)
    command = [
        str(Path(sys.executable).with_name("compllm")), "eval", "answers",
        str(benchmark_file(cell.file)),
        *cell.system_args, "--model", cell.model, "--limit", str(cell.limit),
        "--outputs", str(cell.outputs), "--threads", str(threads),
        "--concurrency", str(concurrency), "--redo-changed", "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return {"cell": cell.name, "error": " / ".join(tail), "code": done.returncode}
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"cell": cell.name, "wall_s": round(time.perf_counter() - started, 1), **summary}


@cache
def _all_records(file: str) -> list[dict[str, Any]]:
    return read_benchmark(benchmark_file(file))


def benchmark_file(file: str) -> Path:
    """The benchmark file `file` (`p2`, `single-biology`, ...) of the chosen tier."""
    return DATA / f"{PREFIX}{file}.jsonl"


def benchmark_records(outputs: Path) -> dict[str, dict[str, Any]]:
    """The records of the benchmark file an outputs file `SYSTEM.FILE.jsonl` answers, by id."""
    return {r["id"]: r for r in read_benchmark(DATA / f"{outputs.name.split('.')[-2]}.jsonl")}


@cache
def _train_runs() -> frozenset[str]:
    return train_runs(DEFAULT_DATA_DIR)


@cache
def shared_passages(file: str) -> frozenset[str]:
    """Ids of `file`'s questions that share a passage with a train-split item."""
    return frozenset(shared_passage_ids(_all_records(file), _train_runs()))


@cache
def _benchmark(file: str) -> list[dict[str, Any]]:
    """A benchmark file's records that every table scores: those that share no passage."""
    return [r for r in _all_records(file) if r["id"] not in shared_passages(file)]


def _current(cell: Cell) -> dict[str, dict[str, Any]]:
    """A cell's answers to the questions as the benchmark file now asks them."""
    done = answered(cell.outputs)
    changed = set(changed_ids(_all_records(cell.file), done))
    return {i: a for i, a in done.items() if i not in changed}


def _cell_scores(cell: Cell) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The records and answers of a cell's finished questions, or None before any."""
    done = _current(cell)
    if not done:
        return None
    records = [r for r in _benchmark(cell.file) if r["id"] in done]
    return records, [done[r["id"]] for r in records]


def question_rights(cell: Cell) -> dict[str, bool]:
    """Whether each of a cell's scored questions was answered right, by id."""
    scored = _cell_scores(cell)
    if scored is None:
        return {}
    return {r["id"]: score_question(str(a["answer"]), r["parts"]).right for r, a in zip(*scored)}


@cache
def cell_summary(cell: Cell) -> dict[str, Any] | None:
    """`evaluation.answers.summarise` of a cell's scored questions, or None before any answer:
    the one source of every number the tables and the figure show for the cell. Kept for one
    write (`write_tables` clears it: the outputs grow between writes), so the tables' several
    columns and the figure read and score a cell once."""
    scored = _cell_scores(cell)
    return None if scored is None else summarise(*scored)


def cell_text(cell: Cell, measure: str = "accuracy") -> str:
    """`acc [low, high] (n)` for a table cell, or `–` when it has not run (no answer yet).

    Args:
        cell: The cell.
        measure: `accuracy` (questions) or `part_accuracy` (parts).
    """
    summary = cell_summary(cell)
    if summary is None:
        return "–"
    low, high = summary[f"{measure}_ci95"]
    return f"{summary[measure]:.1%} [{low:.1%}, {high:.1%}] (n={summary['n']})"


def seconds_text(cell: Cell) -> str:
    summary = cell_summary(cell)
    return "–" if summary is None else f"{summary['seconds_per_question']:.1f}"


def find_cell(model: str, system: str, file: str) -> Cell:
    """The cell of `model`, `system` and `file` in the tables, else one of `_limit`'s size."""
    return next(
        (c for c in CELLS.values() if (c.model, c.system, c.file) == (model, system, file)),
        Cell(model, system, file, _limit(file)),
    )


def difference_text(a: Cell, b: Cell) -> str:
    """a minus b on the questions both answered, with its paired 95 % interval."""
    first, second = question_rights(a), question_rights(b)
    shared = sorted(set(first) & set(second))
    if not shared:
        return "–"
    diff = paired_difference([first[i] for i in shared], [second[i] for i in shared])
    low, high = diff["ci95"]
    verdict = "differs" if diff["significant"] else "no call"
    return f"{diff['difference']:+.1%} [{low:+.1%}, {high:+.1%}] (n={len(shared)}, {verdict})"


def tables() -> str:
    """Tables 5 and 7, speed, the key differences and attribution, from the outputs on disk."""
    head = ["| benchmark | " + " | ".join(label for label, _, _ in COLUMNS) + " |"]
    head.append("|---" * (len(COLUMNS) + 1) + "|")
    left_out = ", ".join(
        f"{LABELS[f]} {', '.join(sorted(ids))}" for f in FILES if (ids := shared_passages(f))
    )
    lines = [
        "Left out of every cell (a part shares a passage with a train-split item): "
        f"{left_out or 'none'}.",
        "",
        "A cell written – has not run yet. Systems (`compllm eval answers --system`): `ft` is the "
        "paper's FT (the all-domains adapter answering the whole question in one call); "
        "`all-experts` the paper's all-experts (every sub-query asked of every expert, the "
        "replies combined); `one-adapter` the pipeline with the all-domains adapter as its one "
        "expert, which is none of the paper's systems and was called `all-experts` before.",
        "",
        "## Table 5: question accuracy (95 % bootstrap interval)",
        "",
        *head,
    ]
    for file in FILES:
        cells = [cell_text(find_cell(model, system, file)) for _, model, system in COLUMNS]
        lines.append(f"| {LABELS[file]} | " + " | ".join(cells) + " |")
    lines += ["", "Part accuracy (every part of a question scored on its own):", "", *head]
    for file in FILES:
        cells = [
            cell_text(find_cell(model, system, file), "part_accuracy")
            for _, model, system in COLUMNS
        ]
        lines.append(f"| {LABELS[file]} | " + " | ".join(cells) + " |")
    lines += ["", "Seconds per question:", "", *head]
    for file in FILES:
        cells = [seconds_text(find_cell(model, system, file)) for _, model, system in COLUMNS]
        lines.append(f"| {LABELS[file]} | " + " | ".join(cells) + " |")
    lines += unprompted_table()
    lines += ["", "## Table 7: routing (question accuracy; then part accuracy)", ""]
    lines += [
        "| model | benchmark | router | all experts (combined) | one adapter | random | oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in (SMOL, QWEN05):
        lines += _measure_rows(
            ("p2", "all2"), partial(_router_cells, model), prefix=f"{SHORT[model]} | "
        )
    lines += _team_table(
        f"The gain store's team ({SHORT[QWEN05]}'s adapters, the program expert and "
        f"{SHORT[QWEN15]}): routed by measured gain against all-experts over the same team, "
        "and routed by gain without the 1.5B model (the demo store where it is not fetched), "
        "and routed at random over the same team.",
        ("gain-routed", "all experts (combined)", "gain-routed, no 1.5B", "random"),
        GAIN_TEAM_SYSTEMS,
    )
    lines += _team_table(
        f"The writer's team (the gain store's, with {SHORT[QWEN15]} writing the programs as a "
        "second candidate; the default's store): routed by measured gain against all-experts "
        "and random routing over the same team.",
        ("gain-routed, 1.5B programs", "all experts (combined)", "random"),
        WRITER_TEAM_SYSTEMS,
    )
    lines += ["", "## Paired differences (same questions)", ""]
    pairs = [
        (find_cell(m, "compllm", f), find_cell(m, other, f))
        for m in (SMOL, QWEN05)
        for f in FILES
        for other in ("monolith", UNPROMPTED, "ft", *ROUTERS[1:])
    ]
    pairs += [
        (find_cell(m, system, f), find_cell(m, "random-router", f))
        for m in (SMOL, QWEN05)
        for f in FILES
        for system in ("all-experts", "one-adapter")
    ]
    pairs += [
        (find_cell(m, "ft", f), find_cell(m, "monolith", f)) for m in (SMOL, QWEN05) for f in FILES
    ]
    pairs += [
        (find_cell(QWEN05, PROGRAM, f), find_cell(QWEN05, other, f))
        for f in FILES
        for other in ("compllm", "monolith", UNPROMPTED)
    ]
    pairs += [
        (find_cell(QWEN05, GAIN, f), find_cell(QWEN05, other, f))
        for f in FILES
        for other in (
            PROGRAM,
            "compllm",
            "monolith",
            UNPROMPTED,
            *ROUTERS[1:],
            GAIN_TEAM,
            GAIN_RANDOM,
        )
    ]
    pairs += [
        (find_cell(QWEN05, GAIN_WRITER, f), find_cell(QWEN05, other, f))
        for f in FILES
        for other in (GAIN, "monolith", UNPROMPTED, WRITER_TEAM, WRITER_RANDOM)
    ]
    pairs += [
        (find_cell(QWEN05, WRITER_TEAM, f), find_cell(QWEN05, WRITER_RANDOM, f)) for f in FILES
    ]
    pairs += [
        (find_cell(QWEN05, GAIN_TEAM, f), find_cell(QWEN05, other, f))
        for f in FILES
        for other in ("all-experts", "random-router", GAIN_RANDOM, "monolith")
    ]
    pairs += [
        (find_cell(QWEN05, mine, f), find_cell(QWEN15, system, f))
        for mine in ("compllm", PROGRAM, GAIN, GAIN_WRITER)
        for f in FILES
        for system in ("monolith", UNPROMPTED)
    ]
    pairs += [
        (find_cell(m, "monolith", f), find_cell(m, UNPROMPTED, f))
        for m in (SMOL, QWEN05, QWEN15)
        for f in FILES
    ]
    lines += ["| a | b | a - b |", "|---|---|---|"]
    for a, b in pairs:
        text = difference_text(a, b)
        if text != "–":
            lines.append(f"| {a.name} | {b.name} | {text} |")
    lines += ["", "## Where the wrong answers went wrong first", ""]
    rows = {}
    for cell in sorted(CELLS.values(), key=lambda c: c.name):
        scored = _cell_scores(cell)
        if scored is not None:
            rows[cell.name] = attribution(*scored)
    lines.append(attribution_table(rows) if rows else "(no run yet)")
    return "\n".join([*lines, *single_domain_tables()]) + "\n"


def unprompted_table() -> list[str]:
    """The monoliths without the base prompt: question, then part accuracy."""
    models = (SMOL, QWEN05, QWEN15)
    lines = [
        "",
        "Monoliths without the base prompt (`--no-base-prompt`; question; then part accuracy):",
    ]
    lines += ["", "| benchmark | " + " | ".join(SHORT[m] for m in models) + " |"]
    lines.append("|---" * (len(models) + 1) + "|")
    lines += _measure_rows(
        FILES,
        lambda file, measure: [cell_text(find_cell(m, UNPROMPTED, file), measure) for m in models],
    )
    return lines


def _team_table(caption: str, labels: Sequence[str], systems: Sequence[str]) -> list[str]:
    """One team's Table 7 rows on P-2 and All-2: a column per system over the same store."""
    lines = ["", caption, "", "| benchmark | " + " | ".join(labels) + " |"]
    lines.append("|---" * (len(labels) + 1) + "|")
    return lines + _measure_rows(
        ("p2", "all2"),
        lambda file, measure: [cell_text(find_cell(QWEN05, s, file), measure) for s in systems],
    )


def _router_cells(model: str, file: str, measure: str) -> list[str]:
    """Table 7's cells of one model's row: the router, then each system it is set against."""
    return [cell_text(find_cell(model, system, file), measure) for system in ROUTERS]


def _measure_rows(
    files: Sequence[str], cells_of: Callable[[str, str], list[str]], prefix: str = ""
) -> list[str]:
    """A table row per file and measure, question accuracy first ("P-2"), then parts ("P-2,
    parts"); `cells_of(file, measure)` gives the row's cells after its label."""
    rows = []
    for file in files:
        for measure in ("accuracy", "part_accuracy"):
            label = f"{LABELS[file]}{'' if measure == 'accuracy' else ', parts'}"
            rows.append(f"| {prefix}{label} | " + " | ".join(cells_of(file, measure)) + " |")
    return rows


def single_domain_tables() -> list[str]:
    """Each expert alone against the base (`compllm eval experts --outputs`), one table per
    outputs folder `MODEL/experts*`, on the questions both answered that share no passage."""
    lines = ["", "## Single-domain table: each expert against the base model", ""]
    heading = len(lines)
    for folder in sorted(OUTPUTS.glob("*/experts*")):
        rows = []
        for base_file in sorted(folder.glob(f"{PREFIX}single-*.base.jsonl")):
            stem = base_file.name.removesuffix(".base.jsonl").removeprefix(PREFIX)
            base, expert = answered(base_file), answered(folder / f"{PREFIX}{stem}.expert.jsonl")
            shared = shared_passages(stem)
            records = [r for r in _all_records(stem) if r["id"] in base.keys() & expert.keys()]
            records = [r for r in records if r["id"] not in shared]
            right = {
                who: [score_question(str(a[r["id"]]["answer"]), r["parts"]).right for r in records]
                for who, a in (("base", base), ("expert", expert))
            }
            domain = stem.removeprefix("single-")
            rows.append(expert_row(domain, right["base"], right["expert"]))
        if not rows:  # the folder answers another tier's files
            continue
        name = folder.relative_to(OUTPUTS)
        lines += [
            f"`{name}` (left out: questions that share a passage):",
            "",
            expert_table(rows),
            "",
        ]
    if len(lines) == heading:
        lines += ["(no run on this tier yet: `compllm eval experts --outputs`)", ""]
    return lines


def figure_systems() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """The figure's systems: label, base model, system and files; Table 5's columns on every
    file, then Table 7's routers not among them and all-experts over the gain and writer's
    teams on Table 7's files."""
    systems: list[tuple[str, str, str, tuple[str, ...]]] = [
        (label, model, system, FILES) for label, model, system in COLUMNS
    ]
    shown = {(model, system) for _, model, system in COLUMNS}
    systems += [
        (f"{system} {SHORT[model]}", model, system, ("p2", "all2"))
        for model in (SMOL, QWEN05)
        for system in ROUTERS
        if (model, system) not in shown
    ]
    systems += [
        (f"all-experts, {team} {SHORT[QWEN05]}", QWEN05, system, ("p2", "all2"))
        for team, system in (("gain team", GAIN_TEAM), ("writer's team", WRITER_TEAM))
    ]
    return systems


def figure_points() -> list[Point]:
    """A point for each of the figure's cells that has answers, from the tables' summaries."""
    points = []
    for label, model, system, files in figure_systems():
        for file in files:
            summary = cell_summary(find_cell(model, system, file))
            if summary is None:
                continue
            low, high = summary["accuracy_ci95"]
            points.append(
                Point(
                    benchmark=LABELS[file],
                    label=label,
                    model=SHORT[model],
                    system=system,
                    accuracy=100 * summary["accuracy"],
                    low=100 * low,
                    high=100 * high,
                    seconds=summary["seconds_per_question"],
                    n=summary["n"],
                )
            )
    return points


def _tier() -> str:
    return next(tier for tier, prefix in TIER_PREFIX.items() if prefix == PREFIX)


def figure_file() -> Path:
    """The chosen tier's figure, `FIGURES/answers-TIER.svg`."""
    return FIGURES / f"answers-{_tier()}.svg"


def write_figure(path: Path) -> str | None:
    """Draw the figure from the outputs on disk to `path`.

    Returns:
        None once it is written; else why not (no cell has answers yet, or matplotlib is
        missing), also printed on one line.
    """
    points = figure_points()
    reason = None if points else "no cell has answers yet"
    if points:
        try:
            save_svg(answers_figure(points, _tier()), path)
        except ModuleNotFoundError as error:
            if not (error.name or "").startswith("matplotlib"):
                raise
            reason = FIGURE_NEEDS
    print(f"figure written to {path}" if reason is None else f"no figure: {reason}")
    return reason


def write_tables() -> None:
    """Write the figure, then the tables file that shows it above the tables."""
    cell_summary.cache_clear()
    figure = figure_file()
    reason = write_figure(figure)
    if reason is None:
        path = Path(os.path.relpath(figure, TABLES.parent)).as_posix()
        head = f"![Question accuracy against seconds per question, one point a cell]({path})"
    else:
        head = f"No figure: {reason}."
    marks = [f"<!-- --8<-- [{end}:{SECTION}] -->" for end in ("start", "end")]
    TABLES.write_text(f"{head}\n\n{marks[0]}\n{tables()}{marks[1]}\n")


def _select_tier(tier: str) -> None:
    """Point the cells, outputs and tables at `tier`'s files (before any is read)."""
    global PREFIX, TABLES
    PREFIX = TIER_PREFIX[tier]
    TABLES = ROOT / f"tables{'-' + tier if PREFIX else ''}.md"


def _ensure_data(tier: str) -> None:
    if all(benchmark_file(f).is_file() for f in FILES):
        return
    from compllm_graph.cli import main

    if main(["eval", "benchmarks", "--out", str(DATA), "--tier", tier]) != 0:
        raise SystemExit("could not build the benchmark files (is ../shared/data there?)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="*", default=None, help="cell names (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="cells run at once")
    parser.add_argument("--threads", type=int, default=None, help="inference threads per cell")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="questions in flight per cell (batched)"
    )
    parser.add_argument("--tables-only", action="store_true", help="only rewrite tables.md")
    parser.add_argument("--list", action="store_true", help="list the cells and exit")
    parser.add_argument(
        "--tier",
        choices=TIERS,
        default="standard",
        help="benchmark tier: easy answers the easy-* files (`compllm eval benchmarks --tier "
        "easy`) and writes tables-easy.md",
    )
    args = parser.parse_args(argv)
    _select_tier(args.tier)
    _ensure_data(args.tier)
    if args.list:
        for cell in CELLS.values():
            done = len(_current(cell))
            print(f"{cell.name}: {done}/{cell.limit} answered")
        return 0
    if not args.tables_only:
        unknown = sorted(set(args.cells or ()) - set(CELLS))
        if unknown:
            parser.error(f"unknown cells {unknown}; see --list")
        chosen = [CELLS[name] for name in args.cells] if args.cells else list(CELLS.values())
        threads = args.threads or max(1, 2 // args.jobs)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for result in pool.map(lambda c: run_cell(c, threads, args.concurrency), chosen):
                print(json.dumps(result), flush=True)
                write_tables()
    write_tables()
    print(f"tables written to {TABLES}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
