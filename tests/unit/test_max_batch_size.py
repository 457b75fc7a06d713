"""`--max-batch-size` / `load_model(max_batch_size=...)`: checked before anything loads, and
handed to every model an evaluation loads in process (the base and the decomposer's)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

pytest.importorskip("torch", reason="compllm_graph.models loads the [local] engines")


def test_a_batch_below_one_is_refused_before_any_model_loads() -> None:
    from compllm_graph.models import load_model

    with pytest.raises(ValueError, match="max_batch_size must be >= 1, got 0"):
        load_model("no-such-model-anywhere", max_batch_size=0)


@pytest.mark.parametrize(("given", "passed"), [(None, {}), (1, {"max_batch_size": 1})])
def test_eval_models_get_the_batch_size_asked_for(
    monkeypatch: pytest.MonkeyPatch, given: int | None, passed: dict[str, int]
) -> None:
    from compllm_graph.evaluation import systems

    loaded: list[tuple[str, dict[str, Any]]] = []

    def load_model(alias: str, **options: Any) -> str:
        loaded.append((alias, options))
        return alias

    monkeypatch.setattr(systems, "load_model", load_model)
    args = argparse.Namespace(
        model="base-model", engine="llama.cpp", threads=1, max_batch_size=given, endpoint=None
    )
    base = systems.load_for_eval(args)
    systems._decomposer_model(args, "small-decomposer", base)
    expected = {"engine": "llama.cpp", "n_threads": 1, **passed}
    assert loaded == [("base-model", expected), ("small-decomposer", expected)]
