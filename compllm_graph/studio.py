"""The default Comp-LLM graph for LangGraph Studio (`langgraph dev`, see `langgraph.json`).

Importing this module loads the model and the demo expert store. Two environment variables
(settable in `langgraph.json`'s `env`) pick them: `COMPLLM_MODEL` (an alias or path, default
`smollm2-135m-instruct`), `COMPLLM_DECOMPOSER` (a decomposer adapter folder for that model,
default: the shipped one) and `COMPLLM_MAX_NEW_TOKENS` (answer length). The graph is compiled
without a checkpointer: the LangGraph server supplies its own persistence.
"""

from __future__ import annotations

import os

from compllm_graph.defaults import DEFAULT_MAX_NEW_TOKENS, build_default_graph
from compllm_graph.models import DEFAULT_MODEL


def _max_new_tokens() -> int:
    text = os.environ.get("COMPLLM_MAX_NEW_TOKENS", str(DEFAULT_MAX_NEW_TOKENS))
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"COMPLLM_MAX_NEW_TOKENS must be a positive integer, got {text!r}")
    return int(text)


graph = build_default_graph(
    os.environ.get("COMPLLM_MODEL", DEFAULT_MODEL),
    max_new_tokens=_max_new_tokens(),
    decomposer_adapter=os.environ.get("COMPLLM_DECOMPOSER") or None,
).compile(name="compllm")

__all__ = ["graph"]
