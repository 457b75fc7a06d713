"""Stored experts as chat models: each adapter loaded once on the shared base model, locally
or as the LoRA of its name on OpenAI-compatible multi-LoRA servers (vLLM, `compllm serve`).

The store itself only stores; this module turns its `Expert` records into the `experts` mapping
that `create_compllm_graph` takes, and into the flags that make a vLLM server hold them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import SystemMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableLambda

from compllm_graph.adapter_folder import check_adapter_folder, same_base
from compllm_graph.expert_store.records import Expert, StoreError

if TYPE_CHECKING:
    from compllm_graph.models import InferenceModel


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


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for `--max-lora-rank`."""


def remote_expert_chat_models(
    experts: Iterable[Expert],
    endpoints: str | Mapping[str, str],
    *,
    base_model: str,
    **remote: Any,
) -> dict[str, Runnable]:
    """The `experts` mapping for `create_compllm_graph`, served by multi-LoRA servers.

    An expert with an adapter is the LoRA of its own name on its server (start the server with
    `vllm_lora_args`); one without is the server's base model. A system prompt, if set, is put
    before every request, as `expert_chat_models` does locally. Chat models of one URL share
    that URL's concurrency limit (`remote_chat_model`), so experts split across servers get one
    limit per server.

    Args:
        experts: The stored experts (`store.experts()`).
        endpoints: One base URL (`http://host:8000/v1`) for every expert, or expert name ->
            base URL when the experts are split across servers.
        base_model: The name the servers serve the base model under (vLLM
            `--served-model-name`).
        **remote: Passed to every `remote_chat_model` (`max_concurrency`, `timeout`,
            `max_tokens`, ...).

    Raises:
        ValueError: an expert has no endpoint in the mapping, or a bad URL or setting.
    """
    from compllm_graph.models.remote import remote_chat_model

    models: dict[str, Runnable] = {}
    for expert in experts:
        url = endpoints if isinstance(endpoints, str) else endpoints.get(expert.name)
        if url is None:
            raise ValueError(
                f"no endpoint for expert {expert.name!r}; give one URL for all experts or map "
                f"each of them ({sorted(endpoints)} are mapped)"
            )
        served = expert.name if expert.adapter is not None else base_model
        chat = remote_chat_model(url, served, **remote)
        models[expert.name] = with_system_prompt(chat, expert.system_prompt)
    return models


def vllm_lora_args(experts: Iterable[Expert]) -> list[str]:
    """The `vllm serve` flags that load these experts' adapters under their names.

    Returns:
        `--enable-lora --max-loras N --max-lora-rank R --lora-modules name=DIR ...`, with R the
        smallest rank vLLM accepts that holds every adapter's rank.

    Raises:
        StoreError: none of the experts has an adapter.
        AdapterError: an adapter folder is missing or is not a safetensors LoRA.
    """
    adapters = [(e.name, *check_adapter_folder(e.adapter)) for e in experts if e.adapter]
    if not adapters:
        raise StoreError("none of these experts has an adapter: there is nothing to serve as LoRA")
    rank = max(int(config.get("r", 8)) for _, _, config in adapters)
    max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    modules = [f"{name}={folder}" for name, folder, _ in adapters]
    return [
        "--enable-lora",
        "--max-loras",
        str(len(adapters)),
        "--max-lora-rank",
        str(max_rank),
        "--lora-modules",
        *modules,
    ]


__all__ = [
    "expert_chat_models",
    "loaded_adapters",
    "remote_expert_chat_models",
    "vllm_lora_args",
    "with_system_prompt",
]
