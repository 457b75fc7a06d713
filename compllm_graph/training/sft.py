"""A plain LoRA fine-tuning loop for small causal LMs on CPU.

Used for both the decomposer (loss on the answer tokens only) and domain experts (loss on every
token). AdamW, linear warm-up then cosine decay, weight decay, gradient clipping, a tqdm bar with
the loss, and a checkpoint every few steps from which `resume=True` continues exactly where the
run stopped (same data order; the adapter is also exported at each checkpoint, so a run that is
cut short still leaves a usable adapter).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from compllm_graph.training.settings import LoraSettings, TrainSettings

IGNORE_INDEX = -100
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
CHECKPOINT_DIR = "checkpoint"
_BUCKET_BATCHES = 16


@dataclass(frozen=True)
class Encoded:
    """One tokenised training sequence; `labels` is `IGNORE_INDEX` where no loss is taken."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class TrainResult:
    """What a run did: steps taken, loss per step, seconds spent (resumed runs add up)."""

    steps: int
    total_steps: int
    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def finished(self) -> bool:
        return self.steps >= self.total_steps

    def loss_summary(self) -> dict[str, Any]:
        """First and last step's loss, the means of the first and last 10 (one batch's loss is
        noisy: a short run can end on a hard batch), and every step's."""
        losses = self.losses
        head, tail = losses[:10], losses[-10:]
        return {
            "first": round(losses[0], 4) if losses else None,
            "last": round(losses[-1], 4) if losses else None,
            "first_10_mean": round(sum(head) / len(head), 4) if head else None,
            "last_10_mean": round(sum(tail) / len(tail), 4) if tail else None,
            "per_step": [round(x, 4) for x in losses],
        }


def attach_lora(model: Any, lora: LoraSettings, seed: int = 0) -> PeftModel:
    """Wrap a causal LM with fresh trainable LoRA adapters (base weights frozen)."""
    torch.manual_seed(seed)
    layers = None
    if lora.top_layers is not None:
        depth = int(model.config.num_hidden_layers)
        layers = list(range(max(0, depth - lora.top_layers), depth))
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def warm_start(model: PeftModel, folder: Path) -> None:
    """Replace the fresh LoRA weights of `model` with a trained adapter's (safetensors only).

    Raises:
        FileNotFoundError: `folder` holds no adapter weights.
        ValueError: the weights do not fit `model`'s adapters (another base, rank or targets).
    """
    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS} in {folder}: give one `compllm train` wrote")
    fix = "train on the base model and with the --lora-* settings that adapter was trained with"
    try:
        loaded: Any = set_peft_model_state_dict(model, load_file(str(path)))
    except (RuntimeError, ValueError, SafetensorError) as exc:
        raise ValueError(f"the adapter at {folder} does not fit: {exc}; {fix}") from exc
    missing = [k for k in loaded.missing_keys if "lora_" in k]
    if loaded.unexpected_keys or missing:
        odd = (loaded.unexpected_keys or missing)[0]
        raise ValueError(f"the adapter at {folder} does not fit ({odd!r} has no match); {fix}")


