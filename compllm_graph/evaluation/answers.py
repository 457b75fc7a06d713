"""Answering a benchmark file with one system, resumably, and scoring what it answered.

Systems (the paper's Tables 5 and 7):

- `compllm`: the whole pipeline (decompose, route, execute, aggregate).
- `monolith`: the same base model answering the whole question in one call, with the same total
  answer budget (one answer's tokens per part, plus the aggregator's) and the system prompt the
  pipeline's base model gets (`defaults.BASE_SYSTEM_PROMPT`; `--no-base-prompt` drops it from
  both).
- `ft`: Table 5's FT rows: the base model with the all-domains adapter (one LoRA trained on
  every expert's data) answering the whole question in one call, asked exactly as the monolith
  is (same system prompt, same budget), so only the adapter differs.
- `all-experts`: Table 7's all-experts row: the pipeline with every sub-query asked of every
  expert in the store, their replies combined into one sub-answer (`all_experts`: the majority
  answer, else the answer the base model judges right among them), then the usual aggregation.
- `one-adapter`: the pipeline with every sub-query sent to the all-domains adapter, as its one
  expert. Not one of the paper's systems; it was called `all-experts` before the paper's
  all-experts was built (see `FORMER_NAMES`).
- `random-router`: the pipeline with a seeded random expert per sub-query.
- `oracle-router`: the pipeline with each sub-query sent to its gold part's domain expert (the
  gold part is the one whose words it shares most).

Answers are appended to an outputs file one JSON line per question (`id`, `answer`,
`sub_answers`, `routes`, `seconds`; the pipeline's also `edges`, its decomposition's
dependencies), so a run that stops can be rerun and skips what it did.

Both files are read and checked whole before anything is answered (`read_benchmark`,
`answered`): one error lists every bad line, so no run stops on a bad line hours in.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal, get_args

from langchain_core.messages import HumanMessage
from langchain_core.runnables import Runnable

from compllm_graph.errors import CompLLMError
from compllm_graph.evaluation.scoring import part_right, score_question
from compllm_graph.evaluation.stats import bootstrap_interval
from compllm_graph.query_graph import QueryGraph
from compllm_graph.types import Route, Router, display_name, message_text

System = Literal[
    "compllm", "monolith", "ft", "all-experts", "one-adapter", "random-router", "oracle-router"
]
FORMER_NAMES = {"one-adapter": "all-experts"}
"""Systems whose name changed, by the name they had. `all-experts` now names the paper's
all-experts system, so the name itself is still valid; `check_outputs_system` refuses outputs
that the other system wrote."""
RECORD_KEYS = frozenset({"id", "question", "parts", "edges"})
PART_KEYS = frozenset({"question", "answer", "choices", "domain"})
ALL_DOMAINS_EXPERT = "all-domains"
"""The all-domains adapter's name: the expert of every route of `one-adapter`."""
ALL_EXPERTS = "all-experts"
"""The combined expert's name: the expert of every route of `all-experts`."""

Answer = dict[str, Any]
Answerer = Callable[[Mapping[str, Any]], Answer]
"""Answers one benchmark record: `answer`, `sub_answers` and `routes`."""


class BenchmarkError(CompLLMError, ValueError):
    """A benchmark or outputs file is missing, malformed, or does not match the other."""


def read_benchmark(path: Path) -> list[dict[str, Any]]:
    """The records of a benchmark JSONL file, every line checked before any is used.

    A record has exactly `RECORD_KEYS`: a non-empty string `id`, unique in the file, and
    `question`; a non-empty list of `parts`, each with exactly `PART_KEYS` (a non-empty string
    `question` and `domain`, a string or number `answer`, and `choices` null or a list of
    strings holding the answer); and `edges`, `[i, j]` pairs of 1-based part indices, i < j.

    Raises:
        BenchmarkError: an unreadable file, no question, or bad lines (not JSON, wrong keys or
            types, bad edges, a repeated id); the message lists every bad line.
    """
    first_line: dict[str, int] = {}

    def check(record: Any, number: int) -> str | None:
        problem = _record_problem(record)
        if problem is not None:
            return problem
        first = first_line.setdefault(record["id"], number)
        if first != number:
            return f"the id {record['id']!r} is used twice (first on line {first})"
        return None

    records = _read_jsonl(path, "benchmark", check)
    if not records:
        raise BenchmarkError(f"{path} holds no question")
    return records


