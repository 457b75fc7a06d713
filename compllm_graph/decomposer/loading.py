"""Loading a decomposer: the adapters of the installed expert packs, their `training.json`
records, and the chat model."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compllm_graph.adapter_folder import add_adapter_once, same_base
from compllm_graph.decomposer.prompts import DECOMPOSER_PROMPT, DECOMPOSER_SYSTEM_PROMPT
from compllm_graph.models.catalogue import DEFAULT_MODEL
from compllm_graph.packs import installed_packs, missing_pack_message, pack_for

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from compllm_graph.models import InferenceModel

BASE_MODEL = DEFAULT_MODEL
"""The default model's alias."""

TRAINING_RECORD = "training.json"
"""Written beside every trained adapter: data, hyper-parameters, wall time and metrics."""

DECOMPOSER_MAX_NEW_TOKENS = 512
DECOMPOSER_TOKENS_PER_PROMPT_TOKEN = 1.25
"""A decomposition copies the question's parts into its sub-queries: a long question (a part
with its abstract) gets this many tokens per prompt token when that is more than
`DECOMPOSER_MAX_NEW_TOKENS`. At 512 tokens alone, 14 of the easy tier's 200 P-2 questions on
Qwen2.5-Coder-0.5B were cut off mid-sub-query and answered whole."""


def shipped() -> dict[str, Path]:
    """The decomposer adapter of every installed expert pack, by the alias of its model
    (not verified: `adapter_for` verifies the pack it answers from)."""
    found: dict[str, Path] = {}
    for pack in installed_packs():
        folder = pack.decomposer()
        if folder is not None:
            found.setdefault(pack.model, folder)
    return found


def adapter_for(model: str) -> Path | None:
    """The decomposer adapter folder of the installed expert pack for a model alias, or None
    when no installed pack has one.

    Raises:
        PackError: the pack's files fail their sha256 check (`compllm_graph.packs`).
    """
    pack = pack_for(model)
    return pack.decomposer() if pack is not None else None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from `path`.

    Raises:
        ValueError: the file is unreadable or holds something else than an object.
    """
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is unreadable ({exc}); re-train or remove it") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path} is not a JSON object; re-train or remove it")
    return value


def read_training_record(folder: Path) -> dict[str, Any]:
    """`training.json` beside an adapter (empty when there is none).

    Raises:
        ValueError: it is unreadable or not a JSON object.
    """
    path = folder / TRAINING_RECORD
    return read_json_object(path) if path.is_file() else {}


def default_decomposer(
    local_model: InferenceModel, adapter: str | Path | None = None, beams: int = 1
) -> tuple[Runnable, str | None]:
    """A trained decomposer adapter where one fits the model, else the few-shot prompt.

    Either way decoding is constrained to the tag grammar, so the output always parses: it raised
    the shipped adapter's MuSiQue sub-query F1 from 0.75 to 0.77 (see README).

    Args:
        local_model: The loaded base model.
        adapter: A folder written by `compllm train decomposer`; by default the adapter of
            the installed expert pack for `local_model` (`adapter_for`), if there is one (with a
            warning naming the pack to install where this repository has one for the model).
        beams: Beam-search width for the decomposition; 1 is greedy (see README for what
            wider beams gain and cost).

    Returns:
        The decomposer chat model and the system prompt to send it.

    Raises:
        ValueError: `adapter` was trained on another base model, or its `training.json` is
            unreadable (`AdapterError`, a `ValueError`, for a folder that is not a LoRA
            adapter), or `beams` is below 1; `PackError` (a `ValueError`) when the expert
            pack's files fail their sha256 check.
    """
    # The grammar needs torch; importing it here keeps this module loadable without [local].
    from compllm_graph.decomposer.grammar import tag_grammar_factory, tag_grammar_gbnf
    from compllm_graph.models.local import TransformersModel

    if beams < 1:
        raise ValueError(f"decomposer beams must be >= 1 (1 is greedy decoding), got {beams}")
    if beams > 1 and not isinstance(local_model, TransformersModel):
        raise ValueError(
            "decomposer beam search runs on the transformers engine: load the model with "
            "engine='transformers' (`compllm ask --engine transformers`), or use beams=1"
        )
    if adapter is None:
        adapter = adapter_for(local_model.name)
        missing = missing_pack_message(local_model.name) if adapter is None else None
        if missing is not None:
            warnings.warn(
                f"{missing}; the decomposer falls back to the few-shot prompt", stacklevel=2
            )
    name, prompt = None, DECOMPOSER_PROMPT
    if adapter is not None:
        name, prompt = _load_adapter(local_model, Path(adapter))
    constraint: dict[str, Any] = (
        {"logits_processor": tag_grammar_factory(local_model.tokenizer), "num_beams": beams}
        if isinstance(local_model, TransformersModel)
        else {"grammar": tag_grammar_gbnf()}
    )
    chat = local_model.chat_model(
        adapter=name,
        max_new_tokens=DECOMPOSER_MAX_NEW_TOKENS,
        tokens_per_prompt_token=DECOMPOSER_TOKENS_PER_PROMPT_TOKEN,
        **constraint,
    )
    return chat, prompt


def _load_adapter(local_model: InferenceModel, folder: Path) -> tuple[str, str]:
    """Load a decomposer adapter once per folder; returns its adapter name and system prompt."""
    record = read_training_record(folder)
    base = record.get("base")
    if isinstance(base, str) and not same_base(base, local_model.name):
        raise ValueError(
            f"the decomposer adapter at {folder} was trained on {base!r}, not on "
            f"{local_model.name!r}, the model the decomposer runs on: load that model "
            f"(`--model {base}`), or run only the decomposer on it (`--decomposer-model {base}`, "
            f"`build_default_graph(..., decomposer_model={base!r})`), or train an adapter for "
            f"{local_model.name!r}"
        )
    prompt = record.get("system_prompt", DECOMPOSER_SYSTEM_PROMPT)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{folder}/training.json has no usable system_prompt; re-train or fix it")
    is_shipped = folder.resolve() in shipped().values()
    # One name per folder, so two decomposers can share a model without overwriting each other.
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]
    name = "decomposer" if is_shipped else f"decomposer_{digest}"
    add_adapter_once(local_model, name, folder)
    return name, prompt


__all__ = [
    "BASE_MODEL",
    "TRAINING_RECORD",
    "adapter_for",
    "default_decomposer",
    "read_training_record",
    "shipped",
]
