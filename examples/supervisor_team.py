"""The Comp-LLM graph as one worker of a langgraph-supervisor team.

A supervisor agent hands the user's question to its workers: `compllm` (the compiled Comp-LLM
graph, for a question that spans several domains) and `reviewer` (a chat model that checks
Comp-LLM's answer against the question). `create_supervisor` takes any compiled graph with a
name and a `messages` state as a worker.

The supervisor hands a worker the whole conversation, which ends in the handoff's tool message.
Comp-LLM reads a conversation only when its last message is the question, so its worker passes
the user's last question on as `query` and replies with Comp-LLM's answer under its own name.

SmolLM2-135M cannot call tools, so without `--supervisor-url` the supervisor's model is a
stand-in (`HandOffInTurn`) that hands the question to each worker in turn and then reports what
they said. `--supervisor-url URL --supervisor-model NAME` uses a model that calls tools behind an
OpenAI-compatible server instead (vLLM with `--enable-auto-tool-choice`, Ollama, ...).

    python examples/supervisor_team.py [--max-new-tokens 48] [--question TEXT]
        [--supervisor-url http://gpu-box:8000/v1 --supervisor-model NAME]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph_supervisor import create_supervisor

from compllm_graph.defaults import build_default_graph
from compllm_graph.models import DEFAULT_MODEL, load_model

QUESTION = (
    "Which organelle makes most of a cell's ATP, and what is the chemical formula of glucose?"
)
WORKERS = ("compllm", "reviewer")
SUPERVISOR_PROMPT = (
    "You lead a team. Hand a question that spans several domains to compllm, then hand its "
    "answer to reviewer, then give the user compllm's answer and the review."
)
REVIEWER_PROMPT = (
    "You review answers. Say in one sentence whether the answer covers every part of the question."
)


def last_question(messages: Sequence[BaseMessage]) -> str:
    """The text of the last human message: the user's question."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    raise ValueError("the conversation has no human message to answer")


def last_reply_of(name: str, messages: Sequence[BaseMessage]) -> str:
    """The text of the last answer worker `name` wrote, or "" when it has not answered.

    The supervisor also writes a "Transferring back" message under the worker's name when the
    worker is done; that one is a tool call, not an answer.
    """
    for message in reversed(messages):
        if isinstance(message, AIMessage) and message.name == name and not message.tool_calls:
            return message.text
    return ""


def worker(name: str, reply: Callable[[Sequence[BaseMessage]], str]) -> CompiledStateGraph:
    """A one-node `messages` graph named `name` that answers with `reply(conversation)`."""

    def answer(state: MessagesState) -> dict:
        return {"messages": [AIMessage(reply(state["messages"]), name=name)]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile(name=name)


def compllm_worker(compllm: Runnable, name: str = "compllm") -> CompiledStateGraph:
    """The compiled Comp-LLM graph as a supervisor's worker: it answers the user's last question."""
    return worker(
        name, lambda messages: compllm.invoke({"query": last_question(messages)})["answer"]
    )


def reviewer_worker(chat_model: Runnable, name: str = "reviewer") -> CompiledStateGraph:
    """A chat model that reviews Comp-LLM's answer against the user's question."""

    def review(messages: Sequence[BaseMessage]) -> str:
        prompt = [
            SystemMessage(REVIEWER_PROMPT),
            HumanMessage(
                f"Question: {last_question(messages)}\nAnswer: {last_reply_of('compllm', messages)}"
            ),
        ]
        return chat_model.invoke(prompt).text

    return worker(name, review)


def build_team(compllm: Runnable, supervisor: BaseChatModel, reviewer: Runnable) -> Any:
    """The compiled team: `supervisor` decides, `compllm` and `reviewer` are its workers.

    Args:
        compllm: The compiled Comp-LLM graph (`build_default_graph(...).compile()`).
        supervisor: A chat model that calls tools (the handoffs `transfer_to_compllm`,
            `transfer_to_reviewer`), or the stand-in `HandOffInTurn`.
        reviewer: Any chat model.
    """
    workers: list[Pregel] = [compllm_worker(compllm), reviewer_worker(reviewer)]
    return create_supervisor(workers, model=supervisor, prompt=SUPERVISOR_PROMPT).compile()


def run_team(
    question: str, compllm: Runnable, supervisor: BaseChatModel, reviewer: Runnable
) -> list[BaseMessage]:
    """Ask the team `question`; returns the whole conversation, the supervisor's answer last."""
    team = build_team(compllm, supervisor, reviewer)
    return team.invoke({"messages": [HumanMessage(question)]})["messages"]


class HandOffInTurn(BaseChatModel):
    """A stand-in supervisor model: hands off to each worker in turn, then reports their replies.

    A real supervisor is a chat model that calls tools; this one needs none, so the example runs
    on a model that cannot (SmolLM2-135M) and shows only the wiring.
    """

    workers: tuple[str, ...] = WORKERS

    @property
    def _llm_type(self) -> str:
        return "hand-off-in-turn"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> HandOffInTurn:
        """Tools are the supervisor's handoffs; this model knows them by the workers' names."""
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        said = {name: last_reply_of(name, messages) for name in self.workers}
        waiting = [name for name in self.workers if not said[name]]
        if waiting:
            call = {"name": f"transfer_to_{waiting[0]}", "args": {}, "id": f"call_{waiting[0]}"}
            message = AIMessage("", tool_calls=[call])
        else:
            message = AIMessage("\n".join(f"{name}: {said[name]}" for name in self.workers))
        return ChatResult(generations=[ChatGeneration(message=message)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model alias (default: %(default)s)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--supervisor-url", help="an OpenAI-compatible server's base URL")
    parser.add_argument("--supervisor-model", help="the served model that calls tools")
    args = parser.parse_args()
    local = load_model(args.model)  # loaded once: Comp-LLM and the reviewer share it
    compllm = build_default_graph(local, max_new_tokens=args.max_new_tokens).compile()
    reviewer = local.chat_model(max_new_tokens=args.max_new_tokens)
    supervisor: BaseChatModel = HandOffInTurn()
    if args.supervisor_url:
        from compllm_graph.models.remote import remote_chat_model  # the [remote] extra

        supervisor = remote_chat_model(args.supervisor_url, args.supervisor_model or "default")
    messages = run_team(args.question, compllm, supervisor, reviewer)
    print(f"User: {args.question}")
    for name in WORKERS:
        print(f"{name}: {last_reply_of(name, messages)}")
    print(f"Supervisor: {messages[-1].text}")


if __name__ == "__main__":
    main()
