"""The two "chaining with other agents" examples, on fake models: Comp-LLM's answer must reach
the outer agent's final message.

`examples/supervisor_team.py` puts the compiled graph in a langgraph-supervisor team;
`examples/as_a_tool.py` gives it to an agent as a tool. Each is run here with the Comp-LLM graph
on fakes and an outer model that really calls tools (`ToolCaller`), and with the example's own
stand-in model; `tests/integration/test_examples.py` runs both scripts on SmolLM2.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from compllm_graph import create_compllm_graph
from tests.fakes import FakeChat, decomposer, keyword_router

# langgraph-supervisor builds its supervisor with langgraph's own create_react_agent
pytestmark = pytest.mark.filterwarnings("ignore:create_react_agent has been moved")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUESTION = "chem: what is glucose's formula, and bio: which organelle makes ATP?"
ANSWER = "Glucose is C6H12O6, and the mitochondrion makes most of a cell's ATP."


def load_example(name: str) -> ModuleType:
    """An examples/ script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def supervisor_team() -> ModuleType:
    pytest.importorskip("langgraph_supervisor", reason="needs the [examples] extra")
    return load_example("supervisor_team")


@pytest.fixture(scope="module")
def as_a_tool() -> ModuleType:
    pytest.importorskip("langchain", reason="needs the [examples] extra")
    return load_example("as_a_tool")


class Pipeline:
    """A Comp-LLM graph on fakes: two parts, two experts, an aggregator that answers `ANSWER`."""

    def __init__(self) -> None:
        self.decomposer = decomposer("<q>chem formula of glucose</q><q>bio ATP organelle</q>")
        self.aggregator = FakeChat(label="aggregator", reply=lambda _: ANSWER)
        self.graph = create_compllm_graph(
            decomposer=self.decomposer,
            experts={"chemistry": FakeChat(label="chemistry"), "biology": FakeChat(label="bio")},
            router=keyword_router({"chem": "chemistry", "bio": "biology"}),
            base=FakeChat(label="base"),
            aggregator=self.aggregator,
        ).compile()


class ToolCaller(BaseChatModel):
    """A fake chat model that calls tools: `script(messages, tool names)` writes each reply."""

    script: Callable[[list[BaseMessage], list[str]], AIMessage]
    tools: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "tool-caller"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ToolCaller:
        self.tools = [tool.name for tool in tools]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        message = self.script(messages, self.tools)
        return ChatResult(generations=[ChatGeneration(message=message)])


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{name}"}])


def supervise(messages: list[BaseMessage], tools: list[str]) -> AIMessage:
    """Hand off to compllm, then to reviewer, then repeat compllm's reply word for word."""
    assert {"transfer_to_compllm", "transfer_to_reviewer"} <= set(tools)
    replies = {
        m.name: m.text
        for m in messages
        if isinstance(m, AIMessage) and m.name and not m.tool_calls  # not a handoff back
    }
    if "compllm" not in replies:
        return call("transfer_to_compllm")
    if "reviewer" not in replies:
        return call("transfer_to_reviewer")
    return AIMessage(f"The team says: {replies['compllm']} (review: {replies['reviewer']})")


def test_the_graph_as_a_supervisor_worker(supervisor_team: ModuleType) -> None:
    pipeline = Pipeline()
    reviewer = FakeChat(label="reviewer", reply=lambda _: "It covers both parts.")
    messages = supervisor_team.run_team(
        QUESTION, pipeline.graph, ToolCaller(script=supervise), reviewer
    )
    assert pipeline.decomposer.calls == [QUESTION]  # the user's question reached Comp-LLM
    assert messages[-1].text == f"The team says: {ANSWER} (review: It covers both parts.)"
    assert f"Answer: {ANSWER}" in reviewer.calls[0]  # the reviewer read Comp-LLM's answer
    assert supervisor_team.last_reply_of("compllm", messages) == ANSWER


def test_the_supervisor_stand_in_relays_every_worker(supervisor_team: ModuleType) -> None:
    pipeline = Pipeline()
    reviewer = FakeChat(label="reviewer", reply=lambda _: "It covers both parts.")
    stand_in = supervisor_team.HandOffInTurn()
    messages = supervisor_team.run_team(QUESTION, pipeline.graph, stand_in, reviewer)
    assert messages[-1].text == f"compllm: {ANSWER}\nreviewer: It covers both parts."
    assert isinstance(messages[0], HumanMessage) and messages[0].text == QUESTION


def agent_script(messages: list[BaseMessage], tools: list[str]) -> AIMessage:
    """Call ask_compllm with the user's question, then answer with its result."""
    assert tools == ["ask_compllm"]
    if isinstance(messages[-1], ToolMessage):
        return AIMessage(f"According to the experts: {messages[-1].text}")
    return call("ask_compllm", question=messages[-1].text)


def test_the_graph_as_an_agents_tool(as_a_tool: ModuleType) -> None:
    pipeline = Pipeline()
    messages = as_a_tool.run_agent(QUESTION, pipeline.graph, ToolCaller(script=agent_script))
    assert pipeline.decomposer.calls == [QUESTION]
    assert messages[-1].text == f"According to the experts: {ANSWER}"
    (result,) = [m for m in messages if isinstance(m, ToolMessage)]
    assert result.text == ANSWER
    # the whole run travels as the artifact, which the agent's model does not read
    assert [r["expert"] for r in result.artifact["routes"]] == ["chemistry", "biology"]
    assert len(result.artifact["sub_answers"]) == 2


async def test_the_tool_runs_async_in_an_async_agent(as_a_tool: ModuleType) -> None:
    pipeline = Pipeline()
    agent = as_a_tool.build_agent(pipeline.graph, ToolCaller(script=agent_script))
    out = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    assert out["messages"][-1].text == f"According to the experts: {ANSWER}"


def test_the_agent_stand_in_calls_the_tool(as_a_tool: ModuleType) -> None:
    pipeline = Pipeline()
    messages = as_a_tool.run_agent(QUESTION, pipeline.graph, as_a_tool.AsksTheTool())
    assert pipeline.decomposer.calls == [QUESTION]
    assert messages[-1].text == f"The experts say: {ANSWER}"
