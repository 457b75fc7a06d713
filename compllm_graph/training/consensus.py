"""Consensus decoding: of several candidate decompositions, keep the one the others agree with.

Minimum-Bayes-risk selection with decomposition F1 as the utility: each parseable candidate is
scored by its expected F1 against the candidates themselves, weighted by the model's own
probabilities, and the highest wins. Gold sub-queries are phrased one of several ways, so the
candidate nearest the others is a safer bet than the single most probable one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from compllm_graph.query_graph import DecompositionError, QueryGraph, parse_decomposition
from compllm_graph.training.metrics import score_graph


@dataclass(frozen=True)
class ConsensusConfig:
    """How candidates are weighed.

    Attributes:
        temperature: Softens the candidates' log-probability scores into weights; None weighs
            every candidate alike (also what candidates without scores get).
        edge_weight: How much dependency-edge F1 counts next to sub-query F1 in the utility.
    """

    temperature: float | None = 0.5
    edge_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 (or None for equal weights), got {self.temperature}"
            )
        if self.edge_weight < 0:
            raise ValueError(f"edge_weight must be >= 0, got {self.edge_weight}")


def select_consensus(
    candidates: Sequence[str],
    scores: Sequence[float] | None = None,
    config: ConsensusConfig | None = None,
) -> int:
    """The index of the candidate with the highest expected F1 against the others.

    Args:
        candidates: Raw decomposer outputs, best first (ties go to the earlier one).
        scores: Their log-probability scores (e.g. beam-search sequence scores); None for none.
        config: Weighting; `ConsensusConfig()` by default.

    Returns:
        An index into `candidates`; 0 when none of them parses, so the caller's own fallback
        for an unparseable decomposition applies.

    Raises:
        ValueError: no candidates, or `scores` of another length.
    """
    if not candidates:
        raise ValueError("select_consensus needs at least one candidate")
    if scores is not None and len(scores) != len(candidates):
        raise ValueError(f"got {len(scores)} scores for {len(candidates)} candidates")
    config = config or ConsensusConfig()
    graphs = {i: g for i, g in enumerate(map(_parse, candidates)) if g is not None}
    if not graphs:
        return 0
    weights = _weights({i: scores[i] for i in graphs} if scores else None, config.temperature)
    best, best_utility = 0, -math.inf
    for i, graph in graphs.items():
        utility = sum(
            weights.get(j, 1.0) * _utility(graph, other, config.edge_weight)
            for j, other in graphs.items()
        )
        if utility > best_utility + 1e-12:
            best, best_utility = i, utility
    return best


def _parse(text: str) -> QueryGraph | None:
    try:
        return parse_decomposition(text)
    except DecompositionError:
        return None


def _weights(scores: dict[int, float] | None, temperature: float | None) -> dict[int, float]:
    if scores is None or temperature is None:
        return {}
    top = max(scores.values())
    return {i: math.exp((s - top) / temperature) for i, s in scores.items()}


def _utility(candidate: QueryGraph, other: QueryGraph, edge_weight: float) -> float:
    score = score_graph(candidate, other)
    return score.subquery_f1 + edge_weight * score.edge_f1


def consensus_decomposer(
    decomposer: BaseChatModel, consensus: ConsensusConfig | None = None
) -> Runnable[Any, AIMessage]:
    """A decomposer that answers with the consensus of another chat model's candidates.

    Drop it in wherever a decomposer goes (`create_compllm_graph(decomposer=...)`). The wrapped
    model must return several generations per call: a `LocalChatModel` with `num_beams > 1`
    (scored beams) or, e.g., `ChatOpenAI(n=8, temperature=0.7)` (unscored samples, weighed
    alike); with one generation this is the model itself. The reply's `response_metadata`
    keeps every candidate (`candidates`) and the index of the chosen one (`chosen`).

    Args:
        decomposer: The chat model that proposes candidates.
        consensus: How candidates are weighed; `ConsensusConfig()` by default.

    Returns:
        A Runnable from chat messages (or a string) to the chosen `AIMessage`.
    """
    weighing = consensus or ConsensusConfig()

    # RunnableLambda hands over the run's config (child callbacks) to a parameter named config.
    def choose(prompt: Any, config: RunnableConfig) -> AIMessage:
        result = decomposer.generate([_messages(prompt)], callbacks=config.get("callbacks"))
        return _chosen(result.generations[0], weighing)

    async def achoose(prompt: Any, config: RunnableConfig) -> AIMessage:
        result = await decomposer.agenerate([_messages(prompt)], callbacks=config.get("callbacks"))
        return _chosen(result.generations[0], weighing)

    return RunnableLambda(choose, afunc=achoose, name="consensus_decomposer")


def _messages(prompt: Any) -> list[BaseMessage]:
    return [HumanMessage(prompt)] if isinstance(prompt, str) else convert_to_messages(prompt)


def _chosen(generations: Sequence[Any], config: ConsensusConfig) -> AIMessage:
    texts = [g.text for g in generations]
    scores = [(g.generation_info or {}).get("score") for g in generations]
    known = [float(s) for s in scores if s is not None]
    chosen = select_consensus(texts, known if len(known) == len(texts) else None, config)
    top = generations[0].message
    return AIMessage(
        content=texts[chosen],
        response_metadata={**top.response_metadata, "candidates": texts, "chosen": chosen},
        usage_metadata=top.usage_metadata,
    )
