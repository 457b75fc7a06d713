"""`compllm`: ask questions, manage models and experts, train and evaluate."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from compllm_graph._extras import MissingExtraError
from compllm_graph._help import field_help
from compllm_graph._progress import VERBOSE_VARIABLE
from compllm_graph.models.catalogue import DEFAULT_MODEL, PROGRAM_EXPERT_MODELS
from compllm_graph.models.requests import GenerationSettings
from compllm_graph.query_graph import QueryGraph
from compllm_graph.types import display_name

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from compllm_graph.models.loading import Engine

DEFAULT_QUESTION = (
    "Which organelle makes most of a cell's ATP, and what is the chemical formula of glucose?"
)


# Each group's parser comes from the modules named here, imported only when that group runs, so
# `compllm --help` and `compllm ask` load neither torch's training stack nor the server.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "models": ("fetch and list the catalogued local models", ("compllm_graph.models.commands",)),
    "experts": (
        "manage the expert store and route texts",
        ("compllm_graph.expert_store.commands",),
    ),
    "train": ("fine-tune LoRA adapters", ("compllm_graph.training.train_commands",)),
    "eval": (
        "reproduce the paper's tables",
        (
            "compllm_graph.evaluation.routing_commands",
            "compllm_graph.evaluation.decomposition_commands",
            "compllm_graph.evaluation.answer_commands",
        ),
    ),
    "serve": (
        "serve a local model and its LoRA adapters, or the whole graph (--graph), over an "
        "OpenAI-compatible API",
        ("compllm_graph.serve_graph",),
    ),
}
# Subcommands a group takes from a module of a higher layer, which its own module may not import
# (docs/architecture.md): `compllm experts calibrate` answers the calibration split (`datasets`)
# and scores the replies (`evaluation`); `compllm experts retrieval` checks items against the
# item splits (`datasets`). Each module's `extend(group, subcommands)` adds them.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "experts": (
        "compllm_graph.evaluation.routing_commands",
        "compllm_graph.evaluation.retrieval",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `compllm` command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if args.verbose:
            os.environ[VERBOSE_VARIABLE] = "1"
        if not hasattr(args, "func"):
            parser.print_help()
            return 2
        former = warnings.formatwarning
        if not args.verbose:
            warnings.formatwarning = _short_warning
        try:
            return int(args.func(args))
        finally:
            warnings.formatwarning = former
    except MissingExtraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _short_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """A warning as the command line shows it: one `warning: ...` line, not the source line
    that raised it (`--verbose` shows that)."""
    return f"warning: {message}\n"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `compllm` parser, with the full arguments of `command`'s group only.

    Args:
        command: The command about to run (the first argument); the other groups get a stub
            that lists them in `--help`. None builds every group in full.
    """
    parser = argparse.ArgumentParser(prog="compllm", description=__doc__)
    parser.add_argument(
        "--verbose", action="store_true", help="show the libraries' own logs and progress bars"
    )
    commands = parser.add_subparsers(title="commands")
    _add_ask(commands)
    for name, (help_text, modules) in GROUPS.items():
        group = commands.add_parser(name, help=help_text, description=help_text)
        if command is None or command == name:
            subcommands = _register(group, modules)
            for module in EXTENSIONS.get(name, ()):
                importlib.import_module(module).extend(name, subcommands)
    return parser


def _register(group: argparse.ArgumentParser, modules: tuple[str, ...]) -> Any:
    """Add the group's subcommands; return what `EXTENSIONS` add theirs to (a one-module group's
    `register` returns its subcommands action where the group has extensions)."""
    if len(modules) == 1:
        return importlib.import_module(modules[0]).register(group)
    subcommands = group.add_subparsers(title="evaluations")
    for module in modules:
        importlib.import_module(module).register(subcommands)
    return subcommands


