"""Local model runtime: PyPI-shipped GGUF models, LoRA adapters, batched LangChain chat models."""

from compllm_graph.models.catalogue import CATALOGUE, DEFAULT_MODEL
from compllm_graph.models.chat import LocalChatModel
from compllm_graph.models.download import ChecksumError, FetchError, fetch, home, is_cached
from compllm_graph.models.loading import ModelLoadError, load_model
from compllm_graph.models.local import AdapterError, LocalModel

__all__ = [
    "CATALOGUE",
    "DEFAULT_MODEL",
    "AdapterError",
    "ChecksumError",
    "FetchError",
    "LocalChatModel",
    "LocalModel",
    "ModelLoadError",
    "fetch",
    "home",
    "is_cached",
    "load_model",
]
