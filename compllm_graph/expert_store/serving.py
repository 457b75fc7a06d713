"""Stored experts as chat models, by kind: each adapter loaded once on the shared base model,
locally or as the LoRA of its name on OpenAI-compatible multi-LoRA servers (vLLM, `compllm
serve`); remote experts at their URL; local models by catalogue alias; and the Runnables of your
own code (agents, program experts) bound by name, or program experts on a catalogue model.

The store itself only stores; this module turns its `Expert` records into the `experts` mapping
that `create_compllm_graph` takes, and into the flags that make a vLLM server hold them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import SystemMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableLambda

from compllm_graph.adapter_folder import add_adapter_once, check_adapter_folder, same_base
from compllm_graph.expert_store.records import (
    BOUND_KINDS,
    Expert,
    ExpertKindError,
    StoreError,
    needs_runnable,
)
from compllm_graph.expert_store.retrieval import Retriever, lazy_embedder, with_retrieval
from compllm_graph.models.runnable_expert import as_expert, takes_messages
from compllm_graph.program_expert import PROGRAM_MAX_NEW_TOKENS, create_program_expert

if TYPE_CHECKING:
    from compllm_graph.expert_store.embedders import Embedder
    from compllm_graph.models import InferenceModel

REMOTE_SETTINGS = {
    "max_new_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
}
"""Local generation settings -> their OpenAI names, for `remote` experts; the others (beams,
grammars, logits processors) have no OpenAI equivalent and are not sent."""


def expert_chat_models(
    experts: Iterable[Expert],
    local_model: InferenceModel,
    *,
    runnables: Mapping[str, Runnable] | None = None,
    embedder: Callable[[], Embedder] | None = None,
    **generation: Any,
) -> dict[str, Runnable]:
    """The `experts` mapping for `create_compllm_graph`, one chat model per expert by its kind.

    - `adapter`: with an adapter, `local_model.chat_model(adapter=name)` (the adapter is loaded
      on first use); without, the base chat model.
    - `remote`: `remote_chat_model(url, model)` (the [remote] extra), with the settings of
      `generation` that an OpenAI server knows (`REMOTE_SETTINGS`).
    - `model`: the catalogue model's chat model; `local_model` itself when it is that alias,
      else loaded once per alias in this call (`load_model`, the [local] extra; to share a
      model across calls, load it yourself and give its chat model in `runnables`).
    - `program`: with a model, a program expert on that catalogue model (loaded as for `model`;
      see `_program_chat`); without, the Runnable given in `runnables`.
    - `runnable`: the Runnable given in `runnables`.

    A Runnable in `runnables` answers for its expert whatever the kind; one that is a LangGraph
    graph with a `messages` state is wrapped with `as_expert`. An expert's system prompt, if
    set, is put before every request, whoever answers; an expert with a retrieval set that is
    on (`k` above 0) gets its nearest training items before the sub-query
    (`retrieval.with_retrieval`).

    Args:
        experts: The stored experts (`store.experts()`).
        local_model: The loaded base model.
        runnables: Expert name -> Runnable; required for every `runnable` expert and
            `program` expert without a model, optional for the others.
        embedder: Returns the store's embedder, for retrieval (called on the first search);
            None builds one from the spec the set records.
        **generation: Generation settings passed to every chat model the store builds.

    Raises:
        StoreError: an adapter was trained on a different base model.
        ExpertKindError: a `runnable` expert or a `program` expert without a model has no
            Runnable, `runnables` names an unknown expert, or a value in it is not a Runnable.
    """
    experts = list(experts)
    given = bind_runnables(experts, runnables)
    loaded: dict[str, InferenceModel] = {}
    models: dict[str, Runnable] = {}
    embedders = _Embedders(embedder)
    for expert in experts:
        if expert.name in given:
            chat = given[expert.name]
        elif expert.kind == "remote":
            chat = _remote_chat(expert, remote_settings(generation))
        elif expert.kind == "model":
            chat = _catalogue_model(str(expert.model), local_model, loaded).chat_model(**generation)
        elif expert.kind == "program":  # with a model (needs_runnable): the store builds it
            on = _catalogue_model(str(expert.model), local_model, loaded)
            models[expert.name] = _program_chat(expert, on, generation)
            continue
        else:
            chat = _adapter_chat(expert, local_model, generation)
        models[expert.name] = _prompted(chat, expert, embedders)
    return models


class _Embedders:
    """The embedder each retrieval set needs: the given one, else one per spec, built once."""

    def __init__(self, given: Callable[[], Embedder] | None) -> None:
        self.given = given
        self.by_spec: dict[str, Callable[[], Embedder]] = {}

    def __call__(self, spec: str) -> Callable[[], Embedder]:
        if self.given is not None:
            return self.given
        return self.by_spec.setdefault(spec, lazy_embedder(spec))


def _prompted(chat: Runnable, expert: Expert, embedders: _Embedders) -> Runnable:
    """`chat` with the expert's retrieved examples, then its system prompt, before a request."""
    retrieval = expert.retrieval
    if retrieval is not None and retrieval.settings.on and expert.kind not in BOUND_KINDS:
        chat = with_retrieval(chat, Retriever(retrieval, embedders(retrieval.embedder)))
    return with_system_prompt(chat, expert.system_prompt)


