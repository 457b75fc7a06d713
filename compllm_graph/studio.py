"""The default Comp-LLM graph for LangGraph Studio (`langgraph dev`, see `langgraph.json`).

Importing this module loads the model and the demo expert store. Environment variables
(settable in `langgraph.json`'s `env`) pick them: `COMPLLM_MODEL` (an alias or path, default
`qwen2.5-coder-0.5b-instruct`, the embedded default), `COMPLLM_DECOMPOSER` (a decomposer
adapter folder for that model, default: the shipped one), `COMPLLM_DECOMPOSER_BEAMS`
(beam-search width of the decomposition, default 1: greedy, which runs on llama.cpp; wider
beams load the model on transformers), `COMPLLM_MAX_NEW_TOKENS` (answer length),
`COMPLLM_ENGINE` (`llama.cpp` or `transformers`) and `COMPLLM_THREADS` (llama.cpp's CPU
threads). The graph is compiled without a checkpointer: the LangGraph server supplies its own
persistence.
"""

from __future__ import annotations

import os

from compllm_graph.defaults import DEFAULT_MAX_NEW_TOKENS, build_default_graph
from compllm_graph.models import DEFAULT_MODEL


def _positive(variable: str, default: int) -> int:
    text = os.environ.get(variable, str(default))
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{variable} must be a positive integer, got {text!r}")
    return int(text)


graph = build_default_graph(
    os.environ.get("COMPLLM_MODEL", DEFAULT_MODEL),
    max_new_tokens=_positive("COMPLLM_MAX_NEW_TOKENS", DEFAULT_MAX_NEW_TOKENS),
    decomposer_adapter=os.environ.get("COMPLLM_DECOMPOSER") or None,
    decomposer_beams=_positive("COMPLLM_DECOMPOSER_BEAMS", 1),
).compile(name="compllm")

__all__ = ["graph"]
