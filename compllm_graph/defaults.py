"""The embedded default: one small local model plays decomposer, experts, base and aggregator."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.graph import StateGraph

from compllm_graph.decomposer.loading import default_decomposer
from compllm_graph.expert_store import ExpertRouter, ExpertStore, demo_store
from compllm_graph.expert_store.serving import with_system_prompt
from compllm_graph.graph import create_compllm_graph
from compllm_graph.models import DEFAULT_MODEL, InferenceModel, load_model
from compllm_graph.nodes.aggregate import AggregateMode
from compllm_graph.types import Router

DEFAULT_MAX_NEW_TOKENS = 48

# Unprompted, Qwen2.5-Coder-0.5B ran out of answer tokens mid-derivation on 48 of the 75 P-2
# sub-queries it got as the base model; with this prompt it answered 24 of 71 right, against 13.
BASE_SYSTEM_PROMPT = (
    "Answer the question accurately. Keep any working short, and end with 'The answer is ...'."
)


def build_default_graph(
    model: str | InferenceModel = DEFAULT_MODEL,
    store: ExpertStore | None = None,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    decomposer_adapter: str | Path | None = None,
    decomposer_beams: int = 1,
    experts: Mapping[str, Runnable] | None = None,
    router: Router | None = None,
    base_system_prompt: str | None = BASE_SYSTEM_PROMPT,
    aggregator: Runnable | None = None,
    check_aggregate: bool | None = None,
    aggregate: AggregateMode | None = None,
    **options: Any,
) -> StateGraph:
    """The Comp-LLM graph on one local model and the demo expert store.

    Args:
        model: A model alias, path or id for `load_model`, or an already loaded model
            (`TransformersModel` or `LlamaCppModel`).
        store: The expert store; defaults to the model's demo store (built on first use), whose
            experts are the adapters shipped for the model.
        max_new_tokens: Answer length for experts, base and aggregator.
        decomposer_adapter: A folder written by `compllm train decomposer` for this model;
            defaults to the adapter shipped for this model (`decomposer.adapter_for`) or, for
            a model with none, the few-shot prompt.
        decomposer_beams: Beam-search width for the decomposer; 1 is greedy.
        experts: Expert chat models to use instead of the store's (`store.chat_models`).
        router: Router to use instead of the store's `ExpertRouter` (ablations: random or
            oracle routing, one adapter for everything).
        base_system_prompt: System message for the base model when it answers a sub-query that
            went to no expert; None for none.
        aggregator: The reducer's chat model; defaults to the local model with no system
            message (not the prompted base).
        check_aggregate: See `create_compllm_graph`; None turns it on for the local model's
            reducer, which drops parts, and leaves a reducer of the caller's own unchecked.
        aggregate: See `create_compllm_graph`; None is "auto" for the local model's reducer
            (independent parts are joined with no reducer call) and "always" for a reducer of
            the caller's own.
        **options: Passed on to `create_compllm_graph` (e.g. `scheduler`, `device_limits`).

    Returns:
        An uncompiled `StateGraph`, as `create_compllm_graph` returns.
    """
    if isinstance(model, str):
        # Beam search runs on the transformers engine; greedy decoding on the default one.
        model = load_model(model, engine="transformers" if decomposer_beams > 1 else None)
    local_model = model
    store = store if store is not None else demo_store(local_model.name)
    decomposer, prompt = default_decomposer(local_model, decomposer_adapter, decomposer_beams)
    return create_compllm_graph(
        decomposer=decomposer,
        experts=(
            store.chat_models(local_model, max_new_tokens=max_new_tokens)
            if experts is None
            else experts
        ),
        router=ExpertRouter(store) if router is None else router,
        base=with_system_prompt(
            local_model.chat_model(max_new_tokens=max_new_tokens), base_system_prompt
        ),
        aggregator=(
            local_model.chat_model(max_new_tokens=max_new_tokens)
            if aggregator is None
            else aggregator
        ),
        decomposer_prompt=prompt,
        check_aggregate=aggregator is None if check_aggregate is None else check_aggregate,
        aggregate=aggregate or ("auto" if aggregator is None else "always"),
        **options,
    )


__all__ = [
    "BASE_SYSTEM_PROMPT",
    "DEFAULT_MAX_NEW_TOKENS",
    "build_default_graph",
    "default_decomposer",
]
