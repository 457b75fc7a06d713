"""`build_default_graph(decomposer_model=...)` on real models: SmolLM2 loaded twice, one copy
decomposing with its shipped adapter, the other answering with its shipped experts.

The same model on both sides keeps the test to the one model the tests fetch; what it checks is
the wiring: the decomposer adapter goes to the decomposing copy only, the experts' to the other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_smollm2, smollm2_decomposer

pytestmark = pytest.mark.integration

QUESTION = "What is the chemical formula of water, and what is 12 times 7?"


def test_a_second_model_decomposes_while_the_first_answers(tmp_path: Path) -> None:
    require_smollm2()
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: `make setup`")
    smollm2_decomposer()  # skips without SmolLM2's expert pack
    from compllm_graph.defaults import build_default_graph
    from compllm_graph.expert_store.demo import build_demo_store
    from compllm_graph.models import SMALL_MODEL, load_model

    model = load_model(SMALL_MODEL, engine="llama.cpp", n_threads=2)
    decomposing = load_model(SMALL_MODEL, engine="llama.cpp", n_threads=2)
    store = build_demo_store(tmp_path / "store", base=SMALL_MODEL, embedder="hashing:256")
    graph = build_default_graph(
        model, store, decomposer_model=decomposing, max_new_tokens=24
    ).compile()
    out = graph.invoke({"query": QUESTION})

    assert decomposing.adapters == ("decomposer",)  # the decomposer's adapter, nothing else
    experts = {e.name for e in store.experts() if e.adapter is not None}
    assert experts and set(model.adapters) == experts  # the experts' adapters, no decomposer
    sub_queries = out["query_graph"]["sub_queries"]
    assert len(sub_queries) >= 2, out  # two questions joined by "and" come apart
    assert out["answer"].strip()
