"""`compllm eval answers|decomposition --endpoint` against a real vLLM server (slow).

One vLLM CPU server (`make vllm`) serves SmolLM2-135M's safetensors copy with the expert pack's
experts, its all-domains adapter and its decomposer as LoRAs, under the names the evaluation
asks for. The client is the CLI, as a user runs it: the monolith and the pipeline (its
decomposer under vLLM's structured-output grammar) on three composed questions, resumed, and
the decomposition F1 with `--constrained`. vLLM computes in another precision than the llama.cpp
engine, so answers are compared with the in-process ones only in kind (every question
answered, no request failed), not word for word. `make test-vllm` runs it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from compllm_graph.cli import main
from compllm_graph.datasets.compositions import compose_parallel
from compllm_graph.datasets.items import domain_items
from compllm_graph.datasets.jsonl import write_jsonl
from compllm_graph.evaluation.answers import answered
from compllm_graph.evaluation.endpoints import ENDPOINT_KEY, SERVED_DECOMPOSER
from compllm_graph.expert_store import ExpertStore
from compllm_graph.expert_store.demo import build_demo_store, shipped_experts
from compllm_graph.expert_store.serving import vllm_lora_args
from compllm_graph.models import SMALL_MODEL
from compllm_graph.models.loading import safetensors_folder
from tests.conftest import require_smollm2, smollm2_decomposer
from tests.vllm_server import missing_vllm_reason, vllm_python, vllm_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKENS = "48"


@pytest.fixture(scope="module")
def files(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_smollm2()
    tmp = tmp_path_factory.mktemp("eval")
    pools = {d: domain_items(data_dir, d) for d in ("chemistry", "mathematics")}
    benchmark = tmp / "p2.jsonl"
    write_jsonl(compose_parallel(pools, parts=2, count=3, seed=7), benchmark)
    store = build_demo_store(tmp / "store", base=SMALL_MODEL, embedder="hashing:256")
    return {"benchmark": benchmark, "store": store.path, "tmp": tmp}


@pytest.fixture(scope="module")
def url(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if vllm_python() is None:
        pytest.skip(missing_vllm_reason())
    experts = ExpertStore.open(files["store"]).experts()
    extra = {"all-domains": shipped_experts(SMALL_MODEL)["all-domains"]}
    extra[SERVED_DECOMPOSER] = smollm2_decomposer()
    # vllm_lora_args reads only each expert's name and adapter folder.
    more = [dataclasses.replace(experts[0], name=n, adapter=f) for n, f in extra.items()]
    loras = [*experts, *more]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with vllm_server(safetensors_folder(SMALL_MODEL), SMALL_MODEL, vllm_lora_args(loras), log) as s:
        yield s.url


def eval_answers(files: dict[str, Path], system: str, outputs: Path, *extra: str) -> None:
    argv = ["eval", "answers", str(files["benchmark"]), "--system", system, "--model", SMALL_MODEL]
    argv += ["--store", str(files["store"]), "--max-new-tokens", TOKENS, "--json"]
    assert main([*argv, "--outputs", str(outputs), *extra]) == 0


@pytest.mark.parametrize("system", ["monolith", "compllm", "ft"])
def test_a_system_answers_through_vllm_and_resumes(
    url: str, files: dict[str, Path], system: str, capsys: pytest.CaptureFixture
) -> None:
    outputs = files["tmp"] / f"{system}.jsonl"
    flags = ["--endpoint", url, "--endpoint-concurrency", "3", "--endpoint-grammar", "vllm"]
    if system != "compllm":
        flags = flags[:-2]  # no decomposer: no grammar to send
    eval_answers(files, system, outputs, *flags, "--limit", "2")
    eval_answers(files, system, outputs, *flags)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n"] == 3 and summary["endpoint"]["model"] == SMALL_MODEL
    rows = list(answered(outputs).values())
    assert len(rows) == 3 and all(row["answer"] for row in rows)
    assert all(row[ENDPOINT_KEY] == {"url": url, "model": SMALL_MODEL} for row in rows)
    if system == "compllm":  # the grammar held: every decomposition parsed, experts answered
        assert not any(row["fallback_reason"] for row in rows)
        assert any(route != "base" for row in rows for route in row["routes"])


def test_the_decomposition_f1_under_vllms_grammar(
    url: str, files: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    argv = ["eval", "decomposition", str(files["benchmark"]), "--endpoint", url, "--json"]
    assert main([*argv, "--constrained", "--endpoint-grammar", "vllm"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 3 and report["parse_rate"] == 1.0