def _program_chat(expert: Expert, model: InferenceModel, generation: Mapping[str, Any]) -> Runnable:
    """A `program` expert on `model`: it writes the programs (with at least
    `PROGRAM_MAX_NEW_TOKENS`, which a program needs to print), and answers itself, with the
    expert's system prompt, where no program works. The system prompt goes to that fallback
    only: the writer has the program prompt."""
    tokens = max(int(generation.get("max_new_tokens", 0)), PROGRAM_MAX_NEW_TOKENS)
    writer = model.chat_model(**{**generation, "max_new_tokens": tokens})
    fallback = with_system_prompt(model.chat_model(**generation), expert.system_prompt)
    return create_program_expert(writer, fallback)


def _adapter_chat(
    expert: Expert, local_model: InferenceModel, generation: Mapping[str, Any]
) -> Runnable:
    """An `adapter` expert on the shared base model: through its LoRA, or the base model."""
    if expert.adapter is None:
        return local_model.chat_model(**generation)
    if expert.base_model and not same_base(expert.base_model, local_model.name):
        raise StoreError(
            f"expert {expert.name!r} has an adapter for {expert.base_model!r}, but "
            f"the loaded model is {local_model.name!r}"
        )
    add_adapter_once(local_model, expert.name, expert.adapter)
    return local_model.chat_model(adapter=expert.name, **generation)


def _remote_chat(expert: Expert, settings: Mapping[str, Any]) -> Runnable:
    from compllm_graph.models.remote import remote_chat_model  # the [remote] extra

    return remote_chat_model(str(expert.url), str(expert.model), **settings)


def _catalogue_model(
    alias: str, local_model: InferenceModel, loaded: dict[str, InferenceModel]
) -> InferenceModel:
    """A `model` expert's model: the base model when it is that alias, else loaded once."""
    if alias == local_model.name:
        return local_model
    if alias not in loaded:
        loaded[alias] = load_catalogue_model(alias)
    return loaded[alias]


def load_catalogue_model(alias: str) -> InferenceModel:
    """Load a `model` expert's model by its catalogue alias (fetched on first use).

    Raises:
        MissingExtraError: the [local] extra is not installed.
        ModelLoadError: the model cannot be fetched or loaded.
    """
    from compllm_graph.models.loading import load_model  # the [local] extra

    return load_model(alias)


