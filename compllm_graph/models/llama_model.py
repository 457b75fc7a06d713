"""`LlamaCppModel`: a GGUF model on llama.cpp with the interface of `TransformersModel`.

Chat models, adapters, stop strings, streaming and token usage work as on the transformers
engine (`chat_model(adapter=...)`, `add_adapter(name, peft_folder)`), so the graph, the CLI,
`compllm serve` and Studio switch engines with one argument of `load_model`. What needs the
model's tensors (training, beam search, hidden-state embedders) stays on the transformers engine.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compllm_graph._extras import requires
from compllm_graph.adapter_folder import check_adapter_name
from compllm_graph.models.chat import LocalChatModel, chat_model_for, chat_turns, transcript
from compllm_graph.models.gguf_lora import BaseShape, cached_conversion
from compllm_graph.models.llama_engine import LlamaEngine
from compllm_graph.models.lookup import LookupConfig

with requires("local"):
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage


class LlamaCppModel:
    """One GGUF model on llama.cpp that hands out chat models, one per adapter.

    Args:
        engine: The loaded engine.
        name: Alias or file name the model was loaded from.
        cache_dir: Where converted adapters go when an adapter folder is read-only.
        lookup: Prompt-lookup decoding for the greedy chat models this model hands out, unless
            `chat_model(lookup=...)` says otherwise (None: plain decoding; settable later as
            the `lookup` attribute). It pays only where answers copy their prompt: see the
            "Local models and engines" page.
    """

    def __init__(
        self,
        engine: LlamaEngine,
        *,
        name: str,
        cache_dir: Path,
        lookup: LookupConfig | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        self.lookup = lookup
        self._cache_dir = cache_dir
        self._adapters: dict[str, Path] = {}
        self._lock = threading.Lock()
        template = engine.metadata("tokenizer.chat_template")
        self._template = _compile(template, engine) if template else None
        self._shape = BaseShape(
            architecture=engine.metadata("general.architecture") or "llama",
            heads=_int(engine, "attention.head_count"),
            kv_heads=_int(engine, "attention.head_count_kv"),
        )

    def __repr__(self) -> str:
        return f"LlamaCppModel(name={self.name!r}, adapters={list(self._adapters)})"

    @property
    def batcher(self) -> LlamaEngine:
        """Where chat models send requests (the engine's continuous batcher)."""
        return self.engine

    @property
    def adapters(self) -> tuple[str, ...]:
        """Names of the loaded adapters."""
        return tuple(self._adapters)

    @property
    def context_length(self) -> int:
        """Most tokens of prompt plus answer one request may use."""
        return self.engine.n_ctx

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Load a peft LoRA adapter (safetensors only), converted to a GGUF LoRA once and cached.

        Args:
            name: A letter, then letters, digits, `_` or `-` (64 characters at most).
            path: Folder with `adapter_config.json` and `adapter_model.safetensors`.

        Raises:
            AdapterError: unsafe or duplicate name, missing files, pickle weights, or a
                non-LoRA adapter.
            LoraConversionError: the adapter uses what a GGUF LoRA cannot express.
            EngineError: llama.cpp refused the converted adapter (it does not fit the model).
        """
        with self._lock:
            check_adapter_name(name, self._adapters)
            gguf_file = cached_conversion(path, self._shape, self._cache_dir)
            self.engine.load_adapter(name, gguf_file)
            self._adapters[name] = Path(path).resolve()

    def chat_model(self, adapter: str | None = None, **generation: Any) -> LocalChatModel:
        """A LangChain chat model over this model, optionally through an adapter.

        Args:
            adapter: A name given to `add_adapter`, or None for the base model.
            **generation: `max_new_tokens`, `stop`, `do_sample`, `temperature`, `top_p`,
                `top_k`, `seed`, `grammar` (GBNF), `lookup` (a `LookupConfig`, or None for
                plain decoding; default: this model's `lookup`).

        Raises:
            AdapterError: `adapter` has not been added.
        """
        generation.setdefault("lookup", self.lookup)
        return chat_model_for(self, self.adapters, adapter, **generation)

    def encode_chat(self, messages: Sequence[BaseMessage]) -> list[int]:
        """Token ids of `messages` through the GGUF's own chat template, with the assistant cue.

        Models without a template get a plain `role: text` transcript, as on transformers.
        """
        turns = chat_turns(messages)
        if self._template is not None:
            prompt = self._template.render(messages=turns, add_generation_prompt=True)
        else:
            prompt = transcript(turns)
        return self.engine.tokenize(prompt)

    def close(self) -> None:
        """Free the model, its contexts and adapters."""
        self.engine.close()


def _int(engine: LlamaEngine, key: str) -> int:
    architecture = engine.metadata("general.architecture") or "llama"
    value = engine.metadata(f"{architecture}.{key}")
    return int(value) if value else 1


def _raise(message: str) -> None:
    raise ValueError(message)


def _compile(template: str, engine: LlamaEngine) -> Template:
    """A Hugging Face chat template compiled as transformers does (sandboxed Jinja), once."""
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = _raise
    environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    special = {
        "bos_token": engine.piece(engine.bos, special=True).decode("utf-8", "replace"),
        "eos_token": engine.piece(engine.eos, special=True).decode("utf-8", "replace"),
    }
    return environment.from_string(template, globals=special)


__all__ = ["LlamaCppModel"]
