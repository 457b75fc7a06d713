"""Aggregate: a reducer model answers the original query from the leaf sub-answers.

If the reducer fails, the answer is the leaf answers joined in order; a part that could not be
answered is named in the answer and in `fallback_reason`.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.query_graph import QueryGraph
from compllm_graph.state import CompLLMState, SubAnswer, leaf_answers, unanswered
from compllm_graph.types import message_text

# Asking to repeat the facts keeps a small reducer from answering only the first part: on six
# questions SmolLM2-135M answered 4 right with this wording, 1.5 with "answer the original
# question using the answers to its sub-questions".
AGGREGATE_PROMPT = """\
Here are answers to the parts of a question.
{answers}

Now answer the whole question in one or two sentences, repeating the facts above: {query}"""


def _leaves(state: CompLLMState) -> list[SubAnswer]:
    return leaf_answers(QueryGraph.from_dict(state["query_graph"]), state["sub_answers"])


def aggregate_prompt(state: CompLLMState, leaves: list[SubAnswer]) -> list[BaseMessage] | None:
    """The reducer's prompt, or None when there is nothing to combine: no part was answered, or
    the single sub-query is the query itself."""
    answered = [a for a in leaves if not unanswered(a)]
    single = len(state["sub_answers"]) == 1 and leaves[0]["question"] == state["query"]
    if not answered or single:
        return None
    answers = "\n".join(f"Sub-question: {a['question']}\nAnswer: {a['answer']}" for a in answered)
    return [HumanMessage(AGGREGATE_PROMPT.format(answers=answers, query=state["query"]))]


def joined_leaves(leaves: list[SubAnswer]) -> str:
    """The answered leaves in order: the answer when there is nothing to aggregate, or when the
    aggregator failed."""
    return " ".join(a["answer"] for a in leaves if not unanswered(a))


def make_aggregate_node(aggregator: Runnable) -> Runnable:
    """Build the node that writes the final answer (and appends it to `messages` for chat input)."""

    def finish(
        state: CompLLMState, leaves: list[SubAnswer], answer: str, failure: str | None = None
    ) -> dict:
        reasons = [r for r in (state.get("fallback_reason"), failure) if r]
        missing = [a for a in leaves if unanswered(a)]
        if missing:
            parts = "; ".join(f"[{a['sub_query']}] {a['question']}" for a in missing)
            answer = f"{answer} (Could not answer: {parts}.)".strip()
            reasons += [f"sub-query {a['sub_query']}: {a['fallback_reason']}" for a in missing]
        get_stream_writer()({"event": "answer", "answer": answer})
        update: dict = {"answer": answer, "fallback_reason": "; ".join(reasons) or None}
        messages = state.get("messages") or []
        if messages and isinstance(messages[-1], HumanMessage):
            update["messages"] = [AIMessage(answer)]
        return update

    def failed(state: CompLLMState, leaves: list[SubAnswer], exc: Exception) -> dict:
        reason = f"the aggregator raised {type(exc).__name__}: {exc}; the answer joins the parts"
        return finish(state, leaves, joined_leaves(leaves), reason)

    def aggregate(state: CompLLMState) -> dict:
        leaves = _leaves(state)
        prompt = aggregate_prompt(state, leaves)
        if prompt is None:
            return finish(state, leaves, joined_leaves(leaves))
        try:
            text = message_text(aggregator.invoke(prompt))
        except Exception as exc:  # the parts are answered: never lose them to the reducer
            return failed(state, leaves, exc)
        return finish(state, leaves, text)

    async def aaggregate(state: CompLLMState) -> dict:
        leaves = _leaves(state)
        prompt = aggregate_prompt(state, leaves)
        if prompt is None:
            return finish(state, leaves, joined_leaves(leaves))
        try:
            text = message_text(await aggregator.ainvoke(prompt))
        except Exception as exc:  # the parts are answered: never lose them to the reducer
            return failed(state, leaves, exc)
        return finish(state, leaves, text)

    return RunnableLambda(aggregate, afunc=aaggregate, name="aggregate")
