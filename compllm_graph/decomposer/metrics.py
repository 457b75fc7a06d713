"""Decomposition F1: how close a predicted query graph is to the gold one.

Predicted sub-queries are matched one-to-one to gold sub-queries by the Hungarian algorithm on
token F1. Sub-query F1 is the harmonic mean of (matched F1 / predicted count) and (matched F1 /
gold count); edge F1 compares the dependency edges after renaming predicted ids to their matched
gold ids. An output that does not parse scores zero everywhere.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from compllm_graph.query_graph import (
    DecompositionError,
    QueryGraph,
    parse_decomposition,
    sub_query_char_limit,
)

_TOKEN = re.compile(r"#\d+|\w+")


@dataclass(frozen=True)
class ExampleScore:
    """Scores of one prediction against its gold graph."""

    subquery_f1: float
    edge_f1: float
    count_correct: bool
    parsed: bool


@dataclass(frozen=True)
class DecompositionReport:
    """Mean scores over a set of examples (unparseable outputs count as zero)."""

    subquery_f1: float
    edge_f1: float
    count_accuracy: float
    parse_rate: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


UNPARSED = ExampleScore(0.0, 0.0, False, False)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens; `#k` references are tokens of their own."""
    return _TOKEN.findall(text.lower())


def token_f1(predicted: str, gold: str) -> float:
    """SQuAD-style token F1 between two strings (1.0 when both have no tokens)."""
    pred_tokens, gold_tokens = tokens(predicted), tokens(gold)
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _harmonic(matched: float, predicted: int, gold: int) -> float:
    if predicted == 0 and gold == 0:
        return 1.0
    if matched == 0:
        return 0.0
    precision, recall = matched / predicted, matched / gold
    return 2 * precision * recall / (precision + recall)


def score_graph(predicted: QueryGraph, gold: QueryGraph) -> ExampleScore:
    """Score a parsed prediction against the gold graph."""
    similarity = np.array(
        [[token_f1(p.text, g.text) for g in gold.sub_queries] for p in predicted.sub_queries]
    )
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    matched = float(similarity[rows, cols].sum())
    # Only pairs that share a token count as the same sub-query when renaming edges.
    rename = {
        predicted.sub_queries[r].id: gold.sub_queries[c].id
        for r, c in zip(rows, cols)
        if similarity[r, c] > 0
    }
    predicted_edges = {(rename.get(p, -p), rename.get(c, -c)) for p, c in predicted.edges}
    gold_edges = set(gold.edges)
    return ExampleScore(
        subquery_f1=_harmonic(matched, len(predicted), len(gold)),
        edge_f1=_harmonic(
            float(len(predicted_edges & gold_edges)), len(predicted_edges), len(gold_edges)
        ),
        count_correct=len(predicted) == len(gold),
        parsed=True,
    )


def score_text(output: str, gold: QueryGraph, question: str = "") -> ExampleScore:
    """Parse a decomposer's raw output and score it; unparseable output scores zero.

    `question` (the decomposed text) sets how long a sub-query may be, as in the pipeline.
    """
    try:
        predicted = parse_decomposition(output, max_chars=sub_query_char_limit(question))
    except DecompositionError:
        return UNPARSED
    return score_graph(predicted, gold)


def aggregate(scores: Iterable[ExampleScore]) -> DecompositionReport:
    """Average per-example scores.

    Raises:
        ValueError: no scores.
    """
    scores = list(scores)
    if not scores:
        raise ValueError("no examples to score")
    n = len(scores)
    return DecompositionReport(
        subquery_f1=sum(s.subquery_f1 for s in scores) / n,
        edge_f1=sum(s.edge_f1 for s in scores) / n,
        count_accuracy=sum(s.count_correct for s in scores) / n,
        parse_rate=sum(s.parsed for s in scores) / n,
        n=n,
    )
