"""Set aside the answers a pipeline cell gave before a change to the pipeline that alters them.

Each rule picks the answers the change would alter; they move to `NAME.{rule}.jsonl` beside the
cell (appended, so nothing is lost), and `python -m benchmarks.answer_tables --cells ...` then
answers those questions again. Decoding is greedy, so a question the change does not touch gets
the answer it had.

- `whole`: until a sub-query's length limit grew with its query
  (`query_graph.sub_query_char_limit`), a decomposition with a part over 500 characters (a
  multiple-choice part with long options, a clinical vignette) was refused and the pipeline
  answered the whole question in one call: a question of several parts answered through a
  single sub-query that is the question itself.
- `terse-step`: until the route node routed a dependent step that its own text sends to the base
  model once more on its ancestors' texts (`nodes.route.route_query_graph`), such a step was
  answered by the base model: an answer whose decomposition has a sub-query with parents
  routed to base. Only the `compllm` system routes by text; the baselines never route to base.

Usage: `python -m benchmarks.redo RULE [--dry-run] [OUTPUTS.jsonl ...]` (default: every cell
the rule applies to under `benchmarks/answers/outputs/`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compllm_graph.evaluation.answers import answered, set_aside
from compllm_graph.types import BASE

from .answer_tables import CELLS, benchmark_records
from .reaggregate import AGGREGATING


def answered_whole(record: Mapping[str, Any], answer: Mapping[str, Any]) -> bool:
    """Whether a question of several parts was answered through one sub-query, itself."""
    subs = answer.get("sub_answers") or []
    return (
        len(record["parts"]) > 1
        and len(subs) == 1
        and str(subs[0].get("question", "")).strip() == str(record["question"]).strip()
    )


def routed_terse_step(record: Mapping[str, Any], answer: Mapping[str, Any]) -> bool:
    """Whether a sub-query with parents in the answer's decomposition went to the base model."""
    children = {int(child) for _, child in answer.get("edges") or []}
    return any(
        route == BASE and i in children for i, route in enumerate(answer.get("routes") or [], 1)
    )


RULES: dict[str, tuple[Callable[[Mapping[str, Any], Mapping[str, Any]], bool], tuple[str, ...]]]
RULES = {"whole": (answered_whole, AGGREGATING), "terse-step": (routed_terse_step, ("compllm",))}
"""Each rule: which answers it sets aside, and the systems whose cells it applies to."""


def redo_ids(outputs: Path, rule: str) -> list[str]:
    """The ids in `outputs` that `rule` sets aside."""
    picks, _ = RULES[rule]
    records = benchmark_records(outputs)
    return [
        qid
        for qid, answer in answered(outputs).items()
        if qid in records and picks(records[qid], answer)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rule", choices=sorted(RULES), help="which answers to set aside")
    parser.add_argument("outputs", nargs="*", type=Path, help="outputs files (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="only count them")
    args = parser.parse_args(argv)
    systems = RULES[args.rule][1]
    files = args.outputs or sorted(
        c.outputs for c in CELLS.values() if c.system in systems and c.outputs.exists()
    )
    for outputs in files:
        ids = redo_ids(outputs, args.rule)
        if ids and not args.dry_run:
            set_aside(outputs, set(ids), why=args.rule)
        print(f"{outputs.parent.name}/{outputs.stem}: {len(ids)} set aside ({args.rule})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
