"""Per-stage attribution: for every wrong question, the first stage of the pipeline that went wrong.

Stages, in pipeline order:

- `decomposition`: the number of sub-queries differs from the number of gold parts, or a gold
  dependency i -> j is missing (sub-query i is not an ancestor of j; outputs written before
  `edges` was recorded are not checked for it).
- `routing`: a sub-query went to another expert than its part's gold domain (sub-queries and
  parts are matched in order). The all-domains adapter (`one-adapter`) and the combined expert
  (`all-experts`, which asks every expert) are right for every domain. So is, in `attribution`,
  a route to an expert named after no domain of the benchmark: a gain-only candidate (the 1.5B
  model of a calibrated store) takes the parts of the domains it is measured ahead on, and the
  outputs record where a part went, not the domain the router placed it in, so its route
  cannot be judged; its wrong answers count at `expert`.
- `expert`: a sub-answer, read alone, does not answer its part, and no expert's own reply to
  it did (`all-experts` records each expert's reply in `expert_answers`).
- `combination`: (`all-experts` only) every wrong sub-answer had an expert whose own reply
  answered its part, but the combined reply (`all_experts.combine`) lost it.
- `aggregation`: every sub-answer was right, but the final answer lost one.

A system without sub-answers (`monolith`) has one stage, `model`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from compllm_graph.evaluation.answers import ALL_DOMAINS_EXPERT, ALL_EXPERTS, sub_answer_right
from compllm_graph.evaluation.scoring import part_right, score_question
from compllm_graph.query_graph import ancestors_of

STAGES = ("decomposition", "routing", "expert", "combination", "aggregation", "model")
ANY_DOMAIN = frozenset({ALL_DOMAINS_EXPERT, ALL_EXPERTS})
"""Routes right for every domain: one adapter trained on all of them, or every expert."""


def first_wrong_stage(
    record: Mapping[str, Any],
    answer: Mapping[str, Any],
    experts: frozenset[str] | None = None,
    domains: frozenset[str] | None = None,
) -> str | None:
    """The first stage that went wrong for one question; None when it is right.

    Args:
        record: The benchmark record.
        answer: Its line of the outputs file.
        experts: The experts the router could choose; a gold domain outside them counts as
            routed right when it went to the base model. None: every domain has an expert.
        domains: Every domain of the benchmark: a route to an expert outside them (and not the
            base model) is not judged (see the module docstring). None: every route is.
    """
    if score_question(str(answer["answer"]), record["parts"]).right:
        return None
    subs = answer.get("sub_answers") or []
    if not subs:
        return "model"
    parts = record["parts"]
    if len(subs) != len(parts) or _lost_dependency(record, answer):
        return "decomposition"
    routes = answer.get("routes") or [s.get("expert") for s in subs]
    for part, route in zip(parts, routes):
        gold = part["domain"] if experts is None or part["domain"] in experts else "base"
        unjudged = domains is not None and route not in domains | {"base"}
        if route != gold and route not in ANY_DOMAIN and not unjudged:
            return "routing"
    wrong = [i for i in range(len(parts)) if not sub_answer_right(answer, record, i)]
    if any(not _an_expert_was_right(subs[i], parts[i]) for i in wrong):
        return "expert"
    return "combination" if wrong else "aggregation"


def _an_expert_was_right(sub: Mapping[str, Any], part: Mapping[str, Any]) -> bool:
    """Whether an expert's own reply to a combined sub-answer answered its part."""
    replies = sub.get("expert_answers") or {}
    return any(part_right(str(reply), part) for reply in replies.values())


def _lost_dependency(record: Mapping[str, Any], answer: Mapping[str, Any]) -> bool:
    """A gold edge i -> j with i not an ancestor of j in the answer's `edges` (when recorded)."""
    if "edges" not in answer:
        return False
    parents: dict[int, set[int]] = {}
    for i, j in answer["edges"]:
        parents.setdefault(j, set()).add(i)
    return any(i not in ancestors_of(j, parents) for i, j in record["edges"])


def attribution(
    records: Sequence[Mapping[str, Any]],
    answers: Sequence[Mapping[str, Any]],
    experts: frozenset[str] | None = None,
) -> dict[str, int]:
    """How many questions were right, and how many went wrong first at each stage."""
    domains = frozenset(p["domain"] for r in records for p in r["parts"]) | (experts or set())
    counts = Counter(
        first_wrong_stage(r, a, experts, domains) or "right"
        for r, a in zip(records, answers, strict=True)
    )
    return {stage: counts.get(stage, 0) for stage in ("right", *STAGES) if stage in counts}


def attribution_table(rows: Mapping[str, Mapping[str, int]]) -> str:
    """A Markdown table: one row per run, one column per stage, counts and shares."""
    stages = [s for s in ("right", *STAGES) if any(s in row for row in rows.values())]
    lines = ["| run | n | " + " | ".join(stages) + " |", "|---" * (len(stages) + 2) + "|"]
    for name, row in rows.items():
        n = sum(row.values())
        cells = [f"{row.get(s, 0)} ({row.get(s, 0) / n:.0%})" if n else "0" for s in stages]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["STAGES", "attribution", "attribution_table", "first_wrong_stage"]
