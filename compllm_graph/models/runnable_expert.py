"""Any messages-state Runnable as an expert: a LangGraph agent or subgraph called like a chat model.

The execute node calls an expert the way one calls a chat model: a list of messages in, an
`AIMessage` out. A LangGraph agent (`create_react_agent`, `langchain.agents.create_agent`, a
hand-built `StateGraph` over `MessagesState` with a `ToolNode`) takes `{"messages": [...]}` and
returns its whole state instead, the answer last. `as_expert` turns the second into the first,
sync and async, and `takes_messages` tells which compiled graphs need it
(`create_compllm_graph` wraps those itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, RunnableLambda
from langgraph.pregel import Pregel

from compllm_graph.errors import CompLLMError

MESSAGES = "messages"
"""The state key a messages-state graph reads its conversation from and appends its answer to."""


class ExpertReplyError(CompLLMError, ValueError):
    """A messages-state expert ended without an answer: no new message, or a last message that
    is not the AI's (a tool result, the question itself)."""


def takes_messages(runnable: object) -> bool:
    """Whether `runnable` is a compiled LangGraph graph whose input state has a `messages` key.

    Such a graph answers in its state's last message rather than returning a message, so it
    needs `as_expert` to serve as an expert. A bound graph (`graph.with_config(...)`) counts;
    chat models, chains and `as_expert`'s own wrappers do not. A graph whose input schema has
    no JSON schema (a state field of a type pydantic cannot describe) counts as not taking
    messages: wrap it with `as_expert` yourself.
    """
    while isinstance(runnable, RunnableBinding):
        runnable = runnable.bound
    if not isinstance(runnable, Pregel):
        return False
    try:
        schema = runnable.get_input_jsonschema()
    except Exception:  # pydantic cannot describe some state types; see the docstring
        return False
    return MESSAGES in (schema.get("properties") or {})


def as_expert(runnable: Runnable, *, name: str | None = None) -> Runnable[Any, AIMessage]:
    """A messages-state Runnable as a chat-model-style expert: messages in, `AIMessage` out.

    The request (a string, a prompt value or a list of messages, as a chat model takes) becomes
    `{"messages": [...]}`; the reply is the last message of the state the runnable returns. The
    call's config (callbacks, recursion limit, LangGraph's own keys) goes on to the runnable, so
    a LangGraph agent runs as a subgraph of the caller's graph and traces inside it. `invoke`
    calls the runnable's `invoke` and `ainvoke` its `ainvoke`, so an async agent is cancelled
    when the expert's timeout runs out.

    Args:
        runnable: Takes `{"messages": [...]}` and returns a state (a mapping or an object with a
            `messages` attribute) whose last message is the answer: a compiled LangGraph
            agent or subgraph, or any Runnable of that shape.
        name: The wrapper's run name in traces; default `expert:<the runnable's name>`.

    Returns:
        A Runnable that takes chat-model input and returns the answer as an `AIMessage`
        (tool calls and all). It raises `ExpertReplyError` when the state's last message is
        not an AI message (the runnable added none, or stopped on a tool result), which the
        execute node treats as a failed attempt (retry, then the base model).

    Raises:
        ValueError: `runnable` is not a LangChain Runnable.

    Example:
        ```python
        from langchain_core.messages import HumanMessage

        expert = as_expert(agent)  # agent: a compiled StateGraph over MessagesState
        reply = expert.invoke([HumanMessage("What is 17 times 23?")])
        print(reply.content)
        ```
    """
    if not isinstance(runnable, Runnable):
        raise ValueError(
            f"as_expert takes a LangChain Runnable (a compiled LangGraph graph, an agent), got "
            f"{type(runnable).__name__}"
        )
    label = name or f"expert:{runnable.get_name()}"

    def call(request: Any, config: RunnableConfig) -> AIMessage:
        messages = request_messages(request)
        return answer_of(runnable.invoke({MESSAGES: messages}, config), label)

    async def acall(request: Any, config: RunnableConfig) -> AIMessage:
        messages = request_messages(request)
        state = await runnable.ainvoke({MESSAGES: messages}, config)
        return answer_of(state, label)

    return RunnableLambda(call, afunc=acall, name=label)


def request_messages(request: Any) -> list[BaseMessage]:
    """A chat model's input as messages: a string is one human message."""
    if isinstance(request, PromptValue):
        return request.to_messages()
    if isinstance(request, str):
        return [HumanMessage(request)]
    return convert_to_messages(request)


def answer_of(state: Any, label: str) -> AIMessage:
    """The answer in a messages-state graph's output: its last message, which must be the AI's.

    A graph that added nothing ends on the question it was sent, so this refuses it too.

    Raises:
        ExpertReplyError: the output has no `messages` list, or its last message (if any) is
            not an `AIMessage`.
    """
    raw = state.get(MESSAGES) if isinstance(state, Mapping) else getattr(state, MESSAGES, None)
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ExpertReplyError(
            f"{label} returned {type(state).__name__} without a 'messages' list; an expert "
            "wrapped by as_expert must return its state with the answer as the last message"
        )
    messages = convert_to_messages(raw)
    if not messages:
        raise ExpertReplyError(f"{label} returned no messages")
    last = messages[-1]
    if not isinstance(last, AIMessage):
        raise ExpertReplyError(
            f"{label} ended on a {type(last).__name__}, not an answer (AIMessage): "
            f"{last.text[:200]!r}"
        )
    return last


__all__ = ["MESSAGES", "ExpertReplyError", "answer_of", "as_expert", "takes_messages"]
