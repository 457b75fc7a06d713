"""Aggregate: a reducer model answers the original query from the leaf sub-answers."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.query_graph import QueryGraph
from compllm_graph.state import CompLLMState, leaf_answers
from compllm_graph.types import message_text

# Asking to repeat the facts keeps a small reducer from answering only the first part: on six
# questions SmolLM2-135M answered 4 right with this wording, 1.5 with "answer the original
# question using the answers to its sub-questions".
AGGREGATE_PROMPT = """\
Here are answers to the parts of a question.
{answers}

Now answer the whole question in one or two sentences, repeating the facts above: {query}"""


def aggregate_prompt(state: CompLLMState) -> list[BaseMessage] | None:
    """The reducer's prompt, or None when the single sub-query is the query itself."""
    query_graph = QueryGraph.from_dict(state["query_graph"])
    leaves = leaf_answers(query_graph, state["sub_answers"])
    if len(query_graph) == 1 and leaves[0]["question"] == state["query"]:
        return None  # nothing to combine: the answer is already the answer to the query
    answers = "\n".join(f"Sub-question: {a['question']}\nAnswer: {a['answer']}" for a in leaves)
    return [HumanMessage(AGGREGATE_PROMPT.format(answers=answers, query=state["query"]))]


def make_aggregate_node(aggregator: Runnable) -> Runnable:
    """Build the node that writes the final answer (and appends it to `messages` for chat input)."""

    def finish(state: CompLLMState, answer: str) -> dict:
        get_stream_writer()({"event": "answer", "answer": answer})
        update: dict = {"answer": answer}
        messages = state.get("messages") or []
        if messages and isinstance(messages[-1], HumanMessage):
            update["messages"] = [AIMessage(answer)]
        return update

    def aggregate(state: CompLLMState) -> dict:
        prompt = aggregate_prompt(state)
        if prompt is None:
            return finish(state, state["sub_answers"][0]["answer"])
        return finish(state, message_text(aggregator.invoke(prompt)))

    async def aaggregate(state: CompLLMState) -> dict:
        prompt = aggregate_prompt(state)
        if prompt is None:
            return finish(state, state["sub_answers"][0]["answer"])
        return finish(state, message_text(await aggregator.ainvoke(prompt)))

    return RunnableLambda(aggregate, afunc=aaggregate, name="aggregate")
