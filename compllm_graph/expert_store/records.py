"""What the expert store holds: the `Expert` record, its kinds, valid names and thresholds, and
its errors."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import numpy as np

from compllm_graph.errors import CompLLMError
from compllm_graph.models.catalogue import CATALOGUE
from compllm_graph.types import BASE

DEFAULT_THRESHOLD = 0.7
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_RETRIEVAL_K = 16
"""The most training items an expert's prompt may show (each one lengthens every prompt)."""

ExpertKind = Literal["adapter", "remote", "model", "program", "runnable"]
"""What answers for an expert.

- `adapter`: the shared base model through the expert's LoRA adapter (or, with none, the base
  model with the expert's system prompt). What every store held before kinds existed, and what
  an `expert.json` without a `kind` reads as.
- `remote`: a model behind an OpenAI-compatible URL (`url`), under its served name (`model`).
- `model`: another local model, a catalogue alias (`model`, e.g. `qwen2.5-coder-1.5b-instruct`),
  loaded when the experts are built.
- `program`: a program expert (`create_program_expert`): built in your code, or, with a
  catalogue alias (`model`), built by the store on that model (it writes the programs, and
  answers with the expert's system prompt when no program works).
- `runnable`: any other Runnable built in your code: a LangGraph agent with tools, a subgraph,
  a chain.

The store keeps a `runnable` expert's (and a `program` expert's without a model) routing data
and description only; its Runnable is given when the graph is built
(`store.chat_models(model, runnables={...})`).
"""

BOUND_KINDS: tuple[ExpertKind, ...] = ("program", "runnable")
"""Kinds whose Runnable may live in user code, bound when the experts are built
(`needs_runnable` says which experts of them must be given one)."""


class StoreError(CompLLMError, RuntimeError):
    """A store operation cannot be done (missing store, unknown or duplicate expert, bad input)."""


class CorruptStoreError(StoreError):
    """The store on disk is damaged or partially written."""


class ExpertKindError(StoreError, ValueError):
    """An expert's kind does not fit what the call gives it: an unknown kind, a `remote` expert
    without its URL, an adapter for a kind that takes none, a `runnable` expert without its
    Runnable."""


