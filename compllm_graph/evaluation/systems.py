"""The systems `compllm eval answers` compares, built on one loaded base model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import Runnable

from compllm_graph.decomposer.loading import TRAINING_RECORD
from compllm_graph.defaults import BASE_SYSTEM_PROMPT, build_default_graph, program_mathematics
from compllm_graph.evaluation.all_experts import all_experts_answerer
from compllm_graph.evaluation.answers import (
    ALL_DOMAINS_EXPERT,
    ALL_EXPERTS,
    Answerer,
    check_system,
    graph_answerer,
    monolith_answerer,
    one_expert_router,
    oracle_router,
    random_router,
)
from compllm_graph.expert_store import ExpertStore, demo_store
from compllm_graph.expert_store.demo import shipped_experts
from compllm_graph.expert_store.serving import with_system_prompt
from compllm_graph.models import DEFAULT_MODEL, InferenceModel, load_model


def load_for_eval(args: argparse.Namespace) -> InferenceModel:
    """The base model of `--model`, `--engine`, `--threads` and `--max-batch-size`; with
    `--endpoint`, the server's (`endpoints.remote_model`)."""
    if getattr(args, "endpoint", None):
        return _served(args)
    return _load(args, args.model or DEFAULT_MODEL)


def _load(args: argparse.Namespace, alias: str) -> InferenceModel:
    """`alias` on the in-process engine the command's options choose."""
    batch = getattr(args, "max_batch_size", None)
    options = {} if batch is None else {"max_batch_size": batch}
    return load_model(alias, engine=args.engine, n_threads=args.threads, **options)


def _served(args: argparse.Namespace) -> InferenceModel:
    """The endpoint's `RemoteModel`, typed as the loaded model it stands in for."""
    from compllm_graph.evaluation.endpoints import remote_model  # the [remote] extra

    # A RemoteModel has what the systems use of a loaded model (name, adapters, add_adapter,
    # chat_model); the builders' annotations name only the two local engines.
    return cast("InferenceModel", remote_model(args))


def store_for_eval(args: argparse.Namespace, model: InferenceModel) -> ExpertStore:
    """`--store`, or the model's demo store."""
    return ExpertStore.open(args.store) if args.store else demo_store(model.name)


def build_answerer(args: argparse.Namespace, settings: Mapping[str, Any] | None = None) -> Answerer:
    """The answerer of `args.system` (see `answers` for what each system is).

    Args:
        args: The parsed `compllm eval answers` arguments.
        settings: The pipeline's settings (`answer_commands.answer_settings`): `aggregate`,
            `split_questions`, `split_chains`, `carry_premise`, for the systems that route to
            the store's experts `program_expert`, and `decomposer_model` (an alias, loaded as
            the base model is, with `--engine` and `--threads`); each one left out takes
            `build_default_graph`'s default.

    Raises:
        ValueError: an unknown system, `ft` or `one-adapter` without an all-domains adapter,
            `all-experts` with a store of no expert, `program_expert` with a store of no
            `mathematics` expert, or a `--decomposer-adapter` trained on another base than the
            decomposer's model.
    """
    system = check_system(args.system)
    settings = dict(settings or {})
    # `all-experts` builds the store's experts itself; the other pipelines leave it to the graph.
    program_expert = bool(system == "all-experts" and settings.pop("program_expert", False))
    decomposer_alias = settings.pop("decomposer_model", None)
    model = load_for_eval(args)
    tokens = args.max_new_tokens
    # The monolith, FT and the pipeline's base model get the same prompt (or all none).
    base_prompt = None if args.no_base_prompt else BASE_SYSTEM_PROMPT
    if system in ("monolith", "ft"):
        # FT is the monolith asked through the all-domains adapter: nothing else differs.
        adapter = all_domains_adapter(args, model)[0] if system == "ft" else None
        return monolith_answerer(
            lambda answers: with_system_prompt(
                model.chat_model(adapter=adapter, max_new_tokens=tokens * answers), base_prompt
            )
        )
    store = store_for_eval(args, model)
    names = [e.name for e in store.experts()]
    decomposing = _decomposer_model(args, decomposer_alias, model)

    def pipeline(**overrides: Any) -> Runnable:
        return build_default_graph(
            model,
            store,
            max_new_tokens=tokens,
            decomposer_model=decomposing,
            decomposer_adapter=args.decomposer_adapter,
            base_system_prompt=base_prompt,
            **settings,
            **overrides,
        ).compile()

    if system == "compllm":
        graph = pipeline()
        return graph_answerer(lambda record: graph)
    if system == "random-router":
        graph = pipeline(router=random_router(names, args.seed))
        return graph_answerer(lambda record: graph)
    if system == "one-adapter":
        graph = pipeline(
            experts={ALL_DOMAINS_EXPERT: all_domains_model(args, model, tokens)},
            router=one_expert_router(ALL_DOMAINS_EXPERT),
        )
        return graph_answerer(lambda record: graph)
    if system == "all-experts":
        return all_experts_answerer(
            lambda combined: pipeline(
                experts={ALL_EXPERTS: combined}, router=one_expert_router(ALL_EXPERTS)
            ),
            _store_experts(store, model, tokens, base_prompt, program_expert),
            judge=with_system_prompt(model.chat_model(max_new_tokens=tokens), base_prompt),
        )
    return _oracle(pipeline, names)


