"""Consensus (minimum-Bayes-risk) selection among candidate decompositions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from compllm_graph.training.consensus import (
    ConsensusConfig,
    consensus_decomposer,
    select_consensus,
)

# The top candidate phrases hop 2 its own way; the next two agree with each other.
ODD = "<q>Who directed Titanic?</q><q>Whom did #1 marry?</q><dep>1->2</dep>"
NEAR = "<q>Who directed Titanic?</q><q>Who is the spouse of #1?</q><dep>1->2</dep>"
NEARER = "<q>Who is the director of Titanic?</q><q>Who is the spouse of #1?</q><dep>1->2</dep>"
EQUAL = ConsensusConfig(temperature=None)


def test_the_candidate_the_others_agree_with_wins_over_the_top_one() -> None:
    assert select_consensus([ODD, NEAR, NEARER], config=EQUAL) == 1


def test_a_confident_model_keeps_its_top_candidate() -> None:
    scores = [-0.1, -0.9, -1.0]
    assert select_consensus([ODD, NEAR, NEARER], scores, ConsensusConfig(temperature=0.05)) == 0
    # Softer weights let the agreement win again.
    assert select_consensus([ODD, NEAR, NEARER], scores, ConsensusConfig(temperature=5)) == 1


def test_edges_count_when_asked() -> None:
    unlinked = "<q>How long is the Nile?</q><q>How long is the Amazon?</q><dep></dep>"
    linked = unlinked.replace("<dep></dep>", "<dep>1->2</dep>")
    reworded = linked.replace("How long is the Amazon?", "What is the length of the Amazon?")
    # The texts alone tie the first two (the earlier wins); the edge 1->2 is what the others share.
    candidates = [unlinked, linked, reworded]
    assert select_consensus(candidates, config=ConsensusConfig(None, edge_weight=0)) == 0
    assert select_consensus(candidates, config=ConsensusConfig(None, edge_weight=1)) == 1


def test_unparseable_candidates_are_passed_over() -> None:
    assert select_consensus(["no tags at all", NEAR, "<q>cycle #2</q><q>#1</q>"]) == 1
    assert select_consensus(["garbage", "more garbage"]) == 0  # the caller's fallback applies


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: select_consensus([]), "at least one candidate"),
        (lambda: select_consensus([NEAR, ODD], [0.0]), "got 1 scores for 2 candidates"),
        (lambda: ConsensusConfig(temperature=0), "temperature must be > 0"),
        (lambda: ConsensusConfig(edge_weight=-1), "edge_weight must be >= 0"),
    ],
)
def test_bad_calls_say_what_to_fix(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


class Candidates(BaseChatModel):
    """Returns fixed candidates as several generations, optionally scored; records prompts."""

    texts: list[str]
    scores: list[float] | None = None
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "candidates"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **_: Any
    ) -> ChatResult:
        self.prompts.append(messages)
        infos = [{"score": s} for s in self.scores] if self.scores else [{}] * len(self.texts)
        return ChatResult(
            generations=[
                ChatGeneration(message=AIMessage(t), generation_info=info)
                for t, info in zip(self.texts, infos, strict=True)
            ]
        )


def test_the_decomposer_replies_with_the_consensus_and_keeps_the_candidates() -> None:
    model = Candidates(texts=[ODD, NEAR, NEARER])
    decomposer = consensus_decomposer(model, EQUAL)
    prompt = [SystemMessage("decompose"), HumanMessage("Who is the spouse of the director?")]
    reply = decomposer.invoke(prompt)
    assert reply.content == NEAR
    assert reply.response_metadata["candidates"] == [ODD, NEAR, NEARER]
    assert reply.response_metadata["chosen"] == 1
    assert model.prompts == [prompt]
    assert asyncio.run(decomposer.ainvoke("a plain string")).content == NEAR
    assert model.prompts[-1] == [HumanMessage("a plain string")]


def test_scores_from_the_model_weigh_the_choice() -> None:
    confident = Candidates(texts=[ODD, NEAR, NEARER], scores=[-0.1, -2.0, -2.0])
    assert consensus_decomposer(confident, ConsensusConfig(0.1)).invoke("q").content == ODD
    assert consensus_decomposer(confident, EQUAL).invoke("q").content == NEAR