@dataclass(frozen=True)
class RetrievalSettings:
    """How many of an expert's own training items its prompt shows, and how close they must be.

    The items shown are the `k` nearest to the sub-query (cosine of the store's embedder) whose
    similarity is at least `floor`, so a sub-query unlike every item gets none. The defaults are
    what the SmolLM2 demo experts' measurement chose (k from a dev slice; the floor keeps about
    90 % of other domains' questions from an expert's items with MiniLM); there retrieval did
    not help, so no demo expert has it on (docs/results/2026-12-06-retrieval.md).

    Raises:
        StoreError: `k` is not a whole number in 0..`MAX_RETRIEVAL_K`, or `floor` is not a
            cosine in [-1, 1].
    """

    k: int = field(
        default=2,
        metadata={
            "help": "training items shown as worked examples before each sub-query "
            f"(0: retrieval off; at most {MAX_RETRIEVAL_K})"
        },
    )
    floor: float = field(
        default=0.5,
        metadata={
            "help": "least cosine similarity to the sub-query for an item to be shown, so "
            "unrelated items are not"
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int):
            raise StoreError(f"retrieval k must be a whole number, got {self.k!r}")
        if not 0 <= self.k <= MAX_RETRIEVAL_K:
            raise StoreError(f"retrieval k must be in 0..{MAX_RETRIEVAL_K}, got {self.k}")
        floor = self.floor
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or math.isnan(floor):
            raise StoreError(f"retrieval floor must be a cosine in [-1, 1], got {floor!r}")
        if not -1.0 <= float(floor) <= 1.0:
            raise StoreError(f"retrieval floor must be a cosine in [-1, 1], got {floor!r}")

    @property
    def on(self) -> bool:
        """Whether the prompt shows any item (`k` above 0)."""
        return self.k > 0


@dataclass(frozen=True)
class StoredRetrieval:
    """An expert's retrieval set as stored: its training items and their FAISS index.

    Attributes:
        settings: `k` and `floor`.
        items: How many items the set holds.
        items_file: The items, one JSON object a line (`retrieval.RetrievalItem`).
        index_file: FAISS `IndexFlatIP` over the L2-normalised embeddings of their questions.
        embedder: Spec of the embedder that embedded them (the store's).
        dim: Their dimension.
        sources: Items per source (the first part of each id).
    """

    settings: RetrievalSettings
    items: int
    items_file: Path
    index_file: Path
    embedder: str
    dim: int
    sources: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Expert:
    """One expert as stored.

    Attributes:
        name: Unique name matching `NAME_PATTERN`.
        description: What the expert knows.
        base_model: Base model the adapter was trained on, or None.
        adapter: Path of the stored peft adapter folder, or None (the base model answers, with
            `system_prompt` if set). Only `adapter` experts have one.
        system_prompt: System message put before the expert's prompts, or None.
        threshold: Per-expert routing threshold, or None for the store default.
        counts: Training texts per centroid.
        stats: Statistics of the expert's data.
        centroids: Raw (uncentred) mean embedding per centroid, shape (len(counts), dim).
        kind: What answers for the expert (see `ExpertKind`).
        url: A `remote` expert's OpenAI-compatible base URL; None for other kinds.
        model: A `remote` expert's served model name, or a `model` or `program` expert's
            catalogue alias (a `program` expert's may be None); None for other kinds.
        retrieval: Its retrieval set (`ExpertStore.set_retrieval`), or None.
        gain_only: Left out of the similarity index: it answers only the parts that a stored
            calibration moves to it (a costlier candidate, such as a bigger model, that should
            take a domain only where it alone is measured to beat the base model).
    """

    name: str
    description: str
    base_model: str | None
    adapter: Path | None
    system_prompt: str | None
    threshold: float | None
    counts: tuple[int, ...]
    stats: dict[str, Any] = field(default_factory=dict)
    centroids: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 0), np.float32), repr=False, compare=False
    )
    kind: ExpertKind = "adapter"
    url: str | None = None
    model: str | None = None
    retrieval: StoredRetrieval | None = None
    gain_only: bool = False


def needs_runnable(expert: Expert) -> bool:
    """Whether `expert` is answered by a Runnable of the caller's code, which the store does not
    keep: a `runnable` expert, or a `program` expert with no model to build it on."""
    return expert.kind == "runnable" or (expert.kind == "program" and expert.model is None)


def check_retrievable(expert: Expert) -> None:
    """Raise unless the store builds `expert`'s prompt (kinds `adapter`, `model`, `remote`),
    which a retrieval set adds its examples to.

    Raises:
        ExpertKindError: a `program` or `runnable` expert, whose Runnable builds its own prompt.
    """
    if expert.kind in BOUND_KINDS:
        raise ExpertKindError(
            f"expert {expert.name!r} is a {expert.kind!r} expert, whose Runnable builds its own "
            "prompt: a retrieval set fits the experts whose prompt the store builds (adapter, "
            "model, remote)"
        )


