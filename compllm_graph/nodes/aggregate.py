"""Aggregate: a reducer model answers the original query from the sub-answers.

The reducer reads every part's answer, not only the leaves': a question of dependent parts
asks for the earlier answers too (the GSM8K step, the element). The final answer must keep every
part's answer (the option's letter and text, the number, the entity: `stated_answer`). If the
reducer fails, restates the question instead of answering it, or leaves out a part's answer,
the answer is the parts' answers joined in order and `fallback_reason` says why; a part that
could not be answered is named in the answer and in `fallback_reason`.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.nodes.execute import stated_answer
from compllm_graph.state import CompLLMState, SubAnswer, unanswered
from compllm_graph.types import message_text

# Asking to repeat the facts keeps a small reducer from answering only the first part: on six
# questions SmolLM2-135M answered 4 right with this wording, 1.5 with "answer the original
# question using the answers to its sub-questions".
AGGREGATE_PROMPT = """\
Here are answers to the parts of a question.
{answers}

Now answer the whole question in one or two sentences, repeating the facts above: {query}"""


def _parts(state: CompLLMState) -> list[SubAnswer]:
    return sorted(state["sub_answers"], key=lambda a: a["sub_query"])


def aggregate_prompt(state: CompLLMState, parts: list[SubAnswer]) -> list[BaseMessage] | None:
    """The reducer's prompt, or None when there is nothing to combine: no part was answered, or
    the single sub-query is the query itself."""
    answered = [a for a in parts if not unanswered(a)]
    single = len(parts) == 1 and parts[0]["question"] == state["query"]
    if not answered or single:
        return None
    answers = "\n".join(f"Sub-question: {a['question']}\nAnswer: {a['answer']}" for a in answered)
    return [HumanMessage(AGGREGATE_PROMPT.format(answers=answers, query=state["query"]))]


def joined_parts(parts: list[SubAnswer]) -> str:
    """The answered parts in order: the answer when there is nothing to aggregate, or when the
    aggregator failed."""
    return " ".join(a["answer"] for a in parts if not unanswered(a))


RESTATED_SPAN = 60
"""Width of the question's windows (one every `RESTATED_SPAN // 2` characters) that a reducer's
answer may not copy unless a part's answer has them too: an option's text is fine, the
question's stem or its list of options is not. Any copied stretch of 90 characters or more
covers a whole window."""


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def restates_query(text: str, query: str, parts: list[SubAnswer]) -> bool:
    """Whether the reducer's `text` copies a stretch of the question that no part's answer holds.

    Small reducers often echo the question, options and all, before or instead of an answer;
    every option's text then stands in the answer, so none of them is an answer any more. On
    the first 23 P-2 questions Qwen2.5-Coder-0.5B's reducer did so 10 times.
    """
    said, asked = _words(text), _words(query)
    answers = [_words(a["answer"]) for a in parts]
    for start in range(0, len(asked) - RESTATED_SPAN + 1, RESTATED_SPAN // 2):
        stretch = asked[start : start + RESTATED_SPAN]
        if stretch in said and not any(stretch in a for a in answers):
            return True
    return False


def left_out(text: str, parts: list[SubAnswer]) -> list[SubAnswer]:
    """The answered parts whose stated answer (`stated_answer`) the reducer's `text` lacks.

    Appending a left-out answer after the reducer's text is not enough: the reducer that drops
    a part often names another option for it, and an answer naming two options answers
    neither. On Qwen2.5-Coder-0.5B's 200 stored P-2 answers, appending the left-out answers
    kept 98 of 400 parts right (101 with options whole), joining the parts 105
    (`benchmarks/reaggregate.py`).
    """
    said = _words(text)
    return [
        a
        for a in parts
        if not unanswered(a)
        and (stated := stated_answer(a["answer"]))
        and _words(stated).rstrip(".") not in said
    ]


def reduced_answer(
    state: CompLLMState, parts: list[SubAnswer], text: str
) -> tuple[str, str | None]:
    """The final answer from the reducer's `text`, and why the parts' answers replaced it."""
    if restates_query(text, state["query"], parts):
        reason = (
            "the aggregator restated the question instead of answering; the answer joins the parts"
        )
        return joined_parts(parts), reason
    if missing := left_out(text, parts):
        ids = ", ".join(str(a["sub_query"]) for a in missing)
        reason = (
            f"the aggregator left out the answer of sub-query {ids}; the answer joins the parts"
        )
        return joined_parts(parts), reason
    return text, None


def make_aggregate_node(aggregator: Runnable) -> Runnable:
    """Build the node that writes the final answer (and appends it to `messages` for chat input)."""

    def finish(
        state: CompLLMState, parts: list[SubAnswer], answer: str, failure: str | None = None
    ) -> dict:
        reasons = [r for r in (state.get("fallback_reason"), failure) if r]
        missing = [a for a in parts if unanswered(a)]
        if missing:
            named = "; ".join(f"[{a['sub_query']}] {a['question']}" for a in missing)
            answer = f"{answer} (Could not answer: {named}.)".strip()
            reasons += [f"sub-query {a['sub_query']}: {a['fallback_reason']}" for a in missing]
        get_stream_writer()({"event": "answer", "answer": answer})
        update: dict = {"answer": answer, "fallback_reason": "; ".join(reasons) or None}
        messages = state.get("messages") or []
        if messages and isinstance(messages[-1], HumanMessage):
            update["messages"] = [AIMessage(answer)]
        return update

    def failed(state: CompLLMState, parts: list[SubAnswer], exc: Exception) -> dict:
        reason = f"the aggregator raised {type(exc).__name__}: {exc}; the answer joins the parts"
        return finish(state, parts, joined_parts(parts), reason)

    def aggregate(state: CompLLMState) -> dict:
        parts = _parts(state)
        prompt = aggregate_prompt(state, parts)
        if prompt is None:
            return finish(state, parts, joined_parts(parts))
        try:
            text = message_text(aggregator.invoke(prompt))
        except Exception as exc:  # the parts are answered: never lose them to the reducer
            return failed(state, parts, exc)
        return finish(state, parts, *reduced_answer(state, parts, text))

    async def aaggregate(state: CompLLMState) -> dict:
        parts = _parts(state)
        prompt = aggregate_prompt(state, parts)
        if prompt is None:
            return finish(state, parts, joined_parts(parts))
        try:
            text = message_text(await aggregator.ainvoke(prompt))
        except Exception as exc:  # the parts are answered: never lose them to the reducer
            return failed(state, parts, exc)
        return finish(state, parts, *reduced_answer(state, parts, text))

    return RunnableLambda(aggregate, afunc=aaggregate, name="aggregate")
