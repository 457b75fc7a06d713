"""Set aside the answers a pipeline cell gave to whole questions after refusing a decomposition.

Until a sub-query's length limit grew with its query (`query_graph.sub_query_char_limit`), a
decomposition with a part over 500 characters (a multiple-choice part with long options, a
clinical vignette) was refused, and the pipeline answered the whole question in one call. This
moves such answers (a question of several parts answered through a single sub-query that is the
question itself) to `NAME.whole.jsonl` beside the cell; `python -m benchmarks.answer_tables
--cells ...` then answers those questions again. Decoding is greedy, so a question the
decomposer itself left whole gets the answer it had.

Usage: `python -m benchmarks.redo_whole [--dry-run] [OUTPUTS.jsonl ...]` (default: every
decomposing cell under `benchmarks/answers/outputs/`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compllm_graph.evaluation.answers import answered, read_benchmark, set_aside

from .answer_tables import CELLS, DATA
from .reaggregate import AGGREGATING


def answered_whole(record: Mapping[str, Any], answer: Mapping[str, Any]) -> bool:
    """Whether a question of several parts was answered through one sub-query, itself."""
    subs = answer.get("sub_answers") or []
    return (
        len(record["parts"]) > 1
        and len(subs) == 1
        and str(subs[0].get("question", "")).strip() == str(record["question"]).strip()
    )


def whole_ids(outputs: Path) -> list[str]:
    """The ids `outputs` answered whole (`answered_whole`)."""
    records = {r["id"]: r for r in read_benchmark(DATA / f"{outputs.name.split('.')[-2]}.jsonl")}
    return [
        qid
        for qid, answer in answered(outputs).items()
        if qid in records and answered_whole(records[qid], answer)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", nargs="*", type=Path, help="outputs files (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="only count them")
    args = parser.parse_args(argv)
    files = args.outputs or sorted(
        c.outputs for c in CELLS.values() if c.system in AGGREGATING and c.outputs.exists()
    )
    for outputs in files:
        ids = whole_ids(outputs)
        if ids and not args.dry_run:
            set_aside(outputs, set(ids), why="whole")
        print(f"{outputs.parent.name}/{outputs.stem}: {len(ids)} answered whole")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
