"""The Comp-LLM graph as one node of your own LangGraph chat app (`MessagesState`).

The compiled Comp-LLM graph reads the last human message of `messages` and appends its answer as
an AI message, so it drops into any `MessagesState` graph as a node. Here a two-turn chat keeps
its history in a checkpointer, and a small node of "your own" logs each turn.

    python examples/graph_as_node.py [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from compllm_graph.defaults import build_default_graph
from compllm_graph.models import DEFAULT_MODEL

TURNS = [
    "What is the chemical formula of water, and how many legs does a spider have?",
    "What is 9 times 6?",
]


def log_turn(state: MessagesState) -> dict:
    """Your own node: here it only reports how long the conversation is."""
    print(f"  (conversation now has {len(state['messages'])} messages)")
    return {}


def build_app(model: str, max_new_tokens: int) -> object:
    """A chat app: Comp-LLM answers, then `log_turn` runs; history lives in the checkpointer."""
    compllm = build_default_graph(model, max_new_tokens=max_new_tokens).compile()
    builder = StateGraph(MessagesState)
    builder.add_node("compllm", compllm)  # a compiled graph is a node like any other
    builder.add_node("log_turn", log_turn)
    builder.add_edge(START, "compllm")
    builder.add_edge("compllm", "log_turn")
    builder.add_edge("log_turn", END)
    return builder.compile(checkpointer=InMemorySaver())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model alias (default: %(default)s)")
    args = parser.parse_args()
    app = build_app(args.model, args.max_new_tokens)
    config = {"configurable": {"thread_id": "demo"}}
    for turn in TURNS:
        print(f"User: {turn}")
        state = app.invoke({"messages": [HumanMessage(turn)]}, config)  # type: ignore[attr-defined]
        print(f"Comp-LLM: {state['messages'][-1].content}")
    history = app.get_state(config).values["messages"]  # type: ignore[attr-defined]
    print(f"History: {[m.type for m in history]}")


if __name__ == "__main__":
    main()
