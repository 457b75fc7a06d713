"""`add_adapter_once`: graphs built at once on one model load each adapter once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from compllm_graph.adapter_folder import AdapterError, add_adapter_once


class RefusingModel:
    """Refuses a second load of a name, as the llama.cpp engine does, and loads slowly."""

    def __init__(self) -> None:
        self.loaded: dict[str, Path] = {}
        self.lock = threading.Lock()

    def add_adapter(self, name: str, path: str | Path) -> None:
        with self.lock:  # the engine's own lock: one load at a time, checked inside it
            if name in self.loaded:
                raise AdapterError(f"adapter {name!r} is already loaded")
            time.sleep(0.1)  # wide enough for every thread to find the adapter missing
            self.loaded[name] = Path(path)


class PropertyModel(RefusingModel):
    """`adapters` as the llama.cpp model has it: a property."""

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(self.loaded)


class MethodModel(RefusingModel):
    """`adapters` as a method, as a model of your own may have it."""

    def adapters(self) -> tuple[str, ...]:
        return tuple(self.loaded)


@pytest.mark.parametrize("kind", [PropertyModel, MethodModel])
def test_each_adapter_is_loaded_once_however_many_builds_race(kind: type[RefusingModel]) -> None:
    # `eval answers --system oracle-router` builds a graph per question in flight, and each
    # build asks for every expert's adapter on the one model.
    model = kind()
    names = ["biology", "chemistry"] * 4
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: add_adapter_once(model, name, Path(name)), names))
    assert model.loaded == {"biology": Path("biology"), "chemistry": Path("chemistry")}
    add_adapter_once(model, "biology", Path("elsewhere"))  # loaded: left as it is
    assert model.loaded["biology"] == Path("biology")
