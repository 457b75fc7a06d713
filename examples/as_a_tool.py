"""The Comp-LLM graph as a tool that an agent calls.

`compllm_tool` wraps the compiled graph as a LangChain tool: the agent passes a question, the
tool returns Comp-LLM's answer as the tool message's text and the whole run (sub-queries, routes,
sub-answers) as its artifact, which the agent's model never reads. The agent is LangChain's
`create_agent`; any agent that calls LangChain tools takes the same tool.

SmolLM2-135M cannot call tools, so without `--agent-url` the agent's model is a stand-in
(`AsksTheTool`) that calls the tool with the user's question and answers with what it returned.
`--agent-url URL --agent-model NAME` uses a model that calls tools behind an OpenAI-compatible
server instead (vLLM with `--enable-auto-tool-choice`, Ollama, ...).

    python examples/as_a_tool.py [--max-new-tokens 48] [--question TEXT]
        [--agent-url http://gpu-box:8000/v1 --agent-model NAME]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool

from compllm_graph.defaults import build_default_graph
from compllm_graph.models import DEFAULT_MODEL

QUESTION = "What gas do plants absorb for photosynthesis, and what is 15 plus 27?"
TOOL_NAME = "ask_compllm"
TOOL_DESCRIPTION = (
    "Answer a question that spans several domains (chemistry, biology, mathematics, medicine): "
    "a team of small expert models answers each part and one answer comes back."
)
AGENT_PROMPT = f"Use {TOOL_NAME} for questions about science, mathematics or medicine."


def compllm_tool(compllm: Runnable, name: str = TOOL_NAME) -> BaseTool:
    """The compiled Comp-LLM graph as a tool: text in, (answer, the whole run) out."""

    def ask(question: str) -> tuple[str, dict]:
        out = compllm.invoke({"query": question})
        return out["answer"], out

    async def aask(question: str) -> tuple[str, dict]:
        out = await compllm.ainvoke({"query": question})
        return out["answer"], out

    return StructuredTool.from_function(
        func=ask,
        coroutine=aask,
        name=name,
        description=TOOL_DESCRIPTION,
        response_format="content_and_artifact",
    )


def build_agent(compllm: Runnable, model: BaseChatModel) -> Any:
    """An agent whose one tool is Comp-LLM; `model` must call tools (or be `AsksTheTool`)."""
    return create_agent(model, tools=[compllm_tool(compllm)], system_prompt=AGENT_PROMPT)


def run_agent(question: str, compllm: Runnable, model: BaseChatModel) -> list[BaseMessage]:
    """Ask the agent `question`; returns the whole conversation, the agent's answer last."""
    return build_agent(compllm, model).invoke({"messages": [HumanMessage(question)]})["messages"]


class AsksTheTool(BaseChatModel):
    """A stand-in agent model: calls the tool with the user's question, then answers with its
    result. A real agent's model chooses the tool and writes the call; this one shows only the
    wiring, on a model that cannot call tools (SmolLM2-135M)."""

    tool_name: str = TOOL_NAME

    @property
    def _llm_type(self) -> str:
        return "asks-the-tool"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> AsksTheTool:
        """The agent's tools: this model calls only `tool_name`."""
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            message = AIMessage(f"The experts say: {last.text}")
        else:
            call = {"name": self.tool_name, "args": {"question": last.text}, "id": "call_compllm"}
            message = AIMessage("", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=message)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model alias (default: %(default)s)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--agent-url", help="an OpenAI-compatible server's base URL")
    parser.add_argument("--agent-model", help="the served model that calls tools")
    args = parser.parse_args()
    compllm = build_default_graph(args.model, max_new_tokens=args.max_new_tokens).compile()
    model: BaseChatModel = AsksTheTool()
    if args.agent_url:
        from compllm_graph.models.remote import remote_chat_model  # the [remote] extra

        model = remote_chat_model(args.agent_url, args.agent_model or "default")
    messages = run_agent(args.question, compllm, model)
    print(f"User: {args.question}")
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            print(f"Tool call: {message.tool_calls[0]['name']}({message.tool_calls[0]['args']})")
        elif isinstance(message, ToolMessage):
            routes = [route["expert"] or "base" for route in message.artifact["routes"]]
            print(f"Comp-LLM: {message.text} (routes: {', '.join(routes)})")
    print(f"Agent: {messages[-1].text}")


if __name__ == "__main__":
    main()
