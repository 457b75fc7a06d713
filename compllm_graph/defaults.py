"""The embedded default: one small local model plays decomposer, experts, base and aggregator."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.graph import StateGraph

from compllm_graph.expert_store import ExpertRouter, ExpertStore, demo_store
from compllm_graph.graph import create_compllm_graph
from compllm_graph.models import DEFAULT_MODEL, LocalModel, load_model
from compllm_graph.models.local import same_base
from compllm_graph.nodes.decompose import DECOMPOSER_PROMPT
from compllm_graph.training.decoding import tag_grammar_factory
from compllm_graph.training.settings import read_training_record

DEFAULT_MAX_NEW_TOKENS = 48
DECOMPOSER_MAX_NEW_TOKENS = 128


def default_decomposer(
    local_model: LocalModel, adapter: str | Path | None = None, beams: int = 1
) -> tuple[Runnable, str | None]:
    """A trained decomposer adapter where one fits the model, else the few-shot prompt.

    Either way decoding is constrained to the tag grammar, so the output always parses: it raised
    the shipped adapter's MuSiQue sub-query F1 from 0.75 to 0.77 (see README).

    Args:
        local_model: The loaded base model.
        adapter: A folder written by `compllm train decomposer`; by default the adapter shipped
            for `local_model` (`compllm_graph.decomposer.adapter_for`), if there is one.
        beams: Beam-search width for the decomposition; 1 is greedy (see README for what
            wider beams gain and cost).

    Returns:
        The decomposer chat model and the system prompt to send it.

    Raises:
        ValueError: `adapter` was trained on another base model, or its `training.json` is
            unreadable (`AdapterError`, a `ValueError`, for a folder that is not a LoRA
            adapter), or `beams` is below 1.
    """
    from compllm_graph import decomposer

    if beams < 1:
        raise ValueError(f"decomposer beams must be >= 1 (1 is greedy decoding), got {beams}")
    if adapter is None:
        adapter = decomposer.adapter_for(local_model.name)
    name, prompt = None, DECOMPOSER_PROMPT
    if adapter is not None:
        name, prompt = _load_decomposer(local_model, Path(adapter))
    chat = local_model.chat_model(
        adapter=name,
        max_new_tokens=DECOMPOSER_MAX_NEW_TOKENS,
        logits_processor=tag_grammar_factory(local_model.tokenizer),
        num_beams=beams,
    )
    return chat, prompt


def _load_decomposer(local_model: LocalModel, folder: Path) -> tuple[str, str]:
    """Load a decomposer adapter once per folder; returns its adapter name and system prompt."""
    from compllm_graph import decomposer

    record = read_training_record(folder)
    base = record.get("base")
    if isinstance(base, str) and not same_base(base, local_model.name):
        raise ValueError(
            f"the decomposer adapter at {folder} was trained on {base!r}, not on "
            f"{local_model.name!r}: load that model (`--model {base}`) or train one for this model"
        )
    prompt = record.get("system_prompt", decomposer.DECOMPOSER_SYSTEM_PROMPT)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{folder}/training.json has no usable system_prompt; re-train or fix it")
    shipped = folder.resolve() in decomposer.shipped().values()
    # One name per folder, so two decomposers can share a model without overwriting each other.
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]
    name = "decomposer" if shipped else f"decomposer_{digest}"
    if name not in local_model.adapters:
        local_model.add_adapter(name, folder)
    return name, prompt


def build_default_graph(
    model: str | LocalModel = DEFAULT_MODEL,
    store: ExpertStore | None = None,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    decomposer_adapter: str | Path | None = None,
    decomposer_beams: int = 1,
    **options: Any,
) -> StateGraph:
    """The Comp-LLM graph on one local model and the demo expert store.

    Args:
        model: A model alias, path or id for `load_model`, or an already loaded `LocalModel`.
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
    local_model = model if isinstance(model, LocalModel) else load_model(model)
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