def _decomposer_model(
    args: argparse.Namespace, alias: str | None, model: InferenceModel
) -> InferenceModel | None:
    """The model the pipeline's decomposer runs on: `alias` loaded on the engine the base
    model's options choose; `model` itself when `alias` names `--model` (not loaded
    twice); None (the base model) without `alias`. (`run_answers` refuses `alias` with
    `--endpoint` before any model loads.)
    """
    if alias is None:
        return None
    if alias == (args.model or DEFAULT_MODEL):
        return model
    return _load(args, alias)


def _store_experts(
    store: ExpertStore,
    model: InferenceModel,
    tokens: int,
    base_prompt: str | None,
    program_expert: bool,
) -> dict[str, Runnable]:
    """The store's experts as `all-experts` asks them, `mathematics` by program if asked."""
    if not program_expert:
        return store.chat_models(model, max_new_tokens=tokens)
    base = with_system_prompt(model.chat_model(max_new_tokens=tokens), base_prompt)
    return program_mathematics(store, model, base, tokens)


def _oracle(pipeline: Any, names: list[str]) -> Answerer:
    """A graph per record, routed by its gold parts (several records may be in flight)."""
    return graph_answerer(lambda record: pipeline(router=oracle_router(record, names)))


def all_domains_adapter(args: argparse.Namespace, model: InferenceModel) -> tuple[str, Path]:
    """Add the all-domains adapter (`--all-domains-adapter`, else the one shipped) to `model`.

    Returns:
        The adapter's name on `model` (`ALL_DOMAINS_EXPERT`) and its folder.

    Raises:
        ValueError: no `--all-domains-adapter` and none shipped for the model.
    """
    folder = args.all_domains_adapter or shipped_experts(model.name).get(ALL_DOMAINS_EXPERT)
    if folder is None:
        raise ValueError(
            f"no {ALL_DOMAINS_EXPERT!r} adapter ships for {model.name!r}: train one with "
            f"`compllm train expert {ALL_DOMAINS_EXPERT} ...` and pass --all-domains-adapter DIR"
        )
    model.add_adapter(ALL_DOMAINS_EXPERT, Path(folder))
    return ALL_DOMAINS_EXPERT, Path(folder)


def all_domains_model(args: argparse.Namespace, model: InferenceModel, tokens: int) -> Runnable:
    """`one-adapter`'s expert: the all-domains adapter with its training system prompt.

    Raises:
        ValueError: no `--all-domains-adapter` and none shipped for the model.
    """
    name, folder = all_domains_adapter(args, model)
    chat = model.chat_model(adapter=name, max_new_tokens=tokens)
    return with_system_prompt(chat, trained_system_prompt(folder))


def trained_system_prompt(folder: Path) -> str | None:
    """The system prompt an adapter was trained with (its `training.json`), if any."""
    try:
        record = json.loads((folder / TRAINING_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    prompt = record.get("system_prompt") if isinstance(record, dict) else None
    return prompt if isinstance(prompt, str) and prompt else None


__all__ = [
    "all_domains_adapter",
    "all_domains_model",
    "build_answerer",
    "load_for_eval",
    "store_for_eval",
]
