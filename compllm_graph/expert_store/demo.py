"""The demo store: chemistry, biology, mathematics and medicine experts.

Each expert is a LoRA adapter trained on its domain's question/answer pairs (the train split of
the shared datasets; `experts/NAME/training.json` in the pack says how), one set per base model,
shipped in the model's expert pack (`compllm_graph.packs`; `packs/` in the repository). A model
that this repository has a pack for needs it installed; for any other base model the demo
experts are the base model with the expert's system prompt. Centroids come from the question
samples in `demo_data/`: train-split questions of every source the experts learned from, options
included (`compllm train routing-data` writes them; see `demo_data/ATTRIBUTION.md`). Thresholds
are fitted on `demo_data/calibration.jsonl` (further questions of each expert plus out-of-domain
ones), since a fixed 0.7 suits no embedder in particular. Embeddings are centred on the mean of
all expert data (`DEMO_CENTER`): on questions no centroid has seen it misroutes less than raw
cosine (docs/results/2026-12-06-routing.md).

A pack may also ship a calibration (`calibration.json`): each expert's accuracy against the base
model's, measured on questions no trainer or benchmark reads, and the gain-only candidates (a
bigger model) it was measured with. The demo store then carries both, so a part goes to an
expert only where its measured gain passes (`Calibration.choose`); a candidate whose model is
not fetched is left out, with a warning that says how to add it, and the store is rebuilt once
it is fetched. Qwen2.5-Coder-0.5B's pack ships one (docs/results/2026-12-07-gain-routing.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from compllm_graph.adapter_folder import ADAPTER_WEIGHTS, same_base
from compllm_graph.expert_store.calibration import Calibration
from compllm_graph.expert_store.data import read_labelled, read_texts
from compllm_graph.expert_store.records import check_model_alias
from compllm_graph.expert_store.router import ExpertRouter
from compllm_graph.expert_store.store import ExpertStore, StoreError
from compllm_graph.packs import PackError, pack_for, require_pack

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
"""The routing data: questions of each demo expert, and calibration questions (not specific to
a base model, so they stay in the core package, for prompt-only demo stores too)."""
DEMO_MARKER = "demo.json"
DEMO_VERSION = 5
"""Bumped when the demo experts change, so a store built by an older version is rebuilt (4:
centred embeddings; 5: the pack's calibration and gain-only candidates)."""
DEMO_EMBEDDER = "minilm"
DEMO_CENTER = True
"""Centre the demo store's embeddings: one centroid per expert, centred, misrouted 9.3 % of
questions from sources no centroid saw, against 10.4 % uncentred (2026-12-06 results page)."""
DEMO_EXPERTS: dict[str, tuple[str, str]] = {
    "chemistry": (
        "General and college chemistry: reactions, stoichiometry, bonding, thermodynamics.",
        "You are a chemistry expert. Answer the question accurately and concisely.",
    ),
    "biology": (
        "High-school and college biology: cells, genetics, evolution, physiology, ecology.",
        "You are a biology expert. Answer the question accurately and concisely.",
    ),
    "mathematics": (
        "Arithmetic word problems, algebra and college mathematics.",
        "You are a mathematics expert. Work the problem out step by step and give the result.",
    ),
    "medicine": (
        "Clinical knowledge, anatomy, medical genetics and medicine.",
        "You are a medical expert. Answer the question accurately and concisely.",
    ),
}


def default_store_path(base: str | None = None) -> Path:
    """Where the default (demo) store of `base` lives: `$COMPLLM_HOME/expert_store` for the
    default model (or None), `$COMPLLM_HOME/expert_store-BASE` for another one."""
    from compllm_graph.models import DEFAULT_MODEL, home

    if base is None or same_base(base, DEFAULT_MODEL):
        return home() / "expert_store"
    return home() / f"expert_store-{re.sub(r'[^a-z0-9._-]+', '-', Path(base).name.lower())}"


def shipped_experts(base: str) -> dict[str, Path]:
    """The expert adapters of the installed pack for `base` (an alias, a path ending in one, or
    a hub id), by expert name; empty when no installed pack serves `base`.

    Raises:
        PackError: the pack's files fail their sha256 check (`compllm_graph.packs`).
    """
    pack = pack_for(base)
    return pack.experts() if pack is not None else {}


CandidateKind = Literal["model", "program"]
"""The kinds a pack's candidate may be: both run on a catalogue model the store loads."""


@dataclass(frozen=True)
class Candidate:
    """A gain-only expert of a pack's calibration: a model (often bigger than the base) that
    answers only the parts its measured gain moves to it (`ExpertStore.add_expert`'s
    `gain_only`).

    Attributes:
        model: Its catalogue alias.
        description: What it is, for `compllm experts list`.
        system_prompt: The system message it was measured with, or None.
        texts: Its data, kept by the store but not indexed.
        kind: `model` (the model answers) or `program` (the model writes a program that the
            sandbox runs); see `ExpertKind`.
    """

    model: str
    description: str
    system_prompt: str | None
    texts: tuple[str, ...]
    kind: CandidateKind = "model"


@dataclass(frozen=True)
class ShippedCalibration:
    """A pack's `calibration.json`: the measured gains, and the candidates measured with them."""

    calibration: Calibration
    candidates: Mapping[str, Candidate]

    def fetched(self) -> list[str]:
        """The candidates whose model is fetched (only these join a demo store), by name."""
        from compllm_graph.models import is_cached

        return sorted(name for name, c in self.candidates.items() if is_cached(c.model))

    def unfetched(self) -> list[str]:
        """The candidates whose model is not fetched (left out of a demo store), by name."""
        fetched = self.fetched()
        return [name for name in sorted(self.candidates) if name not in fetched]

    def unfetched_models(self) -> dict[str, list[str]]:
        """The models not fetched, each with the names of its candidates (left out)."""
        grouped: dict[str, list[str]] = {}
        for name in self.unfetched():
            grouped.setdefault(self.candidates[name].model, []).append(name)
        return grouped

    def for_candidates(self, names: list[str]) -> Calibration:
        """The calibration with every candidate not in `names` left out."""
        calibration = self.calibration
        for name in sorted(set(self.candidates) - set(names)):
            calibration = calibration.without(name)
        return calibration


def shipped_calibration(base: str) -> ShippedCalibration | None:
    """The calibration of the installed pack for `base`, or None (no pack, or a pack without).

    Raises:
        PackError: the pack's files fail their sha256 check, or its calibration is malformed.
    """
    pack = pack_for(base)
    path = pack.calibration() if pack is not None else None
    return None if path is None else read_calibration(path, base)


def read_calibration(path: Path, base: str) -> ShippedCalibration:
    """A pack's `calibration.json` at `path`, measured on `base`.

    Raises:
        PackError: the file is malformed, or was measured on another model.
    """
    try:
        data = json.loads(path.read_text())
        candidates = {str(name): _candidate(c) for name, c in data["candidates"].items()}
        calibration = Calibration.from_dict(data["calibration"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StoreError) as exc:
        raise PackError(f"{path} is not a calibration this version reads: {exc!r}") from None
    if not same_base(base, calibration.model) and not same_base(calibration.model, base):
        raise PackError(f"{path} was measured on {calibration.model}, not {base}")
    return ShippedCalibration(calibration, candidates)


def _candidate(data: Mapping[str, Any]) -> Candidate:
    prompt = data.get("system_prompt")
    check_model_alias(str(data["model"]))  # `fetched` looks it up in the catalogue
    texts = tuple(str(t) for t in data["texts"])
    if not texts:
        raise ValueError("a candidate needs at least one text")
    kind = data.get("kind", "model")  # written before program candidates: a model
    if kind not in get_args(CandidateKind):
        raise ValueError(f"a candidate's kind is one of {get_args(CandidateKind)}, got {kind!r}")
    return Candidate(
        str(data["model"]),
        str(data.get("description", "")),
        None if prompt is None else str(prompt),
        texts,
        kind,
    )


def build_demo_store(
    path: str | os.PathLike[str] | None = None,
    *,
    base: str | None = None,
    embedder: str = DEMO_EMBEDDER,
    center: bool = DEMO_CENTER,
    centroids: int = 1,
    calibrate: bool = True,
    calibrated: bool = True,
    force: bool = False,
) -> ExpertStore:
    """Build the demo store from the shipped samples.

    It is built in a temporary sibling folder and renamed into place, so a reader never sees a
    half-built store; concurrent builders are serialised by a lock file next to it.

    Args:
        path: Store folder; `default_store_path(base)` when None.
        base: The base model whose pack's adapters the experts use; None: the default model.
        embedder: Embedder spec.
        center: Centre embeddings on the mean of all expert data (the default).
        centroids: Centroids per expert.
        calibrate: Fit per-expert thresholds on the shipped calibration questions.
        calibrated: Carry the pack's calibration and those of its gain-only candidates whose
            model is fetched (`shipped_calibration`), when it has one; False builds a store
            that routes by similarity alone.
        force: Replace an existing store at `path` (one built by an older version of the demo
            experts, with no experts of the user's own, is replaced anyway).

    Returns:
        The opened store (the existing one when it is present and `force` is False).

    Raises:
        PackNotInstalledError: `base` has an expert pack in this repository that is not
            installed; the message says how to install it.
        PackError: the pack's files fail their sha256 check, or its calibration is malformed.
    """
    from compllm_graph.models import DEFAULT_MODEL

    base = base or DEFAULT_MODEL
    root = Path(path).expanduser() if path is not None else default_store_path(base)
    root.parent.mkdir(parents=True, exist_ok=True)
    adapters = shipped_experts(base)
    if not adapters:
        require_pack(base)
    shipped = shipped_calibration(base) if calibrated else None
    marker = _marker(base, shipped)
    with _build_lock(root):
        if (
            (root / "store.json").is_file()
            and not force
            and not _outdated_demo(root, marker, shipped)
        ):
            return ExpertStore.open(root)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-build-"))
        tmp.chmod(0o755)
        try:
            store = ExpertStore.create(tmp, embedder, center=center)
            for name, (description, system_prompt) in DEMO_EXPERTS.items():
                store.add_expert(
                    name,
                    read_texts(DEMO_DATA / f"{name}.jsonl"),
                    description=description,
                    system_prompt=system_prompt,
                    adapter=adapters.get(name),
                    base_model=base if name in adapters else None,
                    centroids=centroids,
                )
            if calibrate:
                router = ExpertRouter(store)
                fit = router.fit_thresholds(read_labelled(DEMO_DATA / "calibration.jsonl"))
                store.set_thresholds(fit.thresholds)
            if shipped is not None:
                _add_candidates(store, shipped, marker["candidates"])
            (tmp / DEMO_MARKER).write_text(json.dumps(marker) + "\n")
            if root.exists():
                shutil.rmtree(root)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ExpertStore.open(root, embedder=store.embedder)


def _add_candidates(store: ExpertStore, shipped: ShippedCalibration, names: list[str]) -> None:
    """Add the fetched candidates `names` as gain-only experts of their kind, then the
    calibration (without the candidates left out)."""
    for name in names:
        candidate = shipped.candidates[name]
        store.add_expert(
            name,
            list(candidate.texts),
            kind=candidate.kind,
            model=candidate.model,
            gain_only=True,
            system_prompt=candidate.system_prompt,
            description=candidate.description,
        )
    store.set_calibration(shipped.for_candidates(names))


def demo_store(base: str | None = None) -> ExpertStore:
    """The default store of `base` (None: the default model), built on first use.

    A demo store built by an older version of the demo experts is rebuilt, unless experts of
    the user's own were added to it. Its adapters come from the installed expert pack for
    `base` (`compllm experts packs` lists them), and so does its calibration, when the pack
    ships one; a gain-only candidate of it whose model is not fetched is left out with a
    warning that says how to fetch it (the store is rebuilt with it once it is).

    Raises:
        PackNotInstalledError: the store must be built and `base` has an expert pack in this
            repository that is not installed; the message says how to install it.
        PackError: the pack's files fail their sha256 check, or its calibration is malformed.
    """
    from compllm_graph.models import DEFAULT_MODEL

    base = base or DEFAULT_MODEL
    root = default_store_path(base)
    shipped = shipped_calibration(base)
    marker = _marker(base, shipped)
    if shipped is not None:
        _warn_unfetched(shipped)
    if (root / "store.json").is_file() and not _outdated_demo(root, marker, shipped):
        return ExpertStore.open(root)
    return build_demo_store(root, base=base, embedder=DEMO_EMBEDDER)


def _warn_unfetched(shipped: ShippedCalibration) -> None:
    for model, names in shipped.unfetched_models().items():
        experts = " and ".join(repr(name) for name in names)
        one = len(names) == 1
        warnings.warn(
            f"the demo store's gain-only expert{'' if one else 's'} {experts} ({model}) "
            f"{'is' if one else 'are'} left out: the model is not fetched, so the parts "
            f"{'it was' if one else 'they were'} measured best at go to the base model or an "
            f"expert; `compllm models fetch {model}` adds {'it' if one else 'them'} (the store "
            "is rebuilt on next use)",
            stacklevel=3,
        )


def _marker(base: str, shipped: ShippedCalibration | None) -> dict[str, Any]:
    """What a demo store of `base` built now records: the demo experts' version, the pack's
    adapters, and whether it is calibrated, with which candidates."""
    return {
        "version": DEMO_VERSION,
        "base": base,
        "adapters": _fingerprints(base),
        "calibrated": shipped is not None,
        "candidates": shipped.fetched() if shipped is not None else [],
    }


def _outdated_demo(
    root: Path, marker: Mapping[str, Any], shipped: ShippedCalibration | None
) -> bool:
    """Whether a store at `root` is a demo store built otherwise than `marker` says a store
    is built now: by another version of the demo experts, before the adapters of the installed
    pack were installed or retrained, with or without its calibration, or with other candidates
    fetched (experts of the user's own: never rebuilt)."""
    try:
        built = json.loads((root / DEMO_MARKER).read_text())
    except (OSError, ValueError):
        built = {}
    if isinstance(built, dict) and all(built.get(k) == v for k, v in marker.items() if k != "base"):
        return False
    ours = set(DEMO_EXPERTS) | set(shipped.candidates if shipped is not None else ())
    return {e.name for e in ExpertStore.open(root).experts()} <= ours


def _fingerprints(base: str) -> dict[str, str]:
    """Each demo adapter of `base`'s pack by name, with a digest that changes when it is
    retrained (its training.json, which records the run, and the weights' size)."""
    prints = {}
    for name, folder in sorted(shipped_experts(base).items()):
        if name in DEMO_EXPERTS:
            record = folder / "training.json"
            digest = hashlib.sha256(record.read_bytes() if record.is_file() else b"")
            digest.update(str((folder / ADAPTER_WEIGHTS).stat().st_size).encode())
            prints[name] = digest.hexdigest()[:16]
    return prints


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    with open(root.parent / f".{root.name}.build.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = [
    "DEMO_CENTER",
    "DEMO_DATA",
    "DEMO_EXPERTS",
    "Candidate",
    "CandidateKind",
    "ShippedCalibration",
    "build_demo_store",
    "default_store_path",
    "demo_store",
    "read_calibration",
    "shipped_calibration",
    "shipped_experts",
]