def remote_settings(generation: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of `generation` that an OpenAI server knows, under their OpenAI names."""
    return {
        REMOTE_SETTINGS[key]: value for key, value in generation.items() if key in REMOTE_SETTINGS
    }


def bind_runnables(
    experts: Iterable[Expert], runnables: Mapping[str, Runnable] | None
) -> dict[str, Runnable]:
    """Check `runnables` against the experts and wrap messages-state graphs with `as_expert`.

    Raises:
        ExpertKindError: an expert that `needs_runnable` has none (all such are named),
            `runnables` names an expert that is not among `experts`, or a value is not a
            Runnable.
    """
    experts = list(experts)
    runnables = dict(runnables or {})
    names = sorted(e.name for e in experts)
    unknown = sorted(set(runnables) - set(names))
    if unknown:
        raise ExpertKindError(
            f"runnables= names {unknown}, which are not experts here; experts: {names}"
        )
    missing = [e for e in experts if needs_runnable(e) and e.name not in runnables]
    if missing:
        listed = ", ".join(f"{e.name!r} ({e.kind})" for e in missing)
        example = ", ".join(f"{e.name!r}: ..." for e in missing)
        raise ExpertKindError(
            f"experts {listed} run a Runnable of your code, which the store does not keep: "
            f"give each one, e.g. store.chat_models(model, runnables={{{example}}})"
        )
    for name, runnable in runnables.items():
        if not isinstance(runnable, Runnable):
            raise ExpertKindError(
                f"runnables[{name!r}] must be a LangChain Runnable (a chat model, a compiled "
                f"LangGraph agent), got {type(runnable).__name__}"
            )
    return {
        name: as_expert(runnable, name=f"expert:{name}") if takes_messages(runnable) else runnable
        for name, runnable in runnables.items()
    }


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
    runnables: Mapping[str, Runnable] | None = None,
    embedder: Callable[[], Embedder] | None = None,
    **remote: Any,
) -> dict[str, Runnable]:
    """The `experts` mapping for `create_compllm_graph`, served by multi-LoRA servers.

    An `adapter` expert with an adapter is the LoRA of its own name on its server (start the
    server with `vllm_lora_args`); one without is the server's base model. A `remote` expert
    is served at its own URL; `program` and `runnable` experts, and any expert named in
    `runnables`, are bound as `expert_chat_models` binds them. A system prompt, if set, is put
    before every request, as `expert_chat_models` does locally. Chat models of one URL share
    that URL's concurrency limit (`remote_chat_model`), so experts split across servers get one
    limit per server.

    Args:
        experts: The stored experts (`store.experts()`).
        endpoints: One base URL (`http://host:8000/v1`) for every `adapter` expert, or expert
            name -> base URL when the experts are split across servers.
        base_model: The name the servers serve the base model under (vLLM
            `--served-model-name`).
        runnables: Expert name -> Runnable, as for `expert_chat_models`.
        embedder: Returns the store's embedder, for retrieval, as for `expert_chat_models`.
        **remote: Passed to every `remote_chat_model` (`max_concurrency`, `timeout`,
            `max_tokens`, ...).

    Raises:
        ValueError: an `adapter` expert has no endpoint in the mapping, or a bad URL or
            setting.
        ExpertKindError: a `model` expert, or a `program` expert on a model, with no Runnable
            given (a server of the base model does not serve another model), or a
            `runnables` problem (see `bind_runnables`).
    """
    from compllm_graph.models.remote import remote_chat_model

    experts = list(experts)
    given = bind_runnables(experts, runnables)
    models: dict[str, Runnable] = {}
    embedders = _Embedders(embedder)
    for expert in experts:
        if expert.name in given or expert.kind in ("remote", "model", "program"):
            chat = _own_chat(expert, given, remote)
            models[expert.name] = _prompted(chat, expert, embedders)
            continue
        url = endpoints if isinstance(endpoints, str) else endpoints.get(expert.name)
        if url is None:
            raise ValueError(
                f"no endpoint for expert {expert.name!r}; give one URL for all experts or map "
                f"each of them ({sorted(endpoints)} are mapped)"
            )
        served = expert.name if expert.adapter is not None else base_model
        chat = remote_chat_model(url, served, **remote)
        models[expert.name] = _prompted(chat, expert, embedders)
    return models


def _own_chat(expert: Expert, given: Mapping[str, Runnable], remote: Mapping[str, Any]) -> Runnable:
    """An expert that the base model's servers do not serve: given, remote, or an error."""
    if expert.name in given:
        return given[expert.name]
    if expert.kind == "remote":
        return _remote_chat(expert, remote)
    raise ExpertKindError(
        f"expert {expert.name!r} runs the local model {expert.model!r}, which the servers of "
        f"the base model do not serve: serve it on its own and add the expert as kind "
        f"'remote', or pass runnables={{{expert.name!r}: its chat model}}"
    )


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
    "REMOTE_SETTINGS",
    "bind_runnables",
    "expert_chat_models",
    "load_catalogue_model",
    "remote_expert_chat_models",
    "remote_settings",
    "vllm_lora_args",
    "with_system_prompt",
]
