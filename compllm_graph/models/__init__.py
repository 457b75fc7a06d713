"""Local model runtime: PyPI-shipped GGUF models, LoRA adapters, batched LangChain chat models.

`load_model` gives a `LlamaCppModel` (the llama.cpp engine) or a `TransformersModel` (the
transformers engine); `InferenceModel` is either. Names load on first use, so
`from compllm_graph.models import remote_chat_model` needs only the [remote] extra, and the
catalogue and cache helpers need nothing beyond the core.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from compllm_graph.adapter_folder import AdapterError
    from compllm_graph.models.catalogue import CATALOGUE, DEFAULT_MODEL, SMALL_MODEL
    from compllm_graph.models.chat import LocalChatModel
    from compllm_graph.models.download import ChecksumError, FetchError, fetch, home, is_cached
    from compllm_graph.models.llama_model import LlamaCppModel
    from compllm_graph.models.loading import ModelLoadError, load_model
    from compllm_graph.models.local import LocalModel, TransformersModel
    from compllm_graph.models.remote import remote_chat_model

InferenceModel: TypeAlias = "TransformersModel | LlamaCppModel"
"""A loaded model of either engine; both hand out chat models and take adapters alike.

A type alias for annotations (at run time it is a string, so importing it loads no engine).
"""

_HOMES = {
    "AdapterError": "compllm_graph.adapter_folder",
    "CATALOGUE": "compllm_graph.models.catalogue",
    "DEFAULT_MODEL": "compllm_graph.models.catalogue",
    "SMALL_MODEL": "compllm_graph.models.catalogue",
    "ChecksumError": "compllm_graph.models.download",
    "FetchError": "compllm_graph.models.download",
    "fetch": "compllm_graph.models.download",
    "home": "compllm_graph.models.download",
    "is_cached": "compllm_graph.models.download",
    "LlamaCppModel": "compllm_graph.models.llama_model",
    "LocalChatModel": "compllm_graph.models.chat",
    "LocalModel": "compllm_graph.models.local",
    "TransformersModel": "compllm_graph.models.local",
    "ModelLoadError": "compllm_graph.models.loading",
    "load_model": "compllm_graph.models.loading",
    "remote_chat_model": "compllm_graph.models.remote",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "CATALOGUE",
    "DEFAULT_MODEL",
    "SMALL_MODEL",
    "AdapterError",
    "ChecksumError",
    "FetchError",
    "InferenceModel",
    "LlamaCppModel",
    "LocalChatModel",
    "LocalModel",
    "ModelLoadError",
    "TransformersModel",
    "fetch",
    "home",
    "is_cached",
    "load_model",
    "remote_chat_model",
]
