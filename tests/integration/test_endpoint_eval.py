"""`compllm eval answers --endpoint` against a real `compllm serve` on SmolLM2.

The server runs in a subprocess with the expert pack's decomposer and experts as adapters, on
the llama.cpp engine as in-process runs are; three composed questions are answered by the
monolith and by the pipeline, in-process and through the server. Under greedy decoding, with
each request decoded alone on both sides (`--max-batch-size 1`: a batch's rows take other
kernels, and which requests meet in a batch depends on timing), the two give the same answers.
The one difference in what is asked is the decomposer's grammar (the server has no grammar
sampler), and on these questions the trained decomposer writes the tag format unaided;
docs/evaluation.md says where the two part.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compllm_graph.cli import main
from compllm_graph.datasets.compositions import compose_parallel
from compllm_graph.datasets.items import domain_items
from compllm_graph.datasets.jsonl import write_jsonl
from compllm_graph.evaluation.answers import answered
from compllm_graph.evaluation.endpoints import ENDPOINT_KEY
from compllm_graph.expert_store.demo import build_demo_store, shipped_experts
from compllm_graph.models import SMALL_MODEL
from tests.conftest import require_smollm2, smollm2_decomposer
from tests.integration.test_remote import _read_url

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKENS = "48"  # per answer; the server's ceiling is above every budget asked


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_smollm2()
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: `make setup`")
    adapters = {"decomposer": smollm2_decomposer(), **shipped_experts(SMALL_MODEL)}
    command = [sys.executable, "-m", "compllm_graph.serve", "--model", SMALL_MODEL]
    command += [
        "--port",
        "0",
        "--max-new-tokens",
        "1024",
        "--threads",
        "1",
        "--max-batch-size",
        "1",
    ]
    for name, folder in adapters.items():
        command += ["--adapter", f"{name}={folder}"]
    log = tmp_path_factory.mktemp("serve") / "stderr.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            yield _read_url(process, timeout=300)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; stderr:\n{log.read_text()[-3000:]}") from exc
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def files(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three composed questions, and a store of the pack's experts routed by hashing."""
    tmp = tmp_path_factory.mktemp("eval")
    pools = {d: domain_items(data_dir, d) for d in ("chemistry", "mathematics")}
    benchmark = tmp / "p2.jsonl"
    write_jsonl(compose_parallel(pools, parts=2, count=3, seed=7), benchmark)
    store = build_demo_store(tmp / "store", base=SMALL_MODEL, embedder="hashing:256")
    return {"benchmark": benchmark, "store": store.path, "tmp": tmp}


def eval_answers(files: dict[str, Path], system: str, outputs: Path, *extra: str) -> None:
    argv = ["eval", "answers", str(files["benchmark"]), "--system", system, "--model", SMALL_MODEL]
    argv += ["--store", str(files["store"]), "--max-new-tokens", TOKENS]
    assert main([*argv, "--outputs", str(outputs), *extra]) == 0


def what_was_answered(outputs: Path) -> dict[str, Any]:
    keep = ("answer", "sub_answers", "routes", "edges", "fallback_reason")
    return {key: {k: row.get(k) for k in keep} for key, row in answered(outputs).items()}


@pytest.mark.parametrize("system", ["monolith", "compllm"])
def test_the_endpoint_answers_as_the_in_process_model_and_resumes(
    url: str, files: dict[str, Path], system: str, capsys: pytest.CaptureFixture
) -> None:
    local, remote = files["tmp"] / f"{system}.local.jsonl", files["tmp"] / f"{system}.remote.jsonl"
    eval_answers(files, system, local, "--threads", "1", "--max-batch-size", "1")
    eval_answers(files, system, remote, "--endpoint", url, "--limit", "2")
    assert list(answered(remote)) == list(answered(local))[:2]
    eval_answers(files, system, remote, "--endpoint", url, "--json")  # resumes: one more
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["endpoint"] == {"url": url, "model": SMALL_MODEL} and summary["n"] == 3
    lines = [json.loads(line) for line in remote.read_text().splitlines()]
    assert len(lines) == 3 and all(line[ENDPOINT_KEY]["model"] == SMALL_MODEL for line in lines)
    assert what_was_answered(remote) == what_was_answered(local)
    assert all(row["answer"] for row in answered(remote).values())
    if system == "compllm":  # the served experts answered
        assert any(route != "base" for row in lines for route in row["routes"])