def _add_ask(commands: argparse._SubParsersAction) -> None:
    ask = commands.add_parser("ask", help="answer a question with the whole Comp-LLM pipeline")
    ask.add_argument(
        "question", nargs="?", default=DEFAULT_QUESTION, help="the question (default: the demo one)"
    )
    ask.add_argument(
        "--model", default=None, help=f"model alias, path or HF id (default: {DEFAULT_MODEL})"
    )
    ask.add_argument("--store", default=None, help="expert store folder (default: the demo store)")
    ask.add_argument(
        "--decomposer",
        default=None,
        help="decomposer adapter folder from `compllm train decomposer` (default: the shipped one)",
    )
    ask.add_argument(
        "--decomposer-model",
        default=None,
        metavar="ALIAS",
        help="run the decomposer on this model (alias, path or HF id) instead of --model, with "
        "that model's shipped decomposer adapter unless --decomposer names one; e.g. "
        "smollm2-135m-instruct under a larger --model, for a faster decompose stage "
        "(default: --model)",
    )
    ask.add_argument(
        "--decomposer-beams",
        type=int,
        default=1,
        help=f"{field_help(GenerationSettings, 'num_beams')} of the decomposer (default: 1)",
    )
    ask.add_argument(
        "--scheduler",
        choices=("eager", "waves"),
        default="eager",
        help="eager starts each sub-query when its own parents finish; waves runs one "
        "LangGraph superstep per level (default: eager)",
    )
    ask.add_argument(
        "--engine",
        choices=("llama.cpp", "transformers"),
        default=None,
        help="inference engine (default: llama.cpp where installed; transformers for beams)",
    )
    ask.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llama.cpp CPU threads (default: $COMPLLM_THREADS or the physical cores)",
    )
    ask.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help=f"{field_help(GenerationSettings, 'max_new_tokens')}; here for the answers of "
        "experts, base and aggregator (default: 48)",
    )
    ask.add_argument(
        "--checkpoints",
        default=None,
        metavar="PATH.sqlite|URL",
        help="keep the run's checkpoints in this SQLite file or PostgreSQL database "
        "(postgresql://USER:PASSWORD@HOST:PORT/DB; needs --thread)",
    )
    ask.add_argument(
        "--thread",
        default=None,
        metavar="ID",
        help="the run's thread: an interrupted question on this thread resumes where it stopped",
    )
    ask.add_argument(
        "--aggregate",
        choices=("auto", "always"),
        default=None,
        help="when the reducer runs: auto joins the answers of independent parts without a "
        "reducer call, always calls it whenever there is something to combine (default: auto)",
    )
    ask.add_argument(
        "--no-split-questions",
        action="store_true",
        help="turn off the and-split rule (a question the decomposer left whole that is "
        "independent questions joined by 'and' gets a sub-query per question)",
    )
    ask.add_argument(
        "--no-split-chains",
        action="store_true",
        help="turn off the chain rule (a sub-query asking for an attribute of a thing it only "
        "describes, 'the symbol of the element that ...', becomes the thing, then its attribute)",
    )
    ask.add_argument(
        "--no-carry-premise",
        action="store_true",
        help="turn off the premise rule (a sub-query that asks about the facts the question "
        "opens with, but was written without them, gets them in front)",
    )
    ask.add_argument(
        "--program-expert",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the mathematics expert answers by a program the model writes and a sandbox "
        "runs, falling back to the expert itself (default: on with the demo store of a model "
        "where it is measured better than the mathematics adapter: "
        f"{', '.join(sorted(PROGRAM_EXPERT_MODELS))}; off otherwise)",
    )
    ask.add_argument("--stream", action="store_true", help="print events as they happen")
    ask.add_argument("--json", action="store_true", help="end with one JSON object")
    ask.set_defaults(func=run_ask)


