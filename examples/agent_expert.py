"""A LangGraph agent with a tool as one expert of Comp-LLM, the others as usual.

The mathematics expert is an agent: a `StateGraph` over `MessagesState` whose model calls a
`calculate` tool (a `ToolNode`) until it can answer. The store registers it as kind `runnable`
with the demo mathematics questions as its routing data; the store keeps no code, so the agent
is given when the experts are built, `store.chat_models(local, runnables={"mathematics":
agent})`, which wraps it with `as_expert` (messages in, its last message out). Chemistry, biology
and medicine are the demo experts on the local model (its shipped LoRA adapters when its expert
pack is installed). Routing, thresholds and the rest of the graph do not change.

SmolLM2-135M cannot call tools, so without `--agent-url` the agent's model is a deterministic
stand-in (`CallsTheCalculator`): it reads "A times B" (plus, minus, divided by) from the
question, calls the tool with the numbers, and answers with the tool's result; a question it
cannot read gets no answer, and the graph falls back to the base model. `--agent-url URL
--agent-model NAME` uses a model that calls tools behind an OpenAI-compatible server instead
(vLLM with `--enable-auto-tool-choice`, Ollama, ...).

    python examples/agent_expert.py [QUESTION] [--max-new-tokens 48] [--model ALIAS]
        [--agent-url http://gpu-box:8000/v1 --agent-model NAME]
"""

from __future__ import annotations

import argparse
import operator
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from compllm_graph import create_compllm_graph
from compllm_graph.decomposer import default_decomposer
from compllm_graph.expert_store import ExpertRouter, ExpertStore
from compllm_graph.expert_store.data import read_labelled, read_texts
from compllm_graph.expert_store.demo import DEMO_DATA, DEMO_EXPERTS, shipped_experts
from compllm_graph.models import DEFAULT_MODEL, InferenceModel

QUESTION = "What is the chemical symbol for sodium, and what is 23 times 3?"
AGENT_EXPERT = "mathematics"
AGENT_PROMPT = "Work arithmetic out with the calculate tool, then give the result."
OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}
# What the stand-in reads: "23 times 3", "12.5 + 4", "10 divided by 4".
_WORDS = {"plus": "+", "minus": "-", "times": "*", "multiplied by": "*", "divided by": "/"}
_PROBLEM = re.compile(
    r"(-?\d+(?:\.\d+)?)\s*(plus|minus|times|multiplied by|divided by|[-+*/x])\s*(-?\d+(?:\.\d+)?)",
    re.IGNORECASE,
)


@tool
def calculate(a: float, b: float, op: Literal["+", "-", "*", "/"]) -> str:
    """Work out `a op b` exactly: op is one of + - * /."""
    if op == "/" and b == 0:
        return "error: division by zero"
    result = OPERATIONS[op](a, b)
    return str(int(result)) if float(result).is_integer() else f"{result:g}"


def build_agent(model: BaseChatModel) -> CompiledStateGraph:
    """The calculator agent: the model calls `calculate` until it answers."""
    tools = [calculate]
    bound = model.bind_tools(tools)

    def prompt(state: MessagesState) -> list[BaseMessage]:
        return [SystemMessage(AGENT_PROMPT), *state["messages"]]

    def think(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke(prompt(state))]}

    async def athink(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(prompt(state))]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", RunnableLambda(think, afunc=athink))
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)  # a tool call -> tools, else end
    builder.add_edge("tools", "agent")
    return builder.compile(name="calculator_agent")


class CallsTheCalculator(BaseChatModel):
    """A stand-in agent model: calls `calculate` with the question's numbers, then answers with
    the result. A real agent's model writes the call itself; this one shows only the wiring, on
    a model that cannot call tools (SmolLM2-135M)."""

    @property
    def _llm_type(self) -> str:
        return "calls-the-calculator"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> CallsTheCalculator:
        """The agent's tools: this model calls only `calculate`."""
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            message = AIMessage(f"The calculator says {last.text}. The answer is {last.text}.")
        else:
            message = self._call_for(last.text)
        return ChatResult(generations=[ChatGeneration(message=message)])

    @staticmethod
    def _call_for(question: str) -> AIMessage:
        # After parent answers, the question comes last ("... Question: What is #1 times 3?").
        found = _PROBLEM.search(question.rsplit("Question:", 1)[-1])
        if found is None:
            return AIMessage("")  # no answer: the graph retries, then asks the base model
        a, word, b = found.groups()
        op = _WORDS.get(word.lower(), "*" if word.lower() == "x" else word)
        args = {"a": float(a), "b": float(b), "op": op}
        return AIMessage("", tool_calls=[{"name": "calculate", "args": args, "id": "call_calc"}])