MAX_LISTED_LINES = 20
"""A file's error lists this many bad lines, then counts the rest."""


def _read_jsonl(path: Path, what: str, check: Callable[[Any, int], str | None]) -> list[Any]:
    """The values of a JSONL file's non-blank lines, all checked before any is returned.

    Every line is parsed and given to `check(value, line_number)`, which returns what is wrong
    with it or None, so one error names every bad line: a run never starts on a file whose
    last line would stop it an hour later.

    Raises:
        BenchmarkError: the file cannot be read, or lines are not JSON or fail `check`.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"cannot read the {what} {path}: {exc}") from exc
    values, problems = [], []
    for number, line in enumerate(text.split("\n"), 1):  # not at U+2028 inside strings
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            problems.append(f"{path}:{number}: not JSON: {exc}")
            continue
        problem = check(value, number)
        if problem is None:
            values.append(value)
        else:
            problems.append(f"{path}:{number}: {problem}")
    if len(problems) == 1:
        raise BenchmarkError(problems[0])
    if problems:
        listed = problems[:MAX_LISTED_LINES]
        more = len(problems) - len(listed)
        raise BenchmarkError(
            f"{len(problems)} bad lines in the {what} {path}:\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else "")
        )
    return values


def _record_problem(record: Any) -> str | None:
    """What is wrong with one benchmark record (the format of `read_benchmark`), or None."""
    if not isinstance(record, dict) or set(record) != RECORD_KEYS:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        return f"a record needs exactly {sorted(RECORD_KEYS)}, got {keys}"
    for key in ("id", "question"):
        if not _text(record[key]):
            return f"{key!r} must be a non-empty string, got {record[key]!r}"
    parts = record["parts"]
    if not isinstance(parts, list) or not parts:
        return "'parts' must be a non-empty list"
    for number, part in enumerate(parts, 1):
        problem = _part_problem(part)
        if problem is not None:
            return f"part {number}: {problem}"
    return _edges_problem(record["edges"], len(parts))


def _part_problem(part: Any) -> str | None:
    if not isinstance(part, dict) or set(part) != PART_KEYS:
        return f"each part needs exactly {sorted(PART_KEYS)}"
    for key in ("question", "domain"):
        if not _text(part[key]):
            return f"{key!r} must be a non-empty string, got {part[key]!r}"
    answer, choices = part["answer"], part["choices"]
    if not isinstance(answer, str | int | float) or isinstance(answer, bool):
        return f"'answer' must be a string or a number, got {answer!r}"
    if choices is not None and not (
        isinstance(choices, list) and all(isinstance(c, str) for c in choices)
    ):
        return f"'choices' must be null or a list of strings, got {choices!r}"
    if choices is not None and str(answer) not in choices:
        return f"the gold answer {answer!r} is not a choice"
    return None


def _edges_problem(edges: Any, parts: int) -> str | None:
    if not isinstance(edges, list):
        return f"'edges' must be a list of [i, j] pairs, got {edges!r}"
    for edge in edges:
        if (
            not isinstance(edge, list)
            or len(edge) != 2
            or not all(_index(i) and 1 <= i <= parts for i in edge)
            or edge[0] >= edge[1]
        ):
            return f"bad edge {edge!r} (1-based part indices, i before j)"
    return None


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def answered(outputs: Path | None) -> dict[str, Answer]:
    """The answers already in an outputs file, by id (empty when there is none).

    Raises:
        BenchmarkError: lines that are not JSON objects with an `id`, an `answer` and, if any,
            numeric `seconds` (all of them are listed), or an unreadable file.
    """
    if outputs is None or not outputs.exists():
        return {}
    return {str(row["id"]): row for row in _read_jsonl(outputs, "outputs", _outputs_problem)}


def _outputs_problem(row: Any, number: int) -> str | None:
    if not isinstance(row, dict) or not {"id", "answer"} <= set(row):
        return f"not an outputs line: it needs an 'id' and an 'answer', got {str(row)[:80]!r}"
    seconds = row.get("seconds", 0.0)  # `summarise` averages them
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return f"'seconds' must be a number, got {seconds!r}"
    return None


QUESTION_HASH = "question_sha256"
"""Outputs key: the start of the question's sha256, so a resumed run can tell that an id now
names another question (the benchmark was rebuilt) instead of reusing a stale answer."""


def question_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(str(record["question"]).encode()).hexdigest()[:16]


def changed_ids(records: Sequence[Mapping[str, Any]], done: Mapping[str, Answer]) -> list[str]:
    """Ids whose answer in `done` was given to another question text (the benchmark was rebuilt
    since); lines without `QUESTION_HASH` (written by other tools) count as unchanged."""
    return [
        r["id"]
        for r in records
        if r["id"] in done
        and done[r["id"]].get(QUESTION_HASH, question_hash(r)) != question_hash(r)
    ]


def set_aside(outputs: Path, ids: Collection[str], why: str = "changed") -> Path:
    """Move the lines of `ids` out of `outputs` into `NAME.{why}.jsonl` beside it (appended,
    so nothing is lost); returns that file."""
    kept: list[str] = []
    moved: list[str] = []
    for line in outputs.read_text(encoding="utf-8").splitlines():
        if line.strip():
            (moved if str(json.loads(line)["id"]) in ids else kept).append(line)
    aside = outputs.with_name(f"{outputs.name.removesuffix('.jsonl')}.{why}.jsonl")
    with aside.open("a", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in moved)
    outputs.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    return aside


def run(
    records: Sequence[Mapping[str, Any]],
    answerer: Answerer,
    outputs: Path | None = None,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
    concurrency: int = 1,
    redo_changed: bool = False,
) -> list[Answer]:
    """Answer every record not yet in `outputs`, appending each answer as it comes.

    Args:
        records: The benchmark's records.
        answerer: Answers one record; called from `concurrency` threads at once.
        outputs: JSONL file of answers, read first and appended to.
        progress: Wraps the iteration over answers as they finish (a progress bar).
        concurrency: Questions in flight at once. More than 1 lets the engine batch their
            requests; each answer's `seconds` is then its latency under that load, and lines
            are appended in the order questions finish.
        redo_changed: Answer again the questions whose text changed under their id, after
            moving their old lines aside (`set_aside`).

    Returns:
        The answers of all `records`: those read from `outputs` and the new ones, in order.

    Raises:
        ValueError: `concurrency` below 1.
        BenchmarkError: `outputs` answers a question of the same id with another text and
            `redo_changed` is off (lines written by other tools, without `QUESTION_HASH`, are
            taken as they are).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    done = answered(outputs)
    stale = changed_ids(records, done)
    if stale and outputs is not None and redo_changed:
        set_aside(outputs, set(stale))
        done = answered(outputs)
    elif stale:
        raise BenchmarkError(
            f"{outputs} answers other questions under {len(stale)} of these ids (first "
            f"{stale[0]!r}): the benchmark was rebuilt since; pass --redo-changed to answer "
            "them again (their old lines are kept in NAME.changed.jsonl)"
        )
    todo = [r for r in records if r["id"] not in done]
    handle = outputs.open("a", encoding="utf-8") if outputs is not None else None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="answer")
    try:
        futures = [pool.submit(_answer_row, answerer, record) for record in todo]
        rows = (future.result() for future in as_completed(futures))
        for row in progress(rows, len(todo)) if progress else rows:
            done[row["id"]] = row
            if handle is not None:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                handle.flush()
    finally:
        # On an error or Ctrl-C, only the questions already in flight finish.
        pool.shutdown(cancel_futures=True)
        if handle is not None:
            handle.close()
    return [done[r["id"]] for r in records]


