"""Routing error rates (the paper's Tables 2 and 3) on MMLU subject groups.

Experts are built from MMLU subject groups, with centroids from one deterministic part of each
group's questions; thresholds are fitted on a second part together with out-of-domain questions
(law, history, philosophy, ...) that should go to base; errors are counted on the held-apart rest.
Every setting builds a real `ExpertStore` and routes with `ExpertRouter`, on embeddings computed
once per embedder.

The data, the table and the chart need the [eval] extra; building the stores needs [router]
(FAISS), and so does the MiniLM embedder; the decoder embedders (mean-pool, last-token) need
[local]. Each is imported where it is used, so a missing one is named when it is needed.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compllm_graph._extras import requires
from compllm_graph.types import BASE

with requires("eval"):
    import numpy as np

EXPERT_GROUPS: dict[str, tuple[str, ...]] = {
    "mathematics": ("elementary_mathematics", "high_school_mathematics", "college_mathematics"),
    "medicine": (
        "clinical_knowledge",
        "college_medicine",
        "professional_medicine",
        "medical_genetics",
        "anatomy",
    ),
    "chemistry": ("high_school_chemistry", "college_chemistry"),
    "biology": ("high_school_biology", "college_biology"),
}
OUT_OF_DOMAIN: tuple[str, ...] = (
    "professional_law",
    "international_law",
    "jurisprudence",
    "high_school_us_history",
    "high_school_world_history",
    "prehistory",
    "philosophy",
    "world_religions",
    "sociology",
    "marketing",
)
EMBEDDERS = ("mean-pool", "last-token", "minilm")
CENTROIDS = (1, 2, 4)
FIT, CALIBRATE = 0.5, 0.2  # shares of each group; the remaining 0.3 is the test part
SEED = 0


@dataclass(frozen=True)
class Split:
    """Row indices (into `RoutingData.texts`) of one group's parts."""

    fit: list[int]
    calibrate: list[int]
    test: list[int]


@dataclass(frozen=True)
class RoutingData:
    """All evaluation texts and how they are split."""

    texts: list[str]
    groups: dict[str, Split]
    ood: Split  # `fit` is empty: out-of-domain texts only calibrate and test


def load_routing_data(mmlu_dir: Path, per_group: int = 300, seed: int = SEED) -> RoutingData:
    """Read the MMLU test CSVs, cap each group at `per_group` questions (balanced over its
    subjects), and split each group deterministically.

    Raises:
        FileNotFoundError: a subject's CSV is missing.
    """
    texts: list[str] = []
    groups: dict[str, Split] = {}
    for name, subjects in [*EXPERT_GROUPS.items(), (BASE, OUT_OF_DOMAIN)]:
        chosen = _balanced_sample(mmlu_dir, subjects, per_group, random.Random(f"{seed}-{name}"))
        rows = list(range(len(texts), len(texts) + len(chosen)))
        texts += chosen
        fit = 0 if name == BASE else round(FIT * len(rows))
        cal = round(CALIBRATE * len(rows)) if name != BASE else len(rows) // 2
        groups[name] = Split(rows[:fit], rows[fit : fit + cal], rows[fit + cal :])
    ood = groups.pop(BASE)
    return RoutingData(texts, groups, ood)


def _balanced_sample(
    mmlu_dir: Path, subjects: Sequence[str], cap: int, rng: random.Random
) -> list[str]:
    """Up to `cap` questions, taken round-robin from each subject's shuffled questions."""
    pools = []
    for subject in subjects:
        path = mmlu_dir / "test" / f"{subject}_test.csv"
        if not path.is_file():
            raise FileNotFoundError(f"MMLU subject file {path} is missing")
        with open(path, newline="", encoding="utf-8") as handle:
            questions = sorted({row["question"].strip() for row in csv.DictReader(handle)})
        rng.shuffle(questions)
        pools.append(questions)
    chosen: list[str] = []
    for question in itertools.chain.from_iterable(itertools.zip_longest(*pools)):
        if question and len(chosen) < cap:
            chosen.append(question)
    rng.shuffle(chosen)
    return chosen