def run_ask(args: argparse.Namespace) -> int:
    """`compllm ask`: answer the question with the default graph; exit code 2 on bad input.

    The question is cleaned first (`clean_question`: undecodable bytes of the command line,
    which Python passes as lone surrogates, become U+FFFD) and an empty or whitespace-only one
    is refused before any model loads. An error is one `error: ...` line on stderr and, with
    `--json`, also `{"error": ...}` on stdout, so that output still ends with a JSON object.
    """
    from compllm_graph.checkpoints import CheckpointError, open_checkpointer
    from compllm_graph.defaults import DEFAULT_MAX_NEW_TOKENS, build_default_graph
    from compllm_graph.expert_store import ExpertStore, StoreError
    from compllm_graph.models import ModelLoadError, load_model
    from compllm_graph.nodes.decompose import QuestionError, clean_question

    if bool(args.checkpoints) != bool(args.thread):
        return _ask_failed(args, "--checkpoints and --thread go together")
    started = time.perf_counter()
    try:
        question = clean_question(args.question, "the question")
        checkpointer = open_checkpointer(args.checkpoints)  # before the model: fails fast
        name = args.model or DEFAULT_MODEL
        # The same alias twice is the one-model graph: load it once.
        own = args.decomposer_model not in (None, name)
        local_model = load_model(name, engine=_engine(args, not own), n_threads=args.threads)
        decomposer_model = (
            load_model(args.decomposer_model, engine=_engine(args, True), n_threads=args.threads)
            if own
            else None
        )
        store = ExpertStore.open(args.store) if args.store else None
        graph = build_default_graph(
            local_model,
            store,
            max_new_tokens=args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            decomposer_model=decomposer_model,
            decomposer_adapter=args.decomposer,
            decomposer_beams=args.decomposer_beams,
            scheduler=args.scheduler,
            aggregate=args.aggregate,
            split_questions=not args.no_split_questions,
            split_chains=not args.no_split_chains,
            carry_premise=not args.no_carry_premise,
            program_expert=args.program_expert,
        ).compile(checkpointer=checkpointer)
    # QuestionError is a ValueError
    except (ModelLoadError, StoreError, CheckpointError, ValueError) as err:
        return _ask_failed(args, str(err))
    timings: dict[str, float] = {"load": time.perf_counter() - started}
    config: RunnableConfig = {"configurable": {"thread_id": args.thread}} if args.thread else {}
    pending = graph.get_state(config).next if args.thread else ()
    if pending:
        print(f"resuming thread {args.thread!r} at {', '.join(pending)}", file=sys.stderr)
    inputs = None if pending else {"query": question}
    stages = STAGES[STAGES.index(pending[0]) :] if pending else STAGES
    try:
        out = _run_streaming(graph, inputs, timings, echo=args.stream, config=config, stages=stages)
    # a thread another client left ending in an answer; the checkpoint database lost mid-run
    except (QuestionError, CheckpointError) as err:
        return _ask_failed(args, str(err))
    timings["total"] = time.perf_counter() - started
    print(format_report(out, timings))
    if args.json:
        print(json.dumps(report_json(out, timings)))
    return 0


def _engine(args: argparse.Namespace, decomposes: bool) -> Engine | None:
    """`--engine`, else transformers for the model that decodes the decomposition by beam
    search (`--decomposer-beams` above 1: beam search runs there), else the default."""
    if args.engine is None and decomposes and args.decomposer_beams > 1:
        return "transformers"
    return args.engine


