"""The embedded default: one small local model plays decomposer, experts, base and aggregator."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.graph import StateGraph

from compllm_graph.decomposer.loading import default_decomposer
from compllm_graph.expert_store import ExpertRouter, ExpertStore, demo_store
from compllm_graph.expert_store.records import needs_runnable
from compllm_graph.expert_store.serving import with_system_prompt
from compllm_graph.graph import create_compllm_graph
from compllm_graph.models import DEFAULT_MODEL, InferenceModel, load_model
from compllm_graph.models.catalogue import PROGRAM_EXPERT_MODELS
from compllm_graph.nodes.aggregate import AggregateMode
from compllm_graph.program_expert import (
    PROGRAM_MAX_NEW_TOKENS,
    ProgramExpertError,
    create_program_expert,
)
from compllm_graph.types import Router

DEFAULT_MAX_NEW_TOKENS = 48

# Unprompted, Qwen2.5-Coder-0.5B ran out of answer tokens mid-derivation on 48 of the 75 P-2
# sub-queries it got as the base model; with this prompt it answered 24 of 71 right, against 13.
BASE_SYSTEM_PROMPT = (
    "Answer the question accurately. Keep any working short, and end with 'The answer is ...'."
)

MATHEMATICS = "mathematics"
"""The expert that `program_expert=True` answers by program (the demo store's name for it)."""


def build_default_graph(
    model: str | InferenceModel = DEFAULT_MODEL,
    store: ExpertStore | None = None,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    decomposer_model: str | InferenceModel | None = None,
    decomposer_adapter: str | Path | None = None,
    decomposer_beams: int = 1,
    experts: Mapping[str, Runnable] | None = None,
    router: Router | None = None,
    base_system_prompt: str | None = BASE_SYSTEM_PROMPT,
    aggregator: Runnable | None = None,
    check_aggregate: bool | None = None,
    aggregate: AggregateMode | None = None,
    split_questions: bool = True,
    program_expert: bool | None = None,
    **options: Any,
) -> StateGraph:
    """The Comp-LLM graph on one local model (the decomposer optionally on a second) and the
    demo expert store.

    Args:
        model: A model alias, path or id for `load_model`, or an already loaded model
            (`TransformersModel` or `LlamaCppModel`). A name is loaded on the transformers
            engine when it runs the decomposer with `decomposer_beams` above 1, else on the
            default one.
        store: The expert store; defaults to the model's demo store (built on first use), whose
            experts are the adapters shipped for the model.
        max_new_tokens: Answer length for experts, base and aggregator.
        decomposer_model: The model the decomposer runs on, when it is not `model`: an alias,
            path or id (loaded as `model` is) or a loaded model; None (or `model` itself) runs
            it on `model`. The experts, base and aggregator stay on `model`. For speed: on
            Qwen2.5-Coder-0.5B the decompose stage took 70 % of a question's time, and
            SmolLM2-135M's shipped decomposer decodes about 2.6x faster at about the same
            decomposition F1 (P-2 0.943 against 0.974, MuSiQue 0.745 against 0.762; see
            docs/results/2026-12-05-decomposer.md).
        decomposer_adapter: A folder written by `compllm train decomposer` for the model the
            decomposer runs on (`decomposer_model`, else `model`); defaults to the adapter
            shipped for that model (`decomposer.adapter_for`) or, for a model with none, the
            few-shot prompt.
        decomposer_beams: Beam-search width for the decomposer; 1 is greedy. Above 1 the
            decomposer's model must be on the transformers engine (a name is loaded there).
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
        split_questions: See `create_compllm_graph`: the and-split rule, on by default.
        program_expert: Answer the store's `mathematics` expert by a program the local model
            writes and the sandbox runs (`program_mathematics`), falling back to the expert
            itself; for the store's experts only, not with `experts`. None turns it on for
            the demo store (no `store`, no `experts`) of a model in `PROGRAM_EXPERT_MODELS`,
            where it is measured better than the adapter, and leaves it off elsewhere.
        **options: Passed on to `create_compllm_graph` (e.g. `scheduler`, `device_limits`).

    Returns:
        An uncompiled `StateGraph`, as `create_compllm_graph` returns.

    Raises:
        ProgramExpertError: `program_expert` with `experts` of your own, or with a store that
            has no `mathematics` expert (a `ValueError`).
        ValueError: `decomposer_adapter` was trained on another base than the model the
            decomposer runs on (`default_decomposer`).

    Example:
        Qwen2.5-Coder-0.5B's experts, with SmolLM2-135M's shipped decomposer splitting the
        question (the [local,router] extras):

        ```python
        from compllm_graph.defaults import build_default_graph

        graph = build_default_graph(
            "qwen2.5-coder-0.5b-instruct", decomposer_model="smollm2-135m-instruct"
        ).compile()
        out = graph.invoke({"query": "What is 12 times 7, and what is the formula of salt?"})
        print(out["answer"])
        ```
    """
    if program_expert and experts is not None:
        raise ProgramExpertError(
            "program_expert=True answers the store's mathematics expert by program; with "
            "experts= of your own, put create_program_expert(...) among them instead"
        )
    # `model` itself as decomposer_model is the one-model graph: loaded once, as without it.
    if decomposer_model is None or decomposer_model == model:
        local_model = decomposing = _loaded(model, decomposer_beams)
    else:
        local_model = _loaded(model, 1)  # it decodes no decomposition: any engine will do
        decomposing = _loaded(decomposer_model, decomposer_beams)
    demo = store is None
    store = store if store is not None else demo_store(local_model.name)
    if program_expert is None:
        program_expert = demo and experts is None and program_by_default(local_model, store)
    decomposer, prompt = default_decomposer(decomposing, decomposer_adapter, decomposer_beams)
    base = with_system_prompt(
        local_model.chat_model(max_new_tokens=max_new_tokens), base_system_prompt
    )
    if experts is None:
        experts = (
            program_mathematics(store, local_model, base, max_new_tokens)
            if program_expert
            else store.chat_models(local_model, max_new_tokens=max_new_tokens)
        )
    return create_compllm_graph(
        decomposer=decomposer,
        experts=experts,
        router=ExpertRouter(store) if router is None else router,
        base=base,
        aggregator=(
            local_model.chat_model(max_new_tokens=max_new_tokens)
            if aggregator is None
            else aggregator
        ),
        decomposer_prompt=prompt,
        check_aggregate=aggregator is None if check_aggregate is None else check_aggregate,
        aggregate=aggregate or ("auto" if aggregator is None else "always"),
        split_questions=split_questions,
        **options,
    )


def program_by_default(model: InferenceModel, demo: ExpertStore) -> bool:
    """`program_expert=None` with the demo store: on for a model in `PROGRAM_EXPERT_MODELS`
    whose demo store has a mathematics expert. (A store or experts of the caller's own keep
    their mathematics expert as it is.)"""
    names = {expert.name for expert in demo.experts()}
    return model.name in PROGRAM_EXPERT_MODELS and MATHEMATICS in names


def _loaded(model: str | InferenceModel, beams: int) -> InferenceModel:
    """`model`, loaded by `load_model` when it is a name: on the transformers engine when it
    decodes the decomposition with `beams` above 1 (beam search runs there), else on the
    default one."""
    if isinstance(model, str):
        return load_model(model, engine="transformers" if beams > 1 else None)
    return model


def program_mathematics(
    store: ExpertStore, local_model: InferenceModel, base: Runnable, max_new_tokens: int
) -> dict[str, Runnable]:
    """The store's experts (`store.chat_models`), with `mathematics` answered by a program.

    The program expert (`create_program_expert`) asks `local_model`'s plain chat model for a
    program and runs it in the sandbox; when no program works it falls back to the store's own
    `mathematics` expert, or to `base` where that expert's Runnable lives in your code (a
    `runnable`, or a `program` without a model), so there is none to fall back to. A
    `mathematics` expert that is a `program` on a model of its own answers by program already
    and is kept as the store builds it.

    Args:
        store: The expert store; it must have a `mathematics` expert for the router to send
            sub-queries to.
        local_model: The loaded base model: it writes the programs, and serves the adapters.
        base: The fallback for a `mathematics` expert whose Runnable lives in your code.
        max_new_tokens: Answer length for every expert; a program gets at least
            `PROGRAM_MAX_NEW_TOKENS`.

    Raises:
        ProgramExpertError: the store has no `mathematics` expert (a `ValueError`).
    """
    stored = {expert.name: expert for expert in store.experts()}
    if MATHEMATICS not in stored:
        raise ProgramExpertError(
            f"the program expert answers for the {MATHEMATICS!r} expert, and the store at "
            f"{store.path} has none (its experts: {sorted(stored) or 'none'}): the router "
            f"would never send it a sub-query; add one (`compllm experts add {MATHEMATICS} "
            "--data FILE`, any kind)"
        )
    mathematics = stored[MATHEMATICS]
    if mathematics.kind == "program" and not needs_runnable(mathematics):
        return store.chat_models(local_model, max_new_tokens=max_new_tokens)
    writer = local_model.chat_model(max_new_tokens=max(max_new_tokens, PROGRAM_MAX_NEW_TOKENS))
    if needs_runnable(mathematics):
        runnables = {MATHEMATICS: create_program_expert(writer, base)}
        return store.chat_models(local_model, runnables=runnables, max_new_tokens=max_new_tokens)
    experts = store.chat_models(local_model, max_new_tokens=max_new_tokens)
    experts[MATHEMATICS] = create_program_expert(writer, experts[MATHEMATICS])
    return experts


__all__ = [
    "BASE_SYSTEM_PROMPT",
    "DEFAULT_MAX_NEW_TOKENS",
    "MATHEMATICS",
    "PROGRAM_EXPERT_MODELS",
    "build_default_graph",
    "default_decomposer",
    "program_by_default",
    "program_mathematics",
]
