"""The demo store: chemistry, biology, mathematics and medicine experts from shipped samples.

The demo experts have no adapters: the base model answers with the expert's system prompt. Their
centroids come from the question samples in `demo_data/` (see `demo_data/ATTRIBUTION.md`), and
their thresholds are fitted on `demo_data/calibration.jsonl` (held-out questions of each expert
plus out-of-domain ones), since a fixed 0.7 suits no embedder in particular.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from compllm_graph.expert_store.data import read_labelled, read_texts
from compllm_graph.expert_store.router import ExpertRouter
from compllm_graph.expert_store.store import ExpertStore

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
DEMO_EMBEDDER = "minilm"
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


def default_store_path() -> Path:
    """Where the default (demo) store lives: `$COMPLLM_HOME/expert_store`."""
    from compllm_graph.models import home

    return home() / "expert_store"


def build_demo_store(
    path: str | os.PathLike[str] | None = None,
    *,
    embedder: str = DEMO_EMBEDDER,
    center: bool = False,
    centroids: int = 1,
    calibrate: bool = True,
    force: bool = False,
) -> ExpertStore:
    """Build the demo store from the shipped samples.

    It is built in a temporary sibling folder and renamed into place, so a reader never sees a
    half-built store; concurrent builders are serialised by a lock file next to it.

    Args:
        path: Store folder; the default store path when None.
        embedder: Embedder spec.
        center: Centre embeddings on the mean of all expert data.
        centroids: Centroids per expert.
        calibrate: Fit per-expert thresholds on the shipped calibration questions.
        force: Replace an existing store at `path`.

    Returns:
        The opened store (the existing one when it is present and `force` is False).
    """
    root = Path(path).expanduser() if path is not None else default_store_path()
    root.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(root):
        if (root / "store.json").is_file() and not force:
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
                    centroids=centroids,
                )
            if calibrate:
                router = ExpertRouter(store)
                fit = router.fit_thresholds(read_labelled(DEMO_DATA / "calibration.jsonl"))
                store.set_thresholds(fit.thresholds)
            if root.exists():
                shutil.rmtree(root)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ExpertStore.open(root, embedder=store.embedder)


def demo_store() -> ExpertStore:
    """The default store, built from the demo data on first use."""
    root = default_store_path()
    if (root / "store.json").is_file():
        return ExpertStore.open(root)
    return build_demo_store(root, embedder=DEMO_EMBEDDER)


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    with open(root.parent / f".{root.name}.build.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = ["DEMO_EXPERTS", "build_demo_store", "default_store_path", "demo_store"]