def target_loss(model: PeftModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions.

    The output projection (a 49k-word vocabulary for SmolLM2) runs only where a label is,
    not over the prompt, which saves time and memory when the prompt is most of the sequence.
    """
    causal: Any = model.get_base_model()
    hidden = causal.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    logits = causal.get_output_embeddings()(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), labels[keep])


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest sequence."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def batch_plan(lengths: Sequence[int], settings: TrainSettings) -> list[list[int]]:
    """Example indices of every step.

    Each epoch is a fresh seeded shuffle; within windows of 16 batches the examples are sorted
    by length so a batch pads little, and the batches are then shuffled again.
    """
    n_examples = len(lengths)
    steps_per_epoch = math.ceil(n_examples / settings.batch_size)
    total = max(1, math.ceil(steps_per_epoch * settings.epochs))
    window = settings.batch_size * _BUCKET_BATCHES
    plan: list[list[int]] = []
    epoch = 0
    while len(plan) < total:
        rng = random.Random(settings.seed * 1000 + epoch)
        order = list(range(n_examples))
        rng.shuffle(order)
        batches: list[list[int]] = []
        for start in range(0, n_examples, window):
            chunk = sorted(order[start : start + window], key=lengths.__getitem__)
            size = settings.batch_size
            batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
        rng.shuffle(batches)
        plan.extend(batches)
        epoch += 1
    return plan[:total]


def _lora_state(model: PeftModel) -> dict[str, torch.Tensor]:
    """The adapter weights. Embeddings are never trained here; saying so also stops peft from
    asking the Hugging Face hub about the base model's vocabulary."""
    return get_peft_model_state_dict(model, save_embedding_layers=False)


def save_adapter(model: PeftModel, out_dir: Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write the adapter as safetensors (half precision keeps it small) plus its config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous() for k, v in _lora_state(model).items()}
    save_file(state, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    model.peft_config["default"].save_pretrained(str(out_dir))
    return out_dir / ADAPTER_WEIGHTS


def train(
    model: PeftModel,
    data: Sequence[Encoded],
    settings: TrainSettings,
    out_dir: Path,
    *,
    pad_id: int,
    resume: bool = False,
    on_checkpoint: Callable[[TrainResult], None] | None = None,
) -> TrainResult:
    """Fine-tune the LoRA parameters of `model` on `data`.

    Args:
        model: A model from `attach_lora` (or a `PeftModel` with trainable adapters).
        data: Tokenised sequences.
        settings: Optimisation hyper-parameters.
        out_dir: Receives `checkpoint/` and the exported adapter.
        pad_id: Token id used for padding.
        resume: Continue from `out_dir/checkpoint` if it exists.
        on_checkpoint: Called after each checkpoint (and at the end) with the progress so far.

    Returns:
        Steps done, per-step losses and wall time, including those of resumed runs.

    Raises:
        ValueError: no data, or a checkpoint from a different plan.
    """
    if not data:
        raise ValueError("no training sequences")
    plan = batch_plan([len(e.input_ids) for e in data], settings)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(settings.warmup_ratio * len(plan)), len(plan)
    )
    result = TrainResult(steps=0, total_steps=len(plan))
    checkpoint = out_dir / CHECKPOINT_DIR
    if resume and (checkpoint / "trainer_state.json").is_file():
        result = _load_checkpoint(model, optimizer, scheduler, checkpoint, len(plan))
    stop = min(len(plan), settings.max_steps or len(plan))
    model.train()
    started = time.monotonic() - result.wall_time_s
    bar = tqdm(total=stop, initial=result.steps, desc="train", unit="step", dynamic_ncols=True)
    for step in range(result.steps, stop):
        batch = collate([data[i] for i in plan[step]], pad_id)
        loss = target_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(float(loss.detach()))
        result.steps = step + 1
        result.wall_time_s = time.monotonic() - started
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.update(1)
        if result.steps % settings.save_every == 0 or result.steps == stop:
            _save_checkpoint(model, optimizer, scheduler, checkpoint, result)
            save_adapter(model, out_dir)
            if on_checkpoint is not None:
                on_checkpoint(result)
    bar.close()
    model.eval()
    return result


def _save_checkpoint(
    model: PeftModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    folder: Path,
    result: TrainResult,
) -> None:
    """Full-precision adapter, optimiser moments, schedule and progress, written then renamed."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    adapter = {k: v.detach().contiguous() for k, v in _lora_state(model).items()}
    save_file(adapter, str(tmp / ADAPTER_WEIGHTS))
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": value.contiguous()
        for index, slots in state["state"].items()
        for key, value in slots.items()
    }
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "trainer_state.json").write_text(
        json.dumps(
            {
                "result": asdict(result),
                "param_groups": state["param_groups"],
                "scheduler": scheduler.state_dict(),
            }
        )
    )
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
        folder.rmdir()
    tmp.rename(folder)


def _load_checkpoint(
    model: PeftModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    folder: Path,
    total_steps: int,
) -> TrainResult:
    saved = json.loads((folder / "trainer_state.json").read_text())
    result = TrainResult(**saved["result"])
    if result.total_steps != total_steps:
        raise ValueError(
            f"the checkpoint in {folder} was made for {result.total_steps} steps, this run has "
            f"{total_steps}: use the same data and settings to resume"
        )
    set_peft_model_state_dict(model, load_file(str(folder / ADAPTER_WEIGHTS)))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in load_file(str(folder / "optimizer.safetensors")).items():
        index, key = name.split(".", 1)
        slots.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": slots, "param_groups": saved["param_groups"]})
    scheduler.load_state_dict(saved["scheduler"])
    return result