def check_name(name: str) -> str:
    """Return `name` if it is a valid expert name.

    Raises:
        StoreError: the name does not match `^[a-z0-9][a-z0-9_-]{0,63}$`.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name == BASE:
        raise StoreError(
            f"invalid expert name {name!r}: use 1-64 characters of a-z, 0-9, '_' or '-', "
            f"starting with a letter or digit ({BASE!r} is reserved)"
        )
    return name


def check_threshold(value: float) -> None:
    if not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
        raise StoreError(f"a threshold is a cosine similarity in [-1, 1], got {value!r}")


def check_kind(
    kind: str,
    *,
    adapter: object = None,
    base_model: str | None = None,
    url: str | None = None,
    model: str | None = None,
) -> None:
    """Raise unless `kind` is an `ExpertKind` and the other arguments are the ones it takes.

    `adapter` takes an adapter folder (optional) and `base_model`; `remote` takes `url` and
    `model` (the served name); `model` takes `model` (a catalogue alias: see
    `check_model_alias`); `program` takes `model` (optional: the alias to build it on);
    `runnable` takes none of them.

    Raises:
        ExpertKindError: saying which argument to give or leave out.
    """
    kinds = get_args(ExpertKind)
    if kind not in kinds:
        raise ExpertKindError(
            f"kind must be one of {kinds}, got {kind!r}: 'adapter' for a LoRA on the shared "
            "base model (or none), 'remote' with url= and model=, 'model' with model=ALIAS, "
            "'program' (with model=ALIAS, or none) or 'runnable' for a Runnable of yours given "
            "to store.chat_models(..., runnables={name: runnable})"
        )
    given = {"adapter": adapter, "base_model": base_model, "url": url, "model": model}
    takes = {
        "adapter": {"adapter", "base_model"},
        "remote": {"url", "model"},
        "model": {"model"},
        "program": {"model"},
    }.get(kind, set())
    extra = sorted(arg for arg, value in given.items() if value is not None and arg not in takes)
    if extra:
        allowed = ", ".join(f"{arg}=" for arg in sorted(takes)) or "none of them"
        article = "an" if kind == "adapter" else "a"
        raise ExpertKindError(
            f"{article} {kind!r} expert takes no {', '.join(f'{a}=' for a in extra)} (it takes "
            f"{allowed}); leave it out or choose the kind that uses it"
        )
    if kind == "remote":
        _check_remote(url, model)
    if kind == "program" and model is not None and (not isinstance(model, str) or not model):
        raise ExpertKindError(
            f"a 'program' expert's model= is a catalogue alias ({_aliases()}) or None, got "
            f"{model!r}"
        )
    if kind == "model" and (not isinstance(model, str) or not model.strip()):
        raise ExpertKindError(
            f"a 'model' expert needs model= set to a catalogue alias ({_aliases()}), got {model!r}"
        )


def check_model_alias(model: str) -> None:
    """Raise unless `model` is a catalogue alias, which a `model` or `program` expert loads.

    Checked when the expert is added, not when a store is read: a store stays readable under a
    catalogue that has dropped the alias, and loading the expert says what is wrong.

    Raises:
        ExpertKindError: naming the known aliases and the way to use any other model.
    """
    if model not in CATALOGUE:
        raise ExpertKindError(
            f"an expert's model= must be a catalogue alias ({_aliases()}), got {model!r}; for "
            "another model, build its chat model (or program expert) yourself and give it to "
            "store.chat_models(..., runnables={name: runnable})"
        )


def _aliases() -> str:
    return ", ".join(sorted(CATALOGUE))


def _check_remote(url: str | None, model: str | None) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExpertKindError(
            "a 'remote' expert needs url= set to an OpenAI-compatible base URL such as "
            f"http://gpu-box:8000/v1, got {url!r}"
        )
    if not isinstance(model, str) or not model.strip():
        raise ExpertKindError(
            "a 'remote' expert needs model= set to the name the server serves it under "
            f"(vLLM --served-model-name, a LoRA's name), got {model!r}"
        )


__all__ = [
    "BOUND_KINDS",
    "DEFAULT_THRESHOLD",
    "MAX_RETRIEVAL_K",
    "NAME_PATTERN",
    "CorruptStoreError",
    "Expert",
    "ExpertKind",
    "ExpertKindError",
    "RetrievalSettings",
    "StoreError",
    "StoredRetrieval",
    "check_kind",
    "check_model_alias",
    "check_name",
    "check_retrievable",
    "check_threshold",
    "needs_runnable",
]