def _answer_row(answerer: Answerer, record: Mapping[str, Any]) -> Answer:
    start = time.perf_counter()
    reply = answerer(record)
    return {
        "id": record["id"],
        **reply,
        "seconds": round(time.perf_counter() - start, 3),
        QUESTION_HASH: question_hash(record),
    }


def summarise(
    records: Sequence[Mapping[str, Any]], answers: Sequence[Answer], seed: int = 0
) -> dict[str, Any]:
    """Question and part accuracy (with 95 % bootstrap intervals), speed, and accuracy per domain.

    Raises:
        BenchmarkError: an answer's id is not the record's at the same position.
    """
    rights: list[bool] = []
    parts_right: list[bool] = []
    by_domain: dict[str, list[bool]] = {}
    for record, answer in zip(records, answers, strict=True):
        if answer["id"] != record["id"]:
            raise BenchmarkError(f"answer {answer['id']!r} is not for question {record['id']!r}")
        score = score_question(str(answer["answer"]), record["parts"])
        rights.append(score.right)
        parts_right.extend(score.parts)
        for part, right in zip(record["parts"], score.parts):
            by_domain.setdefault(part["domain"], []).append(right)
    seconds = [float(a.get("seconds", 0.0)) for a in answers]
    return {
        "accuracy": _share(rights),
        "accuracy_ci95": bootstrap_interval(rights, seed=seed),
        "part_accuracy": _share(parts_right),
        "part_accuracy_ci95": bootstrap_interval(parts_right, seed=seed),
        "n": len(rights),
        "seconds_per_question": round(sum(seconds) / len(seconds), 3) if seconds else 0.0,
        "part_accuracy_by_domain": {d: _share(v) for d, v in sorted(by_domain.items())},
    }


