"""The single-domain table: each expert alone on its domain's held-out items, against the base.

Both are asked the same way, with the expert's system prompt; only the adapter differs, so the
difference is what training bought.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import Runnable

from compllm_graph.evaluation.answers import run
from compllm_graph.evaluation.scoring import score_question
from compllm_graph.evaluation.stats import bootstrap_interval, paired_difference
from compllm_graph.evaluation.systems import load_for_eval, store_for_eval
from compllm_graph.expert_store.serving import with_system_prompt
from compllm_graph.types import message_text

Progress = Callable[[Iterable[Any], int], Iterable[Any]]


def run_experts(
    args: argparse.Namespace,
    files: Mapping[Path, Sequence[Mapping[str, Any]]],
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """One row per single-domain file: base and expert accuracy, and their paired difference.

    Raises:
        ValueError: a file mixes domains, or its domain has no expert in the store.
    """
    model = load_for_eval(args)
    store = store_for_eval(args, model)
    experts = {e.name: e for e in store.experts()}
    chats = store.chat_models(model, max_new_tokens=args.max_new_tokens)
    rows = []
    for path, records in files.items():
        domain = _domain(path, records)
        if domain not in experts:
            raise ValueError(f"{path}: no expert for {domain!r} in the store ({sorted(experts)})")
        base = with_system_prompt(
            model.chat_model(max_new_tokens=args.max_new_tokens), experts[domain].system_prompt
        )
        scores = {}
        for who, chat in (("base", base), ("expert", chats[domain])):
            outputs = args.outputs / f"{path.stem}.{who}.jsonl" if args.outputs else None
            if outputs is not None:
                outputs.parent.mkdir(parents=True, exist_ok=True)
            answers = run(records, _asker(chat), outputs, progress)
            scores[who] = [
                score_question(str(a["answer"]), r["parts"]).right for r, a in zip(records, answers)
            ]
        rows.append(expert_row(domain, scores["base"], scores["expert"]))
    return rows


def _domain(path: Path, records: Sequence[Mapping[str, Any]]) -> str:
    domains = {p["domain"] for r in records for p in r["parts"]}
    if len(domains) != 1:
        raise ValueError(f"{path}: a single-domain file needs one domain, got {sorted(domains)}")
    return domains.pop()


def _asker(chat: Runnable) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def ask(record: Mapping[str, Any]) -> dict[str, Any]:
        text = message_text(chat.invoke([HumanMessage(record["question"])]))
        return {"answer": text, "sub_answers": [], "routes": []}

    return ask


def expert_row(domain: str, base: list[bool], expert: list[bool]) -> dict[str, Any]:
    """One domain's row: base and expert accuracy on the same questions, and their difference."""
    n = len(base)
    return {
        "domain": domain,
        "n": n,
        "base": round(sum(base) / n, 4) if n else 0.0,
        "base_ci95": bootstrap_interval(base),
        "expert": round(sum(expert) / n, 4) if n else 0.0,
        "expert_ci95": bootstrap_interval(expert),
        "difference": paired_difference(expert, base),
    }


def expert_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table (accuracies with 95 % intervals; `*`: a real difference)."""
    lines = [
        "| domain | n | base | expert | expert - base |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        diff = row["difference"]
        mark = " *" if diff["significant"] else ""
        lines.append(
            f"| {row['domain']} | {row['n']} | {_cell(row['base'], row['base_ci95'])} | "
            f"{_cell(row['expert'], row['expert_ci95'])} | "
            f"{diff['difference']:+.1%} [{diff['ci95'][0]:+.1%}, {diff['ci95'][1]:+.1%}]{mark} |"
        )
    return "\n".join(lines)


def _cell(value: float, interval: Sequence[float]) -> str:
    return f"{value:.1%} [{interval[0]:.1%}, {interval[1]:.1%}]"


__all__ = ["expert_row", "expert_table", "run_experts"]
