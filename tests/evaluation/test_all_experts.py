"""`all-experts`: every expert asked each sub-query, and the rule that combines their replies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

from compllm_graph.datasets.items import lettered
from compllm_graph.evaluation.all_experts import (
    JUDGE_PROMPT,
    AllExperts,
    AllExpertsFailed,
    all_experts_answerer,
    combine,
    options_in,
    own_question,
)
from compllm_graph.evaluation.answers import ALL_EXPERTS, one_expert_router
from compllm_graph.graph import create_compllm_graph
from tests.fakes import FakeChat, decomposer

GAS = lettered("Which gas is inert?", ["Neon", "Oxygen", "Nitrogen"])


def test_the_options_are_read_as_the_benchmark_lists_them() -> None:
    assert options_in(GAS) == ["Neon", "Oxygen", "Nitrogen"]
    long = lettered("Why?", ["It is exothermic.", "Entropy rises, by 4.5 J/K."])
    assert options_in(long) == ["It is exothermic.", "Entropy rises, by 4.5 J/K."]
    assert options_in("What is 6 times 7?") is None
    assert options_in("Options: (B) out of order; (A) first.") is None
    context = f"Answers to earlier questions:\nQ: {GAS}\nA: Neon\n\nQuestion: What is 6 times 7?"
    assert own_question(context) == "What is 6 times 7?"  # not the parent's options
    assert options_in(own_question(context)) is None


def test_the_majority_answer_wins_whole_whatever_its_form() -> None:
    replies = {
        "biology": "Oxygen, I think. The answer is (B) Oxygen.",
        "chemistry": "Noble gases do not react. The answer is (A) Neon.",
        "medicine": "Neon.",  # the option's text is its letter
        "mathematics": "I do not know.",  # no vote
    }
    combined = combine(replies, GAS)
    assert combined.rule == "majority"
    assert combined.text == replies["chemistry"]  # the first of the majority, whole
    assert combined.keys == {"biology": "(B)", "chemistry": "(A)", "medicine": "(A)",
                             "mathematics": None}  # fmt: skip
    assert combined.metadata() == {"combined": "majority", "expert_answers": replies}


@pytest.mark.parametrize(
    ("replies", "question"),
    [
        ({"chemistry": "The answer is (A) Neon.", "biology": "The answer is (B)."}, GAS),
        ({"a": "The answer is 42.", "b": "The answer is 41.", "c": "41", "d": "It is 42."}, "6x7?"),
        ({"a": "I do not know.", "b": "Hard to say."}, "6 x 7?"),
    ],
)
def test_a_tie_or_no_readable_answer_labels_every_reply(
    replies: dict[str, str], question: str
) -> None:
    combined = combine(replies, question)
    assert combined.rule == "labelled"
    assert combined.text == "\n\n".join(f"{name}: {reply}" for name, reply in replies.items())


def test_numbers_and_labels_vote_as_the_scorer_reads_them() -> None:
    replies = {
        "a": "The answer is 1,200.",
        "b": "She earns 1200.0 dollars.",
        "c": "The answer is 12.",
    }
    assert combine(replies, "How much?").text == replies["a"]
    labels = {"a": "No, it is not.", "b": "Yes.", "c": "The answer is yes."}
    assert combine(labels, "Is it one of the six?").text == "Yes."
    with pytest.raises(ValueError, match="no expert replied"):
        combine({}, "How much?")


def expert(name: str, answers: dict[str, str], **options: Any) -> FakeChat:
    """An expert that answers the sub-queries it knows (by a word in them), else not."""

    def reply(messages: list[BaseMessage]) -> str:
        text = str(messages[-1].content)
        return next((a for k, a in answers.items() if k in text), "I do not know.")

    return FakeChat(label=name, reply=reply, **options)


def test_every_expert_is_asked_once_sync_and_async() -> None:
    experts = {
        "chemistry": expert("chemistry", {"gas": "The answer is (A) Neon."}, delay=0.05),
        "biology": expert("biology", {"gas": "Neon"}, delay=0.05),
        "mathematics": expert("mathematics", {}, delay=0.05),
    }
    combined = AllExperts(experts)
    reply = combined.invoke([HumanMessage(GAS)])
    assert reply.content == "The answer is (A) Neon."
    assert asyncio.run(combined.ainvoke(GAS)).content == "The answer is (A) Neon."
    assert all(chat.calls == [GAS, GAS] for chat in experts.values())
    # asked concurrently: every expert starts before any could have finished
    starts = sorted(chat.starts[0] for chat in experts.values())
    assert starts[-1] - starts[0] < 0.05
    assert [call.prompt for call in combined.asked] == [GAS, GAS]


def test_a_failed_expert_has_no_vote_and_all_failing_raises() -> None:
    experts = {
        "chemistry": expert("chemistry", {"gas": "The answer is (B) Oxygen."}, fail_times=1),
        "biology": expert("biology", {"gas": "The answer is (A) Neon."}),
        "silent": expert("silent", {"gas": ""}),
    }
    combined = AllExperts(experts)
    assert combined.invoke(GAS).content == "The answer is (A) Neon."
    metadata = combined.asked[0].combination.metadata()
    assert metadata["expert_answers"] == {"biology": "The answer is (A) Neon."}
    assert metadata["expert_errors"] == {
        "chemistry": "RuntimeError: chemistry is down",
        "silent": "replied with no text",
    }
    down = {"a": FakeChat(label="a", fail_times=9), "b": FakeChat(label="b", fail_times=9)}
    with pytest.raises(AllExpertsFailed, match=r"every expert failed \(a: RuntimeError: a is down"):
        AllExperts(down).invoke(GAS)
    with pytest.raises(ValueError, match="at least one expert"):
        AllExperts({})


def pipeline(experts: dict[str, FakeChat], output: str) -> Callable[[AllExperts], Any]:
    def graph_for(combined: AllExperts) -> Any:
        return create_compllm_graph(
            decomposer=decomposer(output),
            experts={ALL_EXPERTS: combined},
            router=one_expert_router(ALL_EXPERTS),
            base=FakeChat(label="base", reply=lambda _: "base answer"),
            aggregator=FakeChat(label="aggregator", reply=lambda _: "Neon, then 42."),
        ).compile()

    return graph_for


def test_the_pipeline_asks_every_expert_each_sub_query_and_records_their_replies() -> None:
    experts = {
        "chemistry": expert("chemistry", {"gas": "The answer is (A) Neon."}),
        "mathematics": expert("mathematics", {"times": "The answer is 42."}),
    }
    # the second sub-query depends on the first: its prompt carries the first's answer
    output = f"<q>{GAS}</q><q>What is 6 times 7, after #1?</q><dep>1->2</dep>"
    answer = all_experts_answerer(pipeline(experts, output), experts)
    record = {"id": "q", "question": f"{GAS} Then, what is 6 times 7?"}
    reply = answer(record)
    assert all(len(chat.calls) == 2 for chat in experts.values())  # once per sub-query each
    assert reply["routes"] == [ALL_EXPERTS, ALL_EXPERTS] and reply["edges"] == [[1, 2]]
    first, second = reply["sub_answers"]
    assert first["answer"] == "The answer is (A) Neon." and first["combined"] == "majority"
    assert first["expert_answers"] == {
        "chemistry": "The answer is (A) Neon.",
        "mathematics": "I do not know.",
    }
    assert second["expert_answers"]["mathematics"] == "The answer is 42."
    assert "Answers to earlier questions" in experts["mathematics"].calls[1]
    # each record gets its own log: a second record's lines hold its own replies only
    again = answer(record)
    assert [s["expert_answers"] for s in again["sub_answers"]] == [
        first["expert_answers"],
        second["expert_answers"],
    ]


def test_a_sub_query_the_base_model_answered_has_no_expert_replies() -> None:
    down = {"a": FakeChat(label="a", fail_times=99), "b": FakeChat(label="b", fail_times=99)}
    reply = all_experts_answerer(pipeline(down, f"<q>{GAS}</q>"), down)({"question": GAS})
    (sub,) = reply["sub_answers"]
    assert sub["expert"] == "base" and sub["answer"] == "base answer"
    assert "expert_answers" not in sub
    assert reply["routes"] == [ALL_EXPERTS]  # routed there; the base model answered instead
    state = pipeline(down, f"<q>{GAS}</q>")(AllExperts(down)).invoke({"query": GAS})
    assert (
        "every expert failed (a: RuntimeError: a is down" in state["routes"][0]["fallback_reason"]
    )
    with pytest.raises(ValueError, match="at least one expert"):
        all_experts_answerer(pipeline({}, ""), {})


TIED = {
    "chemistry": expert("chemistry", {"gas": "The answer is (A) Neon."}),
    "biology": expert("biology", {"gas": "The answer is (B) Oxygen."}),
}


def test_a_judge_breaks_a_tie_with_one_answer_having_read_every_reply() -> None:
    judge = FakeChat(label="judge", reply=lambda _: "Neon is inert. The answer is (A) Neon.")
    combined = AllExperts(TIED, judge)
    assert combined.invoke(GAS).content == "Neon is inert. The answer is (A) Neon."
    (asked,) = judge.calls
    assert GAS in asked and JUDGE_PROMPT.split("{")[0] in asked
    # every reply, unnamed: a small judge answers "biology" when they carry names
    assert "- The answer is (A) Neon.\n\n- The answer is (B) Oxygen." in asked
    assert "chemistry" not in asked and "biology" not in asked
    metadata = combined.asked[0].combination.metadata()
    assert metadata["combined"] == "judged" and "judge_error" not in metadata
    assert metadata["expert_answers"] == {
        "chemistry": "The answer is (A) Neon.",
        "biology": "The answer is (B) Oxygen.",
    }
    # a majority needs no judge
    agreeing = {**TIED, "medicine": expert("medicine", {"gas": "Neon."})}
    assert AllExperts(agreeing, judge).invoke(GAS).content == "The answer is (A) Neon."
    assert len(judge.calls) == 1


@pytest.mark.parametrize(
    ("judge", "why"),
    [
        (FakeChat(label="judge", fail_times=9), "RuntimeError: judge is down"),
        (FakeChat(label="judge", reply=lambda _: ""), "replied with no text"),
    ],
)
def test_a_failed_judge_leaves_the_tie_labelled_and_says_why(judge: FakeChat, why: str) -> None:
    combined = AllExperts(TIED, judge)
    text = combined.invoke(GAS).content
    assert text == "chemistry: The answer is (A) Neon.\n\nbiology: The answer is (B) Oxygen."
    metadata = combined.asked[0].combination.metadata()
    assert metadata["combined"] == "labelled" and metadata["judge_error"] == why


def test_the_judge_sees_a_dependent_sub_query_with_its_parents_answers() -> None:
    experts = {
        "a": expert("a", {"times": "The answer is 42."}),
        "b": expert("b", {"times": "The answer is 41."}),
    }
    judge = FakeChat(label="judge", reply=lambda _: "The answer is 42.")
    output = f"<q>{GAS}</q><q>What is 6 times 7, after #1?</q><dep>1->2</dep>"
    answer = all_experts_answerer(pipeline(experts, output), experts, judge)
    reply = answer({"id": "q", "question": f"{GAS} Then, what is 6 times 7?"})
    first, second = reply["sub_answers"]
    assert second["combined"] == "judged" and second["answer"] == "The answer is 42."
    assert first["combined"] == "judged"  # neither expert knew the gas: the judge answered
    assert "Answers to earlier questions" in judge.calls[-1]
    assert "- The answer is 42." in judge.calls[-1]
