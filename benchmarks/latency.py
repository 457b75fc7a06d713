"""The paper's Figure 7 and Table 8 on our models: where Comp-LLM's time and tokens go, per stage,
against monoliths that answer the whole question in one call.

For the first N MultiExpertQA-P-2 and N -All-2 questions (those the answer tables score: none
shares a passage with a train-split item), every system answers every question, on the llama.cpp
engine, with the settings of `compllm eval answers` (`--max-new-tokens` per answer, the base
prompt `defaults.BASE_SYSTEM_PROMPT`):

- Comp-LLM: `build_default_graph` on `--model` with its demo store, as `compllm ask` runs it
  (the program expert where it is on by default; routed by measured gain with the candidates it
  carries, where the model's pack ships a calibration: settings `store`); sub-queries run at
  once (the engine batches them).
- Comp-LLM-seq: the same graph with one device of capacity 1 for every expert and the base
  (`DeviceLimits`), so its sub-queries run one after another.
- Comp-LLM, ALIAS decomposer (with `--decomposer-model ALIAS`): the Comp-LLM graph with its
  decomposer on another model (`build_default_graph(decomposer_model=...)`, that model's
  shipped decomposer adapter); experts, base and aggregator stay on `--model`.
- monolith MODEL (each of `--monoliths`): the base model answers the whole question in one call,
  with one answer's tokens per part plus the aggregator's, as in `compllm eval answers`.

Questions alternate between the two files, and on each question the systems take turns going
first, so machine noise (other jobs on the CPU) hits every system alike. A
`compllm_graph.evaluation.timing.StageTimer` on each run collects, per stage (decompose, route,
execute and each sub-query inside it, aggregate), the wall seconds, the seconds in model calls
and the prompt and generated tokens the engine reported. The tables give the mean per question
(a stage a question did not have counts 0 for it); the ratios are of sums over the questions
both systems answered.

`--out FILE.json` keeps every per-question record and is rewritten after each one; a rerun with
the same FILE and settings answers only what is missing. The benchmark files come from
`compllm eval benchmarks --out benchmarks/answers/data` (built here when missing).

Usage: `python -m benchmarks.latency [--questions 50] [--model ALIAS] [--monoliths A B]
[--decomposer-model ALIAS] [--threads N] [--out FILE.json] [--table-only]`
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compllm_graph.evaluation.answer_commands import DEFAULT_ANSWER_TOKENS
from compllm_graph.evaluation.timing import GRAPH_STAGES, SUB_QUERY, StageTimer

if TYPE_CHECKING:
    from compllm_graph.scheduling import DeviceLimits

QWEN05, QWEN15 = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
FILES = ("p2", "all2", "p3")
"""Every file the benchmark can measure; P-3 holds the Comp-LLM-seq target (three parts)."""
DEFAULT_FILES = ("p2", "all2")
LABELS = {"p2": "P-2", "all2": "All-2", "p3": "P-3"}
COMPLLM, SEQUENTIAL = "Comp-LLM", "Comp-LLM-seq"
ANSWER = "answer"
"""The stage of a monolith's one call."""
TOTAL = "total"
MEASURES = ("seconds", "model_seconds", "prompt_tokens", "generated_tokens")

Record = dict[str, Any]
Runner = Callable[[Mapping[str, Any], StageTimer], dict[str, Any]]
"""Answers one benchmark record with the timer in its callbacks."""


def monolith(alias: str) -> str:
    """The system name of `alias` answering whole questions."""
    return f"monolith {alias}"


def with_decomposer(alias: str) -> str:
    """The system name of Comp-LLM with its decomposer on `alias`."""
    return f"{COMPLLM}, {alias} decomposer"


def is_with_decomposer(system: str) -> bool:
    """Whether `system` is Comp-LLM with its decomposer on another model (`with_decomposer`)."""
    return system.startswith(f"{COMPLLM}, ") and system.endswith(" decomposer")


def system_names(settings: Mapping[str, Any]) -> list[str]:
    """Every system a run of `settings` measures, in the order of the tables."""
    other = settings.get("decomposer_model")
    decomposers = [with_decomposer(other)] if other else []
    return [COMPLLM, SEQUENTIAL, *decomposers, *(monolith(m) for m in settings["monoliths"])]


# --- the tables (pure) ---------------------------------------------------------------------