def build_store(folder: Path, base: str, embedder: str = "minilm") -> ExpertStore:
    """The demo experts in a new store at `folder`, mathematics registered as the agent.

    The store holds the agent's routing data, description and kind only; `build_experts` binds
    the agent itself. Thresholds are fitted on the demo calibration questions, as
    `compllm experts build-demo` fits them.
    """
    adapters = shipped_experts(base)  # the trained LoRAs of `base`'s pack, if installed
    store = ExpertStore.create(folder, embedder)
    for name, (description, system_prompt) in DEMO_EXPERTS.items():
        texts = read_texts(DEMO_DATA / f"{name}.jsonl")
        if name == AGENT_EXPERT:
            description = "Arithmetic, worked out by an agent that calls a calculator tool."
            store.add_expert(name, texts, description=description, kind="runnable")
            continue
        store.add_expert(
            name,
            texts,
            description=description,
            system_prompt=system_prompt,
            adapter=adapters.get(name),
            base_model=base if name in adapters else None,
        )
    fit = ExpertRouter(store).fit_thresholds(read_labelled(DEMO_DATA / "calibration.jsonl"))
    store.set_thresholds(fit.thresholds)
    return store


def build_experts(
    local: InferenceModel, store: ExpertStore, agent_model: BaseChatModel, max_new_tokens: int
) -> dict[str, Runnable]:
    """Every expert of `store` as a chat model, the agent bound to its name."""
    agent = build_agent(agent_model)
    return store.chat_models(local, runnables={AGENT_EXPERT: agent}, max_new_tokens=max_new_tokens)


def build_graph(
    local: InferenceModel,
    store: ExpertStore,
    experts: dict[str, Runnable],
    decomposer: Runnable,
    decomposer_prompt: str | None,
    max_new_tokens: int,
) -> StateGraph:
    """Comp-LLM over the store's router and `experts`, the local model as base and reducer."""
    return create_compllm_graph(
        decomposer=decomposer,
        decomposer_prompt=decomposer_prompt,
        experts=experts,
        router=ExpertRouter(store),
        base=local.chat_model(max_new_tokens=max_new_tokens),
        check_aggregate=True,  # a small local reducer drops parts: fall back to them
    )


def report(result: dict[str, Any]) -> list[str]:
    """The run's sub-queries with who answered each, and the final answer."""
    lines = []
    for sub_query, route, answer in zip(
        result["query_graph"]["sub_queries"], result["routes"], result["sub_answers"]
    ):
        expert = answer["expert"] or "base model"
        lines.append(f"[{sub_query['id']}] {sub_query['text']} -> {expert} ({route['score']:.2f})")
        lines.append(f"    {answer['answer']}")
    lines.append(f"Answer: {result['answer']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default=QUESTION)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model alias (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--agent-url", help="an OpenAI-compatible server's base URL")
    parser.add_argument("--agent-model", help="the served model that calls tools")
    args = parser.parse_args()
    from compllm_graph.models.loading import load_model  # the [local] extra, loaded to run

    local = load_model(args.model)
    agent_model: BaseChatModel = CallsTheCalculator()
    if args.agent_url:
        from compllm_graph.models.remote import remote_chat_model  # the [remote] extra

        agent_model = remote_chat_model(args.agent_url, args.agent_model or "default")
    with tempfile.TemporaryDirectory() as scratch:
        store = build_store(Path(scratch) / "store", local.name)
        experts = build_experts(local, store, agent_model, args.max_new_tokens)
        for expert in store.experts():
            print(f"{expert.name:<12} kind {expert.kind}")
        decomposer, prompt = default_decomposer(local)  # the model's shipped decomposer
        graph = build_graph(local, store, experts, decomposer, prompt, args.max_new_tokens)
        result = graph.compile().invoke({"query": args.question})
    # Whatever the router chose, show the agent answering through its tool.
    check = experts[AGENT_EXPERT].invoke("What is 23 times 3?")
    print(f"{AGENT_EXPERT} (agent) says: {check.text}")
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
