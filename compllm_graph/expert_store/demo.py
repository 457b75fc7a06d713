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
from collections.abc import Iterator
from pathlib import Path

from compllm_graph.adapter_folder import ADAPTER_WEIGHTS, same_base
from compllm_graph.expert_store.data import read_labelled, read_texts
from compllm_graph.expert_store.router import ExpertRouter
from compllm_graph.expert_store.store import ExpertStore
from compllm_graph.packs import pack_for, require_pack

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
"""The routing data: questions of each demo expert, and calibration questions (not specific to
a base model, so they stay in the core package, for prompt-only demo stores too)."""
DEMO_MARKER = "demo.json"
DEMO_VERSION = 4
"""Bumped when the demo experts change, so a store built by an older version is rebuilt (4:
centred embeddings)."""
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


def build_demo_store(
    path: str | os.PathLike[str] | None = None,
    *,
    base: str | None = None,
    embedder: str = DEMO_EMBEDDER,
    center: bool = DEMO_CENTER,
    centroids: int = 1,
    calibrate: bool = True,
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
        force: Replace an existing store at `path` (one built by an older version of the demo
            experts, with no experts of the user's own, is replaced anyway).

    Returns:
        The opened store (the existing one when it is present and `force` is False).

    Raises:
        PackNotInstalledError: `base` has an expert pack in this repository that is not
            installed; the message says how to install it.
        PackError: the pack's files fail their sha256 check.
    """
    from compllm_graph.models import DEFAULT_MODEL

    base = base or DEFAULT_MODEL
    root = Path(path).expanduser() if path is not None else default_store_path(base)
    root.parent.mkdir(parents=True, exist_ok=True)
    adapters = shipped_experts(base)
    if not adapters:
        require_pack(base)
    with _build_lock(root):
        if (root / "store.json").is_file() and not force and not _outdated_demo(root, base):
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
            marker = {"version": DEMO_VERSION, "base": base, "adapters": _fingerprints(base)}
            (tmp / DEMO_MARKER).write_text(json.dumps(marker) + "\n")
            if root.exists():
                shutil.rmtree(root)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ExpertStore.open(root, embedder=store.embedder)


def demo_store(base: str | None = None) -> ExpertStore:
    """The default store of `base` (None: the default model), built on first use.

    A demo store built by an older version of the demo experts is rebuilt, unless experts of
    the user's own were added to it. Its adapters come from the installed expert pack for
    `base` (`compllm experts packs` lists them).

    Raises:
        PackNotInstalledError: the store must be built and `base` has an expert pack in this
            repository that is not installed; the message says how to install it.
        PackError: the pack's files fail their sha256 check.
    """
    from compllm_graph.models import DEFAULT_MODEL

    root = default_store_path(base)
    if (root / "store.json").is_file() and not _outdated_demo(root, base or DEFAULT_MODEL):
        return ExpertStore.open(root)
    return build_demo_store(root, base=base, embedder=DEMO_EMBEDDER)


def _outdated_demo(root: Path, base: str) -> bool:
    """Whether a store at `root` is a demo store built by another version of the demo experts,
    or before the adapters of the pack now installed for `base` were installed or retrained
    (experts of the user's own: never)."""
    try:
        marker = json.loads((root / DEMO_MARKER).read_text())
    except (OSError, ValueError):
        marker = {}
    shipped_now = _fingerprints(base)
    if (
        isinstance(marker, dict)
        and marker.get("version") == DEMO_VERSION
        and marker.get("adapters") == shipped_now
    ):
        return False
    return {e.name for e in ExpertStore.open(root).experts()} <= set(DEMO_EXPERTS)


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
    "build_demo_store",
    "default_store_path",
    "demo_store",
    "shipped_experts",
]
