"""`TransformersModel`: a model on the transformers engine that hands out batched chat models.

One set of weights serves any number of LoRA adapters. The llama.cpp engine's counterpart is
`LlamaCppModel`. `LocalModel` is this class's old name, kept as an alias.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compllm_graph.adapter_folder import (
    AdapterError,
    check_adapter_folder,
    check_adapter_name,
    same_base,
)
from compllm_graph.models.batching import Batcher
from compllm_graph.models.chat import LocalChatModel, chat_model_for, chat_turns, transcript

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage


class TransformersModel:
    """A causal LM plus tokenizer loaded by transformers that hands out batched chat models.

    Attributes:
        tokenizer: the Hugging Face tokenizer.
        name: alias, folder name or hub id the model was loaded from.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        max_batch_size: int = 8,
        max_wait_ms: float = 5.0,
    ) -> None:
        """Wrap an already loaded model.

        Args:
            model: a transformers causal LM (put in eval mode here).
            tokenizer: its tokenizer.
            name: display name.
            max_batch_size: most requests coalesced into one `generate` call.
            max_wait_ms: how long the batcher waits for more requests after the first.
        """
        model.eval()
        self._model = model
        self.tokenizer = tokenizer
        self.name = name
        self._adapters: dict[str, Path] = {}
        self._lock = threading.RLock()
        self.batcher = Batcher(
            lambda: self._model,
            tokenizer,
            self._lock,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
        )

    def __repr__(self) -> str:
        return f"TransformersModel(name={self.name!r}, adapters={list(self._adapters)})"

    @property
    def model(self) -> Any:
        """The transformers module, wrapped in a peft `PeftModel` once an adapter is added."""
        return self._model

    def exclusive(self) -> AbstractContextManager[Any]:
        """Hold the model away from the batch worker, e.g. `with local.exclusive(): ...`.

        Use it around any direct use of `model` that changes adapter state (such as
        `disable_adapter()`), so that concurrent chat calls never see the change.
        """
        return self._lock

    @property
    def context_length(self) -> int:
        """Most tokens of prompt plus answer the model takes (its position embeddings)."""
        config = getattr(self._model, "config", None)
        return int(getattr(config, "max_position_embeddings", 0) or 2048)

    @property
    def adapters(self) -> tuple[str, ...]:
        """Names of the loaded adapters."""
        return tuple(self._adapters)

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Load a LoRA adapter (safetensors only) that chat models can then select by name.

        Args:
            name: adapter name: a letter, then letters, digits, `_` or `-` (64 chars max).
            path: folder with `adapter_config.json` and `adapter_model.safetensors`.

        Raises:
            AdapterError: unsafe or duplicate name, missing files, `.bin` (pickle) weights,
                a non-LoRA adapter, or weights that do not fit this model.
        """
        folder = _check_adapter(name, Path(path), self._adapters)
        from peft import PeftModel

        # The lock keeps the batch worker out of the model while peft injects layers.
        with self._lock, warnings.catch_warnings():
            # peft 0.21 calls a transformers 5 API deprecated for v6; not actionable here.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            try:
                if isinstance(self._model, PeftModel):
                    self._model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
                else:
                    self._model = PeftModel.from_pretrained(
                        self._model, str(folder), adapter_name=name
                    )
            except (ValueError, RuntimeError, KeyError) as exc:
                raise AdapterError(
                    f"adapter {name!r} at {folder} does not fit {self.name}: {exc}"
                ) from exc
            self._model.eval()
            self._adapters[name] = folder

    def chat_model(self, adapter: str | None = None, **generation: Any) -> LocalChatModel:
        """A LangChain chat model over this model's weights, optionally through an adapter.

        Args:
            adapter: name given to `add_adapter`, or None for the base model.
            **generation: `max_new_tokens`, `stop`, `do_sample`, `temperature`,
                `top_p`, `top_k`, `seed`, `logits_processor`, `num_beams`.

        Raises:
            AdapterError: `adapter` has not been added.
        """
        return chat_model_for(self, self.adapters, adapter, **generation)

    def encode_chat(self, messages: Sequence[BaseMessage]) -> list[int]:
        """Token ids of `messages` through the chat template, ending with the assistant cue.

        Tokenizers without a chat template get a plain `role: text` transcript.
        """
        turns = chat_turns(messages)
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template(
                turns, tokenize=False, add_generation_prompt=True
            )
        else:
            prompt = transcript(turns)
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])


def _check_adapter(name: str, folder: Path, loaded: dict[str, Path]) -> Path:
    """Validate an adapter name and folder before peft touches it."""
    check_adapter_name(name, loaded)
    return check_adapter_folder(folder)[0]


LocalModel = TransformersModel
"""The old name of `TransformersModel`, kept so that existing imports work."""

__all__ = ["AdapterError", "LocalModel", "TransformersModel", "same_base"]
