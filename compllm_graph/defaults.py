"""The embedded default: one small local model plays decomposer, experts, base and aggregator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph

from compllm_graph.decomposer.loading import default_decomposer
from compllm_graph.expert_store import ExpertRouter, ExpertStore, demo_store
from compllm_graph.graph import create_compllm_graph
from compllm_graph.models import DEFAULT_MODEL, load_model
from compllm_graph.models.loading import InferenceModel

DEFAULT_MAX_NEW_TOKENS = 48


def build_default_graph(
    model: str | InferenceModel = DEFAULT_MODEL,
    store: ExpertStore | None = None,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    decomposer_adapter: str | Path | None = None,
    decomposer_beams: int = 1,
    **options: Any,
) -> StateGraph:
    """The Comp-LLM graph on one local model and the demo expert store.

    Args:
        model: A model alias, path or id for `load_model`, or an already loaded model
            (`LocalModel` or `LlamaCppModel`).
        store: The expert store; defaults to the demo store (built on first use).
        max_new_tokens: Answer length for experts, base and aggregator.
        decomposer_adapter: A folder written by `compllm train decomposer` for this model;
            defaults to the adapter shipped for this model (`decomposer.adapter_for`) or, for
            a model with none, the few-shot prompt.
        decomposer_beams: Beam-search width for the decomposer; 1 is greedy.
        **options: Passed on to `create_compllm_graph` (e.g. `scheduler`, `device_limits`).

    Returns:
        An uncompiled `StateGraph`, as `create_compllm_graph` returns.
    """
    if isinstance(model, str):
        # Beam search runs on the transformers engine; greedy decoding on the default one.
        model = load_model(model, engine="transformers" if decomposer_beams > 1 else None)
    local_model = model
    store = store if store is not None else demo_store()
    decomposer, prompt = default_decomposer(local_model, decomposer_adapter, decomposer_beams)
    return create_compllm_graph(
        decomposer=decomposer,
        experts=store.chat_models(local_model, max_new_tokens=max_new_tokens),
        router=ExpertRouter(store),
        base=local_model.chat_model(max_new_tokens=max_new_tokens),
        decomposer_prompt=prompt,
        **options,
    )


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "build_default_graph", "default_decomposer"]