def _share(values: Sequence[bool]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def monolith_answerer(chat_model_for: Callable[[int], Runnable]) -> Answerer:
    """The whole question in one call; `chat_model_for(budget)` gives a model with that budget.

    The budget is counted in answers: one per part plus the aggregator's.
    """

    def answer(record: Mapping[str, Any]) -> Answer:
        model = chat_model_for(len(record["parts"]) + 1)
        text = message_text(model.invoke([HumanMessage(record["question"])]))
        return {"answer": text, "sub_answers": [], "routes": []}

    return answer


def graph_answerer(
    graph_for: Callable[[Mapping[str, Any]], Runnable],
) -> Answerer:
    """The pipeline; `graph_for(record)` gives the compiled graph that answers the record."""

    def answer(record: Mapping[str, Any]) -> Answer:
        return graph_reply(graph_for(record), record)

    return answer


def graph_reply(graph: Runnable, record: Mapping[str, Any]) -> Answer:
    """One record answered by a compiled pipeline graph, as an outputs line's fields."""
    state = graph.invoke({"query": record["question"]})
    subs = state.get("sub_answers") or []
    return {
        "answer": state.get("answer") or "",
        "sub_answers": [
            {
                "question": s["question"],
                "answer": s["answer"],
                "expert": display_name(s["expert"]),
            }
            for s in subs
        ],
        "routes": [display_name(Route.from_dict(r).expert) for r in state.get("routes") or []],
        "edges": _edges(state),
        "fallback_reason": state.get("fallback_reason"),
    }


def _edges(state: Mapping[str, Any]) -> list[list[int]]:
    """The decomposition's dependencies, `[i, j]` 1-based as in a benchmark record."""
    graph = state.get("query_graph")
    return [list(edge) for edge in QueryGraph.from_dict(graph).edges] if graph else []


def one_expert_router(name: str) -> Router:
    """Every sub-query to `name` (`one-adapter`, and `all-experts`' combined expert)."""
    return lambda texts: [Route(expert=name, score=1.0) for _ in texts]


def random_router(names: Sequence[str], seed: int = 0) -> Router:
    """A seeded random expert per sub-query (`random-router`).

    The draw depends on the seed and the sub-query's text only, not on the order of calls, so
    questions answered concurrently are routed as they would be one at a time.
    """
    if not names:
        raise ValueError("random routing needs at least one expert")
    choices = list(names)
    return lambda texts: [
        Route(expert=random.Random(f"{seed}\n{text}").choice(choices)) for text in texts
    ]


def oracle_router(record: Mapping[str, Any], names: Sequence[str]) -> Router:
    """Each sub-query to the domain of the gold part it shares most words with.

    A gold domain without an expert goes to the base model.
    """
    parts = [(_words(p["question"]), p["domain"]) for p in record["parts"]]

    def route(texts: list[str]) -> list[Route]:
        routes = []
        for text in texts:
            words = _words(text)
            _, domain = max(parts, key=lambda part: len(part[0] & words) / (len(part[0]) or 1))
            routes.append(Route(expert=domain if domain in names else None, score=1.0))
        return routes

    return route


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def check_system(system: str) -> System:
    """`system` if it is one of `System`'s values.

    Raises:
        ValueError: an unknown system, naming the known ones.
    """
    if system not in get_args(System):
        raise ValueError(f"unknown system {system!r}; use one of {list(get_args(System))}")
    return system  # type: ignore[return-value]


def check_outputs_system(system: str, done: Mapping[str, Answer], outputs: Path | None) -> None:
    """Refuse to resume outputs that a renamed system wrote under the name `system` now has.

    `one-adapter` was called `all-experts`, a name that now means another system: resuming an
    old `all-experts` file with `--system all-experts` would mix the two systems' answers in one
    file. Their lines tell them apart, since each routes every sub-query to its one expert's
    name (`ALL_DOMAINS_EXPERT`, `ALL_EXPERTS`).

    Raises:
        BenchmarkError: `done` holds lines of `one-adapter` and `system` is `all-experts`, or
            the other way round.
    """
    own_route = {"one-adapter": ALL_DOMAINS_EXPERT, "all-experts": ALL_EXPERTS}
    for writer, route in own_route.items():
        if writer == system or system not in own_route:
            continue
        if any(route in (row.get("routes") or []) for row in done.values()):
            former = FORMER_NAMES.get(writer)
            called = f" (called {former!r} before that name meant another system)" if former else ""
            raise BenchmarkError(
                f"{outputs} holds answers of --system {writer}{called}: every sub-query went to "
                f"{route!r}; resume it with --system {writer}, or give --system {system} another "
                "--outputs file"
            )


def sub_answer_right(answer: Mapping[str, Any], record: Mapping[str, Any], index: int) -> bool:
    """Whether the `index`-th sub-answer answers the `index`-th gold part on its own."""
    subs = answer.get("sub_answers") or []
    return index < len(subs) and part_right(str(subs[index]["answer"]), record["parts"][index])


__all__ = [
    "ALL_DOMAINS_EXPERT",
    "ALL_EXPERTS",
    "FORMER_NAMES",
    "Answerer",
    "BenchmarkError",
    "System",
    "answered",
    "changed_ids",
    "check_outputs_system",
    "check_system",
    "graph_answerer",
    "graph_reply",
    "monolith_answerer",
    "one_expert_router",
    "oracle_router",
    "random_router",
    "read_benchmark",
    "run",
    "set_aside",
    "sub_answer_right",
    "summarise",
]