def stage_key(stage: str) -> tuple[int, int, str]:
    """Sort key: decompose, route, execute, its sub-queries by number, aggregate, the rest."""
    if match := SUB_QUERY.fullmatch(stage):
        return (GRAPH_STAGES.index("execute"), int(match.group(1)), stage)
    if stage in GRAPH_STAGES:
        return (GRAPH_STAGES.index(stage), 0, stage)
    return (len(GRAPH_STAGES), 0, stage)


def stage_label(stage: str) -> str:
    """`sub_query_2` as `sub-query 2` (indented under execute); other stages as they are."""
    match = SUB_QUERY.fullmatch(stage)
    return f"  sub-query {match.group(1)}" if match else stage


def totals(record: Record) -> dict[str, float]:
    """A run's measures over the whole question: wall seconds as timed around the run, the
    rest summed over its stages (each model call belongs to one stage only)."""
    stages = record["stages"].values()
    return {
        "seconds": float(record["seconds"]),
        **{m: float(sum(s[m] for s in stages)) for m in MEASURES[1:]},
    }


def _key(record: Record) -> tuple[str, str]:
    return record["file"], record["id"]


def select(records: Sequence[Record], system: str, file: str | None = None) -> list[Record]:
    """The records of `system`, on `file` only when given."""
    return [r for r in records if r["system"] == system and file in (None, r["file"])]


def stage_means(records: Sequence[Record]) -> dict[str, dict[str, float]]:
    """Mean per question of each measure for every stage and the total, with `questions` (how
    many questions had the stage); a question without a stage counts 0 for it."""
    if not records:
        return {}
    count = len(records)
    stages = sorted({s for r in records for s in r["stages"]}, key=stage_key)
    means = {}
    for stage in stages:
        having = [r["stages"][stage] for r in records if stage in r["stages"]]
        means[stage] = {m: sum(s[m] for s in having) / count for m in MEASURES}
        means[stage]["questions"] = len(having)
    per_question = [totals(r) for r in records]
    means[TOTAL] = {m: sum(t[m] for t in per_question) / count for m in MEASURES}
    means[TOTAL]["questions"] = count
    return means


def ratio(
    records: Sequence[Record], numerator: str, denominator: str, measure: str, file: str | None
) -> tuple[float | None, int]:
    """Sum of `measure` (a total) for `numerator` over that of `denominator`, on the questions
    both answered, and their count; None when there are none or the denominator is 0."""
    first = {_key(r): totals(r)[measure] for r in select(records, numerator, file)}
    second = {_key(r): totals(r)[measure] for r in select(records, denominator, file)}
    shared = first.keys() & second.keys()
    below = sum(second[k] for k in shared)
    if not shared or below == 0:
        return None, len(shared)
    return sum(first[k] for k in shared) / below, len(shared)


def _number(value: float, measure: str) -> str:
    return f"{value:.2f}" if "seconds" in measure else f"{value:.0f}"