def _ask_failed(args: argparse.Namespace, message: str) -> int:
    """Report why `ask` failed, on stderr and (with `--json`) as JSON on stdout; returns 2."""
    print(f"error: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"error": message}))
    return 2


STAGES = ("decompose", "route", "execute", "aggregate")


def _run_streaming(
    graph: Any,
    inputs: dict | None,
    timings: dict[str, float],
    echo: bool,
    config: RunnableConfig | None = None,
    stages: tuple[str, ...] = (),
) -> dict:
    """Run the graph through its stream; each stage's time is the gap between state values.

    `inputs` None resumes the thread in `config`; `stages` are the nodes left to run.
    """
    out: dict = {}
    names = iter(("input", *(stages or STAGES)))
    mark = time.perf_counter()
    # A checkpointed run writes each step before the next starts, so a kill loses no work.
    durability = "sync" if config else None
    for mode, chunk in graph.stream(
        inputs, config or None, stream_mode=["custom", "values"], durability=durability
    ):
        if mode == "values":
            now = time.perf_counter()
            stage = next(names, "resumed")
            if stage != "input":
                timings[stage] = now - mark
            out, mark = chunk, now
        elif echo:
            print(f"  · {describe_event(chunk)}", flush=True)
    return out


def describe_event(event: dict) -> str:
    """One line for a stream event."""
    kind = event["event"]
    if kind == "decomposition":
        return f"decomposed into {len(event['sub_queries'])} sub-queries"
    if kind == "route":
        who = display_name(event["expert"])
        how = ", on its ancestors" if event.get("on_ancestors") else ""
        how += ", the router failed" if event.get("fallback_reason") else ""
        return f"route [{event['sub_query']}] -> {who} ({event['score']:.2f}{how})"
    if kind == "sub_query_start":
        return f"start [{event['sub_query']}] on {display_name(event['expert'])}"
    if kind == "sub_query_end":
        return (
            f"done  [{event['sub_query']}] in {event['seconds']:.1f} s: {_short(event['answer'])}"
        )
    return f"answer: {_short(event.get('answer', ''))}"


def _short(text: str, width: int = 70) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def format_report(out: dict, timings: dict[str, float]) -> str:
    """The human-readable result of `compllm ask`."""
    graph = QueryGraph.from_dict(out["query_graph"])
    lines = [f"Question: {out['query']}", ""]
    depth = graph.critical_path_length
    lines.append(f"Sub-queries ({len(graph)}; longest chain of dependent ones: {depth}):")
    for sq in graph:
        needs = f"   <- needs {', '.join(map(str, sq.parents))}" if sq.parents else ""
        lines.append(f"  [{sq.id}] {sq.text}{needs}")
    lines += ["", "Routes:"]
    for sq, route in zip(graph, out["routes"]):
        others = ", ".join(f"{n} {s:.2f}" for n, s in route["candidates"])
        how = "   routed on its ancestors too" if route.get("on_ancestors") else ""
        who = display_name(route["expert"])
        lines.append(f"  [{sq.id}] {who:<12} {route['score']:.2f}   ({others}){how}")
        if route.get("reason"):  # a calibrated store's: why this expert (or the base) answers
            lines.append(f"      why: {route['reason']}")
    lines += ["", "Sub-answers:"]
    for answer in out["sub_answers"]:
        who = display_name(answer["expert"])
        lines.append(
            f"  [{answer['sub_query']}] {who} {answer['seconds']:.1f} s: {answer['answer']}"
        )
        if answer["fallback_reason"]:
            lines.append(f"      fell back to base: {answer['fallback_reason']}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total")
    lines += ["", f"Answer: {out['answer']}"]
    if out.get("fallback_reason"):  # the decomposer's or the aggregator's, in pipeline order
        lines.append(f"  (fallback: {out['fallback_reason']})")
    lines += [f"  ({note})" for note in answer_notes(out)]
    lines += ["", f"Total: {timings['total']:.1f} s ({stages})"]
    return "\n".join(lines)


JOINED_NOTE = "joined without a reducer call"


def answer_notes(out: dict) -> list[str]:
    """What the decompose and aggregate nodes did that the sub-queries and the answer do not
    show: the decomposition rules' note (state `split_rule`: the and-split, chain and premise
    rules), and that the parts' answers were joined without a reducer call (state
    `aggregation` "joined", for more than one part)."""
    notes = [f"decomposition rules: {out['split_rule']}"] if out.get("split_rule") else []
    if out.get("aggregation") == "joined" and len(out["query_graph"]["sub_queries"]) > 1:
        notes.append(JOINED_NOTE)
    return notes


def report_json(out: dict, timings: dict[str, float]) -> dict:
    """The `--json` object of `compllm ask`."""
    return {
        "query": out["query"],
        "sub_queries": out["query_graph"]["sub_queries"],
        "routes": out["routes"],
        "sub_answers": out["sub_answers"],
        "answer": out["answer"],
        "fallback_reason": out.get("fallback_reason"),
        "split_rule": out.get("split_rule"),
        "aggregation": out.get("aggregation"),
        "timings": timings,
    }


if __name__ == "__main__":
    sys.exit(main())
