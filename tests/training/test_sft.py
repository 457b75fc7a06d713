"""LoRA SFT on TRL's SFTTrainer, on a tiny random Llama: the answer-only loss, checkpoints,
exact resume, the exported adapter (peft, GGUF LoRA) and the device and precision chosen."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from compllm_graph.training.settings import LoraSettings, TrainSettings
from compllm_graph.training.sft import (
    CHECKPOINTS_DIR,
    IGNORE_INDEX,
    LEGACY_CHECKPOINT_DIR,
    Encoded,
    Precision,
    TrainResult,
    _EpochSeededSampler,
    attach_lora,
    choose_precision,
    last_checkpoint,
    make_trainer,
    save_adapter,
    sft_config,
    total_steps,
    train,
    warm_start,
)
from tests.training.tiny_folder import char_tokenizer, tiny_model

LORA = LoraSettings(r=4, alpha=8, dropout=0.0)
SETTINGS = TrainSettings(epochs=3, batch_size=4, learning_rate=5e-3, save_every=2, warmup_ratio=0)


def toy_data(n: int = 12) -> list[Encoded]:
    """Prompts of varying length followed by a fixed answer the model must learn."""
    data = []
    for i in range(n):
        prompt = [10 + (i + k) % 40 for k in range(3 + i % 4)]
        answer = [60, 61, 62, 3]
        data.append(Encoded(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    return data


def run(
    out: Path,
    settings: TrainSettings = SETTINGS,
    *,
    data: list[Encoded] | None = None,
    resume: bool = False,
    base: str | None = None,
    on_checkpoint: Callable[[TrainResult], None] | None = None,
) -> tuple[PeftModel, TrainResult]:
    """Train a fresh LoRA on a three-layer tiny Llama into `out`."""
    model = attach_lora(tiny_model(layers=3), LORA)
    result = train(
        model,
        toy_data() if data is None else data,
        settings,
        out,
        tokenizer=char_tokenizer(),
        base=base,
        resume=resume,
        on_checkpoint=on_checkpoint,
    )
    return model, result


def test_trl_takes_the_loss_on_the_builders_labels_only(tmp_path: Path) -> None:
    data = toy_data(5)
    trainer = make_trainer(
        attach_lora(tiny_model(), LORA), data, SETTINGS, tmp_path, tokenizer=char_tokenizer()
    )
    prepared: Any = trainer.train_dataset
    assert prepared["input_ids"] == [e.input_ids for e in data]
    assert prepared["labels"] == [e.labels for e in data]


def test_each_epoch_is_a_seeded_order_of_length_sorted_batches() -> None:
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10]
    by_length = sorted(range(10), key=lengths.__getitem__)
    sampler = _EpochSeededSampler(lengths, batch_size=4, seed=0)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and list(sampler) == first
    batches = [set(first[i : i + 4]) for i in range(0, 10, 4)]
    # One window of length-sorted examples cut into batches; the short batch comes last.
    assert {frozenset(b) for b in batches} == {
        frozenset(by_length[0:4]),
        frozenset(by_length[4:8]),
        frozenset(by_length[8:10]),
    }
    assert batches[-1] == set(by_length[8:10])
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(10)) and second != first
    assert list(_EpochSeededSampler(lengths, batch_size=4, seed=1)) != first


def test_the_trainer_batches_follow_the_sampler(tmp_path: Path) -> None:
    data = toy_data(10)
    trainer = make_trainer(
        attach_lora(tiny_model(), LORA), data, SETTINGS, tmp_path, tokenizer=char_tokenizer()
    )
    order = list(_EpochSeededSampler([len(e.input_ids) for e in data], 4, SETTINGS.seed))
    rows = [row for batch in trainer.get_train_dataloader() for row in batch["input_ids"].tolist()]
    assert [row[: len(data[i].input_ids)] for row, i in zip(rows, order)] == [
        data[i].input_ids for i in order
    ]


def test_a_step_loss_is_the_mean_over_the_answer_tokens(tmp_path: Path) -> None:
    data = toy_data(6)
    one_batch = TrainSettings(epochs=1, batch_size=6, learning_rate=1e-3, warmup_ratio=0)
    model = attach_lora(tiny_model(), LORA)
    width = max(len(e.input_ids) for e in data)
    ids = torch.tensor([e.input_ids + [0] * (width - len(e.input_ids)) for e in data])
    labels = torch.tensor([e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in data])
    with torch.no_grad():  # a fresh LoRA changes nothing yet: this is the base model's loss
        logits = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
        expected = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1)
        )
    result = train(model, data, one_batch, tmp_path, tokenizer=char_tokenizer())
    assert result.steps == 1
    assert result.losses[0] == pytest.approx(float(expected), rel=1e-4)


def test_training_lowers_the_loss_and_exports_a_small_adapter(tmp_path: Path) -> None:
    _, result = run(tmp_path, base="tiny-base")
    assert result.finished and result.steps == 9 == total_steps(12, SETTINGS)
    assert len(result.losses) == 9 and result.losses[-1] < result.losses[0]
    weights = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert weights and all(t.dtype == torch.float16 for t in weights.values())
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == "tiny-base"
    assert last_checkpoint(tmp_path) == tmp_path / CHECKPOINTS_DIR / "checkpoint-9"


def test_max_steps_stops_early_and_leaves_a_checkpoint_and_an_adapter(tmp_path: Path) -> None:
    exports: list[int] = []
    _, result = run(
        tmp_path,
        TrainSettings(**{**SETTINGS.__dict__, "max_steps": 3}),
        on_checkpoint=lambda r: exports.append(r.steps),
    )
    assert (result.steps, result.total_steps, result.finished) == (3, 9, False)
    assert exports == [2, 3]  # every checkpoint, and the step the run stopped at
    assert (tmp_path / "adapter_model.safetensors").is_file()
    state = json.loads(
        (tmp_path / CHECKPOINTS_DIR / "checkpoint-3" / "trainer_state.json").read_text()
    )
    assert state["max_steps"] == 9  # the schedule still spans every epoch


def test_resume_continues_exactly(tmp_path: Path) -> None:
    _, straight = run(tmp_path / "a")
    _, first = run(tmp_path / "b", TrainSettings(**{**SETTINGS.__dict__, "max_steps": 4}))
    assert first.steps == 4 and not first.finished
    _, resumed = run(tmp_path / "b", resume=True)
    assert resumed.steps == 9 and resumed.wall_time_s > first.wall_time_s
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-4)


def test_resume_refuses_a_different_plan(tmp_path: Path) -> None:
    run(tmp_path)
    with pytest.raises(ValueError, match="same data and settings"):
        run(tmp_path, data=toy_data(20), resume=True)


def test_resume_passes_over_a_checkpoint_cut_short(tmp_path: Path) -> None:
    run(tmp_path, TrainSettings(**{**SETTINGS.__dict__, "max_steps": 4}))
    cut = tmp_path / CHECKPOINTS_DIR / "checkpoint-6"  # killed while saving: no trainer state
    cut.mkdir()
    (cut / "adapter_model.safetensors").write_bytes(b"half written")
    assert last_checkpoint(tmp_path) == tmp_path / CHECKPOINTS_DIR / "checkpoint-4"
    _, resumed = run(tmp_path, resume=True)
    assert resumed.finished and len(resumed.losses) == 9


def test_resume_without_a_checkpoint_starts_afresh(tmp_path: Path) -> None:
    _, result = run(tmp_path, resume=True)
    assert result.finished and len(result.losses) == 9


def test_a_checkpoint_of_the_earlier_loop_is_refused_with_the_way_out(tmp_path: Path) -> None:
    (tmp_path / LEGACY_CHECKPOINT_DIR).mkdir()
    (tmp_path / LEGACY_CHECKPOINT_DIR / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match="without --resume, or pass --init-adapter"):
        run(tmp_path, resume=True)


def test_a_fresh_run_clears_an_earlier_runs_checkpoints(tmp_path: Path) -> None:
    run(tmp_path)
    run(tmp_path, TrainSettings(**{**SETTINGS.__dict__, "max_steps": 2}))
    assert last_checkpoint(tmp_path) == tmp_path / CHECKPOINTS_DIR / "checkpoint-2"


def test_save_adapter_round_trips_through_peft(tmp_path: Path) -> None:
    model, _ = run(tmp_path / "run")
    save_adapter(model, tmp_path / "export")
    ids = torch.tensor([toy_data(1)[0].input_ids])
    reloaded = PeftModel.from_pretrained(tiny_model(layers=3), str(tmp_path / "export"))
    with torch.no_grad():
        assert torch.allclose(
            model(input_ids=ids).logits, reloaded(input_ids=ids).logits, atol=1e-2
        )


def test_the_exported_adapter_converts_to_a_gguf_lora(tmp_path: Path) -> None:
    import gguf

    from compllm_graph.models.gguf_lora import BaseShape, convert

    run(tmp_path / "run")
    path = convert(tmp_path / "run", BaseShape("llama", heads=4, kv_heads=2), tmp_path / "a.gguf")
    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    # 3 layers x 7 projections x (lora_a, lora_b)
    assert len(names) == 42 and "blk.2.attn_q.weight.lora_a" in names


def test_no_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training"):
        run(tmp_path, data=[])


def test_top_layers_only_adapts_the_last_layers() -> None:
    model = attach_lora(tiny_model(layers=3), LoraSettings(top_layers=1))
    adapted = {
        n.split(".layers.")[1].split(".")[0] for n, p in model.named_parameters() if p.requires_grad
    }
    assert adapted == {"2"}


def test_this_machine_trains_on_the_cpu_in_fp32() -> None:
    precision = choose_precision()
    assert precision == Precision(device="cpu", bf16=False, processes=1)
    assert precision.dtype == torch.float32
    assert precision.as_dict() == {"device": "cpu", "precision": "fp32", "processes": 1}


def test_bf16_and_processes_reach_the_trainer(tmp_path: Path) -> None:
    config = sft_config(SETTINGS, tmp_path, 9, Precision("cpu", bf16=False, processes=2))
    assert config.per_device_train_batch_size == 2 and not config.bf16
    assert Precision("cuda", bf16=True, processes=1).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="does not split evenly between 3 processes"):
        sft_config(SETTINGS, tmp_path, 9, Precision("cpu", bf16=False, processes=3))


def test_warm_start_continues_from_a_trained_adapter(tmp_path: Path) -> None:
    trained, _ = run(tmp_path)
    second = attach_lora(tiny_model(layers=3), LORA, seed=7)
    warm_start(second, tmp_path)
    ids = torch.tensor([toy_data(1)[0].input_ids])
    with torch.no_grad():
        assert torch.allclose(
            trained(input_ids=ids).logits, second(input_ids=ids).logits, atol=1e-2
        )
        fresh = attach_lora(tiny_model(layers=3), LORA)
        assert not torch.allclose(fresh(input_ids=ids).logits, second(input_ids=ids).logits)


def test_warm_start_refuses_what_does_not_fit(tmp_path: Path) -> None:
    run(tmp_path)
    with pytest.raises(ValueError, match="does not fit"):
        warm_start(attach_lora(tiny_model(layers=3), LoraSettings(r=8, alpha=16)), tmp_path)
    with pytest.raises(ValueError, match="does not fit"):
        warm_start(
            attach_lora(tiny_model(layers=3), LoraSettings(r=4, target_modules=("q_proj",))),
            tmp_path,
        )
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        warm_start(attach_lora(tiny_model(layers=3), LORA), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no adapter_model\.safetensors"):
        warm_start(attach_lora(tiny_model(layers=3), LORA), tmp_path / "missing")


def test_the_compact_head_matches_trls_fused_head() -> None:
    from trl.trainer.utils import add_fused_lm_head

    from compllm_graph.training.sft import compact_fused_head

    trl_head, compact = tiny_model(layers=3), tiny_model(layers=3)
    for model in (trl_head, compact):
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    compact_fused_head(compact)
    data = toy_data(4)
    width = max(len(e.input_ids) for e in data)
    batch = {
        "input_ids": torch.tensor([e.input_ids + [0] * (width - len(e.input_ids)) for e in data]),
        "labels": torch.tensor([e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in data]),
    }
    batch["attention_mask"] = (batch["input_ids"] != 0).long()
    outputs = [model(**batch, fused_lm_head=True) for model in (trl_head, compact)]
    for name in ("loss", "log_probs", "entropy"):
        assert torch.allclose(getattr(outputs[0], name), getattr(outputs[1], name), atol=1e-5)
    assert torch.equal(outputs[0].is_top1, outputs[1].is_top1)
    assert torch.equal(outputs[0].label_mask, outputs[1].label_mask)
    for output in outputs:
        output.loss.backward()
    grads = [
        dict(m.named_parameters())["model.layers.0.mlp.up_proj.weight"].grad
        for m in (trl_head, compact)
    ]
    assert grads[0] is not None and grads[1] is not None
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
    assert compact(**batch).logits.shape[-1] == trl_head.config.vocab_size  # generation untouched
