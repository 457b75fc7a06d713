"""The LoRA training loop on a tiny random Llama: loss, checkpoints, resume, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from compllm_graph.training.settings import LoraSettings, TrainSettings
from compllm_graph.training.sft import (
    IGNORE_INDEX,
    Encoded,
    attach_lora,
    batch_plan,
    collate,
    save_adapter,
    target_loss,
    train,
    warm_start,
)
from tests.tiny import tiny_llama


def tiny_model() -> LlamaForCausalLM:
    return tiny_llama(num_hidden_layers=3, max_position_embeddings=64)


def toy_data(n: int = 12) -> list[Encoded]:
    """Prompts of varying length followed by a fixed answer the model must learn."""
    data = []
    for i in range(n):
        prompt = [3 + (i + k) % 20 for k in range(3 + i % 4)]
        answer = [40, 41, 42, 2]
        data.append(Encoded(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    return data


SETTINGS = TrainSettings(epochs=3, batch_size=4, learning_rate=5e-3, save_every=2, warmup_ratio=0)


def test_batch_plan_covers_every_example_each_epoch() -> None:
    plan = batch_plan([5, 1, 9, 3, 7, 2, 8, 4, 6, 10], TrainSettings(epochs=2, batch_size=4))
    assert len(plan) == 6  # 3 batches per epoch, the last one partial
    for epoch in (plan[:3], plan[3:]):
        assert sorted(i for batch in epoch for i in batch) == list(range(10))
    assert plan == batch_plan(
        [5, 1, 9, 3, 7, 2, 8, 4, 6, 10], TrainSettings(epochs=2, batch_size=4)
    )


def test_collate_pads_right_and_masks() -> None:
    batch = collate([Encoded([1, 2, 3], [IGNORE_INDEX, 2, 3]), Encoded([4], [4])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_target_loss_matches_the_model_loss() -> None:
    model = attach_lora(tiny_model(), LoraSettings())
    batch = collate(toy_data(4), pad_id=0)
    with torch.no_grad():
        expected = float(model(**batch).loss)
        assert float(target_loss(model, batch)) == pytest.approx(expected, rel=1e-5)


def test_top_layers_only_adapts_the_last_layers() -> None:
    model = attach_lora(tiny_model(), LoraSettings(top_layers=1))
    adapted = {
        n.split(".layers.")[1].split(".")[0] for n, p in model.named_parameters() if p.requires_grad
    }
    assert adapted == {"2"}


def test_training_lowers_the_loss_and_exports_a_small_adapter(tmp_path: Path) -> None:
    model = attach_lora(tiny_model(), LoraSettings(r=4, alpha=8, dropout=0.0))
    result = train(model, toy_data(), SETTINGS, tmp_path, pad_id=0)
    assert result.finished and result.steps == 9
    assert result.losses[-1] < result.losses[0]
    weights = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert weights and all(t.dtype == torch.float16 for t in weights.values())
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 4


def test_resume_continues_exactly(tmp_path: Path) -> None:
    lora = LoraSettings(r=4, alpha=8, dropout=0.0)
    straight = train(
        attach_lora(tiny_model(), lora), toy_data(), SETTINGS, tmp_path / "a", pad_id=0
    )
    first = train(
        attach_lora(tiny_model(), lora),
        toy_data(),
        TrainSettings(**{**SETTINGS.__dict__, "max_steps": 4}),
        tmp_path / "b",
        pad_id=0,
    )
    assert first.steps == 4 and not first.finished
    resumed = train(
        attach_lora(tiny_model(), lora),
        toy_data(),
        SETTINGS,
        tmp_path / "b",
        pad_id=0,
        resume=True,
    )
    assert resumed.steps == 9
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-4)


def test_resume_refuses_a_different_plan(tmp_path: Path) -> None:
    lora = LoraSettings(r=4, alpha=8, dropout=0.0)
    train(attach_lora(tiny_model(), lora), toy_data(), SETTINGS, tmp_path, pad_id=0)
    with pytest.raises(ValueError, match="same data and settings"):
        train(
            attach_lora(tiny_model(), lora), toy_data(20), SETTINGS, tmp_path, pad_id=0, resume=True
        )


def test_save_adapter_round_trips_through_peft(tmp_path: Path) -> None:
    from peft import PeftModel

    model = attach_lora(tiny_model(), LoraSettings(r=4, alpha=8, dropout=0.0))
    train(model, toy_data(), SETTINGS, tmp_path / "run", pad_id=0)
    save_adapter(model, tmp_path / "export")
    batch = collate(toy_data(2), pad_id=0)
    reloaded = PeftModel.from_pretrained(tiny_model(), str(tmp_path / "export"))
    with torch.no_grad():
        expected = model(**batch).logits
        got = reloaded(**batch).logits
    assert torch.allclose(expected, got, atol=1e-2)


def test_no_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training"):
        train(attach_lora(tiny_model(), LoraSettings()), [], SETTINGS, tmp_path, pad_id=0)


def test_warm_start_continues_from_a_trained_adapter(tmp_path: Path) -> None:
    trained = attach_lora(tiny_model(), LoraSettings(r=4, alpha=8, dropout=0.0))
    train(trained, toy_data(), SETTINGS, tmp_path, pad_id=0)
    second = attach_lora(tiny_model(), LoraSettings(r=4, alpha=8, dropout=0.0), seed=7)
    warm_start(second, tmp_path)
    batch = collate(toy_data(2), pad_id=0)
    trained.eval()
    second.eval()
    with torch.no_grad():
        assert torch.allclose(trained(**batch).logits, second(**batch).logits, atol=1e-2)
        # A no-op warm start would leave the fresh adapter, which scores like the base model.
        fresh = attach_lora(tiny_model(), LoraSettings(r=4, alpha=8, dropout=0.0))
        assert target_loss(second, batch) < target_loss(fresh, batch) - 0.1


def test_warm_start_refuses_what_does_not_fit(tmp_path: Path) -> None:
    train(
        attach_lora(tiny_model(), LoraSettings(r=4, alpha=8)),
        toy_data(),
        SETTINGS,
        tmp_path,
        pad_id=0,
    )
    with pytest.raises(ValueError, match="does not fit"):
        warm_start(attach_lora(tiny_model(), LoraSettings(r=8, alpha=16)), tmp_path)
    with pytest.raises(ValueError, match="does not fit"):
        warm_start(
            attach_lora(tiny_model(), LoraSettings(r=4, target_modules=("q_proj",))), tmp_path
        )
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        warm_start(attach_lora(tiny_model(), LoraSettings(r=4, alpha=8)), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no adapter_model\.safetensors"):
        warm_start(attach_lora(tiny_model(), LoraSettings(r=4, alpha=8)), tmp_path / "missing")