def stage_table(records: Sequence[Record], systems: Sequence[str], file: str | None) -> list[str]:
    """Markdown: per system and stage, the mean per question of every measure."""
    lines = [
        "| system | stage | questions | wall s | model s | prompt tokens | generated tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for system in systems:
        for stage, means in stage_means(select(records, system, file)).items():
            cells = [_number(means[m], m) for m in MEASURES]
            lines.append(
                f"| {system} | {stage_label(stage)} | {means['questions']:.0f} | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def ratio_pairs(systems: Sequence[str]) -> list[tuple[str, str]]:
    """Comp-LLM, Comp-LLM-seq and each Comp-LLM with another decomposer over each monolith,
    then Comp-LLM-seq and each Comp-LLM with another decomposer over Comp-LLM."""
    decomposers = [s for s in systems if is_with_decomposer(s)]
    graphs = [COMPLLM, SEQUENTIAL, *decomposers]
    monoliths = [s for s in systems if s not in graphs]
    pairs = [(graph, m) for graph in graphs for m in monoliths]
    return [*pairs, *((graph, COMPLLM) for graph in graphs[1:])]


def ratio_table(
    records: Sequence[Record], pairs: Sequence[tuple[str, str]], file: str | None
) -> list[str]:
    """Markdown: each pair's ratio of wall seconds, prompt and generated tokens."""
    lines = [
        "| ratio | questions | wall s | prompt tokens | generated tokens |",
        "|---|---|---|---|---|",
    ]
    for numerator, denominator in pairs:
        cells, shared = [], 0
        for measure in ("seconds", "prompt_tokens", "generated_tokens"):
            value, shared = ratio(records, numerator, denominator, measure, file)
            cells.append("–" if value is None else f"{value:.2f}x")
        lines.append(f"| {numerator} / {denominator} | {shared} | " + " | ".join(cells) + " |")
    return lines


def accuracy_line(records: Sequence[Record], systems: Sequence[str], file: str | None) -> str:
    """Each system's share of questions answered right, on these questions."""
    parts = []
    for system in systems:
        chosen = select(records, system, file)
        if chosen:
            right = sum(bool(r["right"]) for r in chosen)
            parts.append(f"{system} {right}/{len(chosen)}")
    return "Questions answered right: " + ", ".join(parts) + "."


def report(records: Sequence[Record], systems: Sequence[str]) -> str:
    """Per-stage tables and ratios for each file with records, then both together."""
    lines: list[str] = []
    present = [f for f in FILES if any(r["file"] == f for r in records)]
    for file in [*present, None] if len(present) > 1 else present:
        name = " and ".join(LABELS[f] for f in present) if file is None else LABELS[file]
        count = len({_key(r) for r in records if file in (None, r["file"])})
        lines += [f"## {name}: {count} questions", "", "Mean per question:", ""]
        lines += stage_table(records, systems, file)
        lines += ["", "Ratios (sums over the questions both systems answered):", ""]
        lines += ratio_table(records, ratio_pairs(systems), file)
        lines += ["", accuracy_line(records, systems, file), ""]
    return "\n".join(lines)


# --- running -------------------------------------------------------------------------------


def interleaved(
    by_file: Mapping[str, Sequence[Mapping[str, Any]]], count: int
) -> list[tuple[str, Mapping[str, Any]]]:
    """The first `count` questions of each file, alternating between the files."""
    return [
        (file, by_file[file][i]) for i in range(count) for file in by_file if i < len(by_file[file])
    ]


def turn(systems: Sequence[str], index: int) -> list[str]:
    """The systems in the order they answer question `index`: each goes first in turn."""
    start = index % len(systems)
    return [*systems[start:], *systems[:start]]


def measure(
    system: str, runner: Runner, file: str, record: Mapping[str, Any], score: Callable[..., bool]
) -> Record:
    """One system's answer to one question, with its stages' figures."""
    timer = StageTimer(outside=ANSWER)
    started = time.perf_counter()
    out = runner(record, timer)
    seconds = time.perf_counter() - started
    return {
        "system": system,
        "file": file,
        "id": record["id"],
        "seconds": seconds,
        "stages": {name: figures.to_dict() for name, figures in timer.stages().items()},
        "right": score(out["answer"], record["parts"]),
        **out,
    }


def graph_runner(graph: Any) -> Runner:
    """Runs a compiled Comp-LLM graph on the record's question."""

    def run(record: Mapping[str, Any], timer: StageTimer) -> dict[str, Any]:
        state = graph.invoke({"query": record["question"]}, {"callbacks": [timer]})
        return {
            "answer": state.get("answer") or "",
            "sub_queries": len(state.get("sub_answers") or []),
            "fallback_reason": state.get("fallback_reason"),
        }

    return run


def monolith_runner(model: Any, tokens: int, system_prompt: str | None) -> Runner:
    """The base model on the whole question, with `tokens` per part plus the aggregator's, and
    `system_prompt` first (the messages `compllm eval answers`' monolith sends)."""
    from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

    from compllm_graph.types import message_text

    head: list[BaseMessage] = [SystemMessage(system_prompt)] if system_prompt else []

    def run(record: Mapping[str, Any], timer: StageTimer) -> dict[str, Any]:
        chat = model.chat_model(max_new_tokens=tokens * (len(record["parts"]) + 1))
        messages = [*head, HumanMessage(record["question"])]
        reply = chat.invoke(messages, {"callbacks": [timer]})
        return {"answer": message_text(reply), "sub_queries": 0, "fallback_reason": None}

    return run


def build_systems(args: argparse.Namespace) -> tuple[dict[str, Runner], DeviceLimits]:
    """Every system's runner, and Comp-LLM-seq's device limits (to check it ran one at a time)."""
    from compllm_graph.defaults import BASE_SYSTEM_PROMPT, build_default_graph, program_by_default
    from compllm_graph.expert_store import demo_store
    from compllm_graph.models import load_model
    from compllm_graph.scheduling import DeviceLimits

    models: dict[str, Any] = {}

    def loaded(alias: str) -> Any:
        if alias not in models:
            models[alias] = load_model(alias, engine="llama.cpp", n_threads=args.threads)
        return models[alias]

    base = loaded(args.model)
    store = demo_store(base.name)
    program = program_by_default(base, store)
    one_at_a_time = DeviceLimits({"device": 1}, default_device="device")

    def graph(**options: Any) -> Runner:
        built = build_default_graph(
            base,
            store,
            max_new_tokens=args.max_new_tokens,
            base_system_prompt=BASE_SYSTEM_PROMPT,
            program_expert=program,
            **options,
        )
        return graph_runner(built.compile())

    systems = {COMPLLM: graph(), SEQUENTIAL: graph(device_limits=one_at_a_time)}
    if args.decomposer_model:
        other = with_decomposer(args.decomposer_model)
        systems[other] = graph(decomposer_model=loaded(args.decomposer_model))
    for alias in args.monoliths:
        systems[monolith(alias)] = monolith_runner(
            loaded(alias), args.max_new_tokens, BASE_SYSTEM_PROMPT
        )
    return systems, one_at_a_time


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What must match for a rerun to add to an `--out` file; `decomposer_model` only when
    given, so the files of runs without it still match theirs. `store` says what the demo
    store carried (files written before it existed had the similarity-routed store, version 4,
    and no program expert)."""
    settings = {
        "model": args.model,
        "monoliths": list(args.monoliths),
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens,
        "engine": "llama.cpp",
        "store": store_of(args.model),
    }
    if args.decomposer_model:
        settings["decomposer_model"] = args.decomposer_model
    return settings


def store_of(model: str) -> str:
    """The demo store of `model` in words: its version, and whether it routes by measured gain
    with which candidates (`expert_store.demo`)."""
    try:
        from compllm_graph.expert_store.demo import DEMO_VERSION, shipped_calibration
    except ImportError:  # the core install: nothing runs, but --table-only reads files
        return "demo (the [router] extra is not installed)"
    shipped = shipped_calibration(model)
    if shipped is None:
        return f"demo v{DEMO_VERSION}, by similarity"
    return f"demo v{DEMO_VERSION}, by measured gain, candidates {shipped.fetched()}"


def read_out(path: Path | None) -> tuple[dict[str, Any] | None, list[Record]]:
    """The settings and records an earlier run left in `path` (None and none when it does not
    exist).

    Raises:
        SystemExit: `path` is not such a file.
    """
    if path is None or not path.exists():
        return None, []
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return dict(saved["settings"]), list(saved["records"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(
            f"{path} is not a latency results file ({exc}); pass another --out"
        ) from None


def check_settings(saved: Mapping[str, Any] | None, settings: Mapping[str, Any]) -> None:
    """Refuse to add to records measured with other settings.

    Raises:
        SystemExit: `saved` differs from `settings`.
    """
    if saved is not None and dict(saved) != dict(settings):
        raise SystemExit(
            f"--out was written with {dict(saved)}, not {dict(settings)}: "
            "pass the same settings or another --out"
        )


def write_out(path: Path, settings: Mapping[str, Any], records: Sequence[Record]) -> None:
    """Replace `path` whole, so a run killed mid-write leaves the last good file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    body = {"settings": dict(settings), "records": list(records)}
    partial.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


def load_questions(
    data: Path, files: Sequence[str] = DEFAULT_FILES
) -> dict[str, list[dict[str, Any]]]:
    """The questions of each of `files` that share no passage with a train-split item (those the
    answer tables score), building the benchmark files first when missing."""
    from compllm_graph.data_dir import DEFAULT_DATA_DIR
    from compllm_graph.evaluation.answers import read_benchmark
    from compllm_graph.evaluation.leakage import shared_passage_ids, train_runs

    if not all((data / f"{f}.jsonl").is_file() for f in files):
        from compllm_graph.cli import main as compllm

        if compllm(["eval", "benchmarks", "--out", str(data)]) != 0:
            raise SystemExit(f"could not build the benchmark files in {data} (is the data there?)")
    runs = train_runs(DEFAULT_DATA_DIR)
    chosen = {}
    for file in files:
        records = read_benchmark(data / f"{file}.jsonl")
        shared = set(shared_passage_ids(records, runs))
        chosen[file] = [r for r in records if r["id"] not in shared]
    return chosen


def warm_up(systems: Mapping[str, Runner], records: Sequence[Mapping[str, Any]]) -> None:
    """Each system answers `records` unmeasured: first calls load the embedder and fill caches."""
    for record in records:
        for runner in systems.values():
            runner(record, StageTimer())


def run(args: argparse.Namespace, settings: Mapping[str, Any], done: list[Record]) -> list[Record]:
    """Measure what `done` lacks, saving after every answer; returns all the records."""
    from compllm_graph.evaluation.scoring import score_question

    def score(answer: str, parts: Any) -> bool:
        return score_question(answer, parts).right

    questions = load_questions(args.data, args.files)
    todo = interleaved(questions, args.questions)
    for file, pool in questions.items():
        if len(pool) < args.questions:
            print(f"{file}: only {len(pool)} questions to measure", file=sys.stderr)
    have = {(r["system"], r["file"], r["id"]) for r in done}
    systems, one_at_a_time = build_systems(args)
    names = list(systems)
    missing = [(f, q) for f, q in todo if any((s, f, q["id"]) not in have for s in names)]
    if missing and args.warmup:
        warm_up(systems, next(iter(questions.values()))[-args.warmup :])
    records = list(done)
    for index, (file, question) in enumerate(todo):
        for name in turn(names, index):
            if (name, file, question["id"]) in have:
                continue
            record = measure(name, systems[name], file, question, score)
            records.append(record)
            if args.out is not None:
                write_out(args.out, settings, records)
            print(
                f"[{index + 1}/{len(todo)}] {LABELS[file]} {question['id']}: {name} "
                f"{record['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    slot = one_at_a_time.semaphore(None)
    peak = 0 if slot is None else slot.peak
    if peak > 1:
        raise RuntimeError(f"{SEQUENTIAL} ran {peak} sub-queries at once; its limit is 1")
    return records


def no_usage_note(records: Sequence[Record]) -> str | None:
    """A warning when some model calls reported no token usage (their tokens count 0)."""
    calls = sum(s["calls_without_usage"] for r in records for s in r["stages"].values())
    if not calls:
        return None
    return f"note: {calls} model calls reported no token usage; they count 0 tokens"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=50, help="questions per file")
    parser.add_argument(
        "--files",
        nargs="+",
        choices=FILES,
        default=list(DEFAULT_FILES),
        help="benchmark files to measure, interleaved (default: %(default)s; p3 for the "
        "Comp-LLM-seq target)",
    )
    parser.add_argument("--model", default=QWEN05, help="Comp-LLM's base model (catalogue alias)")
    parser.add_argument(
        "--monoliths", nargs="+", default=[QWEN05, QWEN15], help="models answering whole questions"
    )
    parser.add_argument(
        "--decomposer-model",
        default=None,
        metavar="ALIAS",
        help="also measure Comp-LLM with its decomposer on this model (catalogue alias)",
    )
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads per model")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_ANSWER_TOKENS)
    parser.add_argument(
        "--warmup", type=int, default=1, help="unmeasured questions of the first file first"
    )
    parser.add_argument("--data", type=Path, default=None, help="benchmark files folder")
    parser.add_argument("--out", type=Path, default=None, help="per-question records (JSON)")
    parser.add_argument("--table-only", action="store_true", help="print the tables of --out")
    args = parser.parse_args(argv)
    if args.questions < 1:
        parser.error("--questions must be at least 1")
    if args.table_only and args.out is None:
        parser.error("--table-only reads --out FILE.json")
    if args.data is None:
        args.data = Path(__file__).resolve().parent / "answers" / "data"
    settings = settings_of(args)
    saved, records = read_out(args.out)
    if args.table_only:
        if saved is None:
            parser.error(f"{args.out} does not exist")
        settings = saved
    else:
        check_settings(saved, settings)
        records = run(args, settings, records)
    print(report(records, system_names(settings)))
    if note := no_usage_note(records):
        print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