def embed_data(
    data: RoutingData,
    embedders: Sequence[str],
    model: str,
    log: Callable[[str], None],
    cache_dir: Path | None = None,
) -> dict[str, np.ndarray]:
    """Embed every text once per embedder; mean-pool and last-token share one decoder pass.

    With `cache_dir`, embeddings are saved there keyed by the texts' hash and reused.
    """
    digest = hashlib.sha256("\n".join(data.texts).encode()).hexdigest()[:16]
    names = {
        kind: f"{kind}-{'' if kind == 'minilm' else model + '-'}{digest}.npy" for kind in embedders
    }
    out: dict[str, np.ndarray] = {}
    if cache_dir is not None:
        out = {
            kind: np.load(cache_dir / name)
            for kind, name in names.items()
            if (cache_dir / name).is_file()
        }
    missing = [kind for kind in embedders if kind not in out]
    if "minilm" in missing:
        from compllm_graph.expert_store.embedders import MiniLMEmbedder

        started = time.perf_counter()
        out["minilm"] = MiniLMEmbedder().embed(data.texts)
        log(f"minilm: {len(data.texts)} texts in {time.perf_counter() - started:.0f} s")
    poolings = [p for p, kind in (("mean", "mean-pool"), ("last", "last-token")) if kind in missing]
    if poolings:
        out.update(_embed_decoder(data.texts, poolings, model, log))
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for kind in missing:
            np.save(cache_dir / names[kind], out[kind])
    return out


def _embed_decoder(
    texts: list[str], poolings: list[str], model: str, log: Callable[[str], None]
) -> dict[str, np.ndarray]:
    from compllm_graph.expert_store.embedders import pool_hidden_states
    from compllm_graph.models import load_model

    local_model = load_model(model, engine="transformers")
    pooled: dict[str, list[np.ndarray]] = {p: [] for p in poolings}
    started, chunk = time.perf_counter(), 128
    for start in range(0, len(texts), chunk):
        part = pool_hidden_states(
            local_model, texts[start : start + chunk], poolings, batch_size=16, max_tokens=128
        )
        for p in poolings:
            pooled[p].append(part[p])
        done = min(start + chunk, len(texts))
        log(f"{model}: {done}/{len(texts)} texts, {time.perf_counter() - started:.0f} s")
    return {
        "mean-pool" if p == "mean" else "last-token": np.concatenate(pooled[p]) for p in poolings
    }


def evaluate_setting(
    data: RoutingData,
    vectors: np.ndarray,
    experts: Sequence[str],
    spec: str,
    center: bool,
    centroids: int,
    workdir: Path,
) -> dict[str, Any]:
    """Build a store of `experts`, route the test texts, and fit thresholds on calibration texts.

    Returns:
        nearest_error: in-domain test texts whose nearest expert is wrong (no base option; the
            paper's metric); error_at_default: in-domain + out-of-domain test texts misrouted at
            the default threshold 0.7; fitted_error: the same after fitting thresholds on the
            calibration texts; thresholds: the fitted thresholds.
    """
    from compllm_graph.expert_store.router import ExpertRouter
    from compllm_graph.expert_store.store import ExpertStore

    store = ExpertStore.create(tempfile.mkdtemp(dir=workdir), spec, center=center)
    for name in experts:
        rows = data.groups[name].fit
        store.add_expert(
            name, [data.texts[i] for i in rows], centroids=centroids, embeddings=vectors[rows]
        )
    router = ExpertRouter(store)
    in_rows = [i for name in experts for i in data.groups[name].test]
    in_labels = [name for name in experts for _ in data.groups[name].test]
    nearest = [c[0][0] for c in router.candidates(vectors[in_rows])]
    test_rows = in_rows + data.ood.test
    test_labels: list[str | None] = [*in_labels, *[None] * len(data.ood.test)]
    at_default = router.error_vectors(vectors[test_rows], test_labels)
    cal_rows = [i for name in experts for i in data.groups[name].calibrate] + data.ood.calibrate
    cal_labels: list[str | None] = [name for name in experts for _ in data.groups[name].calibrate]
    cal_labels += [None] * len(data.ood.calibrate)
    fit = router.fit_thresholds_vectors(vectors[cal_rows], cal_labels)
    return {
        "nearest_error": float(np.mean([a != b for a, b in zip(nearest, in_labels)])),
        "error_at_default": at_default,
        "fitted_error": router.error_vectors(vectors[test_rows], test_labels),
        "thresholds": {k: round(v, 4) for k, v in fit.thresholds.items()},
    }


