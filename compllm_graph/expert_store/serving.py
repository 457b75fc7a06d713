"""Stored experts as chat models: each adapter loaded once on the shared base model.

The store itself only stores; this module turns its `Expert` records into the `experts` mapping
that `create_compllm_graph` takes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from langchain_core.messages import SystemMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableLambda

from compllm_graph.adapter_folder import same_base
from compllm_graph.expert_store.records import Expert, StoreError

if TYPE_CHECKING:
    from compllm_graph.models.loading import InferenceModel


def expert_chat_models(
    experts: Iterable[Expert], local_model: InferenceModel, **generation: Any
) -> dict[str, Runnable]:
    """The `experts` mapping for `create_compllm_graph`, served by `local_model`.

    An expert with an adapter gets `local_model.chat_model(adapter=name)` (the adapter is
    loaded on first use); one without gets the base chat model. A system prompt, if set, is
    put before every request.

    Args:
        experts: The stored experts (`store.experts()`).
        local_model: The loaded base model.
        **generation: Generation settings passed to every chat model.

    Raises:
        StoreError: an adapter was trained on a different base model.
    """
    models: dict[str, Runnable] = {}
    for expert in experts:
        if expert.adapter is not None:
            if expert.base_model and not same_base(expert.base_model, local_model.name):
                raise StoreError(
                    f"expert {expert.name!r} has an adapter for {expert.base_model!r}, but "
                    f"the loaded model is {local_model.name!r}"
                )
            if expert.name not in loaded_adapters(local_model):
                local_model.add_adapter(expert.name, expert.adapter)
            chat: Runnable = local_model.chat_model(adapter=expert.name, **generation)
        else:
            chat = local_model.chat_model(**generation)
        models[expert.name] = with_system_prompt(chat, expert.system_prompt)
    return models


def loaded_adapters(local_model: Any) -> set[str]:
    adapters = getattr(local_model, "adapters", None)
    if callable(adapters):
        adapters = adapters()
    return set(adapters or ())


def with_system_prompt(chat: Runnable, system_prompt: str | None) -> Runnable:
    """`chat` with `system_prompt` put first in every request (unchanged when None)."""
    if not system_prompt:
        return chat

    def prepend(request: Any) -> list[Any]:
        messages = convert_to_messages([request] if isinstance(request, str) else request)
        return [SystemMessage(system_prompt), *messages]

    return RunnableLambda(prepend, name="system_prompt") | chat


__all__ = ["expert_chat_models", "loaded_adapters", "with_system_prompt"]
