"""`add_adapter_once`: graphs built at once on one model load each adapter once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from compllm_graph.adapter_folder import add_adapter_once
from tests.fakes import RefusingModel


class MethodModel:
    """`adapters` as a method, as a model of your own may have it."""

    def __init__(self) -> None:
        self.model = RefusingModel()
        self.add_adapter = self.model.add_adapter
        self.loaded = self.model.loaded

    def adapters(self) -> tuple[str, ...]:
        return self.model.adapters


@pytest.mark.parametrize("kind", [RefusingModel, MethodModel])
def test_each_adapter_is_loaded_once_however_many_builds_race(
    kind: type[RefusingModel | MethodModel],
) -> None:
    # `eval answers --system oracle-router` builds a graph per question in flight, and each
    # build asks for every expert's adapter on the one model.
    model = kind()
    names = ["biology", "chemistry"] * 4
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: add_adapter_once(model, name, Path(name)), names))
    assert model.loaded == {"biology": Path("biology"), "chemistry": Path("chemistry")}
    add_adapter_once(model, "biology", Path("elsewhere"))  # loaded: left as it is
    assert model.loaded["biology"] == Path("biology")