def run_routing_eval(
    mmlu_dir: Path,
    per_group: int = 300,
    embedders: Sequence[str] = EMBEDDERS,
    model: str = "smollm2-135m-instruct",
    log: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """The full table: {2, 3, 4} experts x embedders x {raw, centred} x {1, 2, 4} centroids.

    Errors for n experts are averaged over every n-subset of the four expert groups; each row
    also lists the in-domain nearest-centroid error of every subset.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    data = load_routing_data(mmlu_dir, per_group)
    log(
        f"{len(data.texts)} texts: "
        + ", ".join(
            f"{name} {len(s.fit)}/{len(s.calibrate)}/{len(s.test)}"
            for name, s in data.groups.items()
        )
        + f", out-of-domain -/{len(data.ood.calibrate)}/{len(data.ood.test)} (fit/calibrate/test)"
    )
    vectors = embed_data(data, embedders, model, log, cache_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="compllm-routing-eval-") as workdir:
        for kind, center, k in itertools.product(embedders, (False, True), CENTROIDS):
            spec = kind if kind == "minilm" else f"{kind}:{model}"
            for n in (2, 3, 4):
                subsets = list(itertools.combinations(EXPERT_GROUPS, n))
                results = [
                    evaluate_setting(data, vectors[kind], subset, spec, center, k, Path(workdir))
                    for subset in subsets
                ]
                row: dict[str, Any] = {
                    "embedder": kind,
                    "center": center,
                    "centroids": k,
                    "experts": n,
                }
                for metric in ("nearest_error", "error_at_default", "fitted_error"):
                    row[metric] = round(float(np.mean([r[metric] for r in results])), 4)
                row["nearest_error_by_subset"] = {
                    "+".join(subset): round(r["nearest_error"], 4)
                    for subset, r in zip(subsets, results)
                }
                if n == len(EXPERT_GROUPS):
                    row["thresholds"] = results[0]["thresholds"]
                rows.append(row)
    split = {name: [len(s.fit), len(s.calibrate), len(s.test)] for name, s in data.groups.items()}
    split["out_of_domain"] = [0, len(data.ood.calibrate), len(data.ood.test)]
    return {
        "rows": rows,
        "split_fit_calibrate_test": split,
        "per_group_cap": per_group,
        "model": model,
        "groups": {k: list(v) for k, v in EXPERT_GROUPS.items()},
        "out_of_domain": list(OUT_OF_DOMAIN),
    }


def format_table(result: dict[str, Any]) -> str:
    """The error-rate table as fixed-width text (percentages)."""
    head = (
        f"{'embedder':<11}{'centre':<8}{'k':>2} | {'nearest (in-domain)':^20} | "
        f"{'threshold 0.7 (+OOD)':^20} | {'fitted thr. (+OOD)':^20}"
    )
    sub = f"{'experts:':<21} | " + " | ".join(
        " ".join(f"{n:>6}" for n in (2, 3, 4)) for _ in range(3)
    )
    lines = [head, sub, "-" * len(head)]
    settings: dict[tuple[str, bool, int], dict[int, dict[str, Any]]] = {}
    for row in result["rows"]:
        settings.setdefault((row["embedder"], row["center"], row["centroids"]), {})[
            row["experts"]
        ] = row
    for (kind, center, k), by_n in settings.items():
        cells = [
            " ".join(f"{100 * by_n[n][metric]:5.1f}%" for n in (2, 3, 4))
            for metric in ("nearest_error", "error_at_default", "fitted_error")
        ]
        lines.append(f"{kind:<11}{'yes' if center else 'no':<8}{k:>2} | " + " | ".join(cells))
    return "\n".join(lines)


def plot_table(result: dict[str, Any], path: Path) -> Path:
    """Write the table as grouped bar charts (one panel per metric) to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = sorted(
        {(r["embedder"], r["center"], r["centroids"]) for r in rows},
        key=lambda s: (EMBEDDERS.index(s[0]), s[1], s[2]),
    )
    metrics = (
        ("nearest_error", "nearest centroid, in-domain"),
        ("error_at_default", "threshold 0.7, with out-of-domain"),
        ("fitted_error", "fitted thresholds, with out-of-domain"),
    )
    fig, axes = plt.subplots(len(metrics), 1, figsize=(13, 10), sharex=True)
    x = np.arange(len(labels))
    for ax, (metric, title) in zip(axes, metrics):
        for offset, n in enumerate((2, 3, 4)):
            by = {
                (r["embedder"], r["center"], r["centroids"]): r[metric]
                for r in rows
                if r["experts"] == n
            }
            ax.bar(
                x + (offset - 1) * 0.27, [100 * by[s] for s in labels], 0.27, label=f"{n} experts"
            )
        ax.set_title(title)
        ax.set_ylabel("routing error %")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    axes[-1].set_xticks(
        x,
        [f"{e}\n{'centred' if c else 'raw'} k={k}" for e, c, k in labels],
        rotation=60,
        fontsize=7,
    )
    fig.suptitle("Routing error on MMLU subject groups (lower is better)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["format_table", "load_routing_data", "plot_table", "run_routing_eval"]
