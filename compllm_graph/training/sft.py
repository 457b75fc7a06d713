"""LoRA supervised fine-tuning on TRL's `SFTTrainer`, for decomposers and domain experts.

The data builders (`expert.encode_pairs`, `decomposer_sft.encode_example`, ...) tokenise each
example into an `Encoded` sequence whose labels are `IGNORE_INDEX` where no loss is taken (the
prompt of a question/answer pair). `train` hands those sequences to TRL as a pre-tokenised
dataset with a `completion_mask`, so TRL's completion-only loss trains on the answer tokens
only, and TRL and the `transformers.Trainer` underneath do the rest: the device (CUDA, MPS, XPU
or CPU) and precision (bf16 where the accelerator has it, fp32 on the CPU), padding, AdamW with
warm-up then cosine decay, gradient clipping, checkpoints that `resume=True` continues exactly
(adapter, optimiser, schedule, random state and data position), logging, and data-parallel
training on several processes under `accelerate launch`.

What stays here is what the project promises on top: its order of the examples (batches of
similar lengths, drawn anew each epoch from the seed, so a resumed run sees the same batches), a
progress bar with the loss, the adapter exported as half-precision safetensors at every
checkpoint (so a run cut short still leaves a usable adapter, which `models.gguf_lora` converts
for llama.cpp), `max_steps` that stops early on the full schedule, the wall time summed over
resumed runs, and a loss head that projects only the labelled positions where TRL's own does
not (`compact_fused_head`).
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import Sampler
from tqdm import tqdm
from transformers import ProgressCallback, TrainerCallback
from transformers.trainer_callback import ExportableState

from compllm_graph._extras import requires
from compllm_graph._progress import verbose
from compllm_graph.training.settings import LoraSettings, TrainSettings

with requires("train"):
    import datasets
    from accelerate import PartialState
    from accelerate.utils import (
        get_int_from_env,
        get_torch_accelerator_backend,
        is_bf16_available,
        parse_flag_from_env,
    )
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.utils import FusedCausalLMOutput

IGNORE_INDEX = -100
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
CHECKPOINTS_DIR = "checkpoints"
"""Where `train` keeps the Trainer's `checkpoint-N` folders, inside the output folder."""
LEGACY_CHECKPOINT_DIR = "checkpoint"
"""The folder the earlier hand-written loop checkpointed into; the Trainer cannot resume it."""
_TRAINER_STATE = "trainer_state.json"
_SORTED_BATCHES = 16  # batches per window of examples sorted by length
# What torchrun (under `accelerate launch`) and MPI launchers set.
_WORLD_SIZE = ["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"]
_RANK = ["RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"]
_TRITON_DEVICES = ("cuda", "xpu")  # where TRL's fused head scores the labelled positions only
# Config fields of heads that scale or cap their logits (TRL's fused head applies them).
_SCALED_HEADS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


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


@dataclass(frozen=True)
class Precision:
    """Where training runs and in which precision.

    Attributes:
        device: "cuda", "mps", "xpu", ... or "cpu" (`ACCELERATE_USE_CPU=1` or
            `CUDA_VISIBLE_DEVICES=""` force the CPU).
        bf16: bf16 mixed precision (bf16 base weights, fp32 adapters and optimiser state).
        processes: How many processes train together (data parallel).
    """

    device: str
    bf16: bool
    processes: int

    @property
    def dtype(self) -> torch.dtype:
        """The dtype to load the base model's weights in."""
        return torch.bfloat16 if self.bf16 else torch.float32

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "precision": "bf16" if self.bf16 else "fp32",
            "processes": self.processes,
        }


def choose_precision() -> Precision:
    """The accelerator torch sees (none, or `ACCELERATE_USE_CPU=1`: the CPU), bf16 where it has
    it and fp32 on the CPU (CPU bf16 autocast is slower than fp32 on most CPUs and changes the
    numbers), and the number of processes the launcher started.

    Read from torch and the launcher's environment, not from accelerate's process state: the
    Trainer sets that up itself, from its own arguments.
    """
    device = "cpu"
    if not parse_flag_from_env("ACCELERATE_USE_CPU"):
        device = get_torch_accelerator_backend()[0] or "cpu"
    bf16 = device != "cpu" and is_bf16_available(ignore_tpu=True)
    return Precision(device=device, bf16=bf16, processes=get_int_from_env(_WORLD_SIZE, 1))


def trainer_provenance() -> dict[str, Any]:
    """What trained an adapter, for its `training.json`: the device, precision, processes (and
    their backend), and the versions of the libraries that did the work. Call it after
    training, when the Trainer has set up the processes."""
    from importlib.metadata import version

    libraries = ("trl", "transformers", "peft", "accelerate", "torch")
    precision = choose_precision()
    record: dict[str, Any] = {"library": "trl.SFTTrainer", **precision.as_dict()}
    if precision.processes > 1:
        record["backend"] = PartialState().backend  # gloo between CPUs, nccl between GPUs
    record["versions"] = {name: version(name) for name in libraries}
    return record


def is_main_process() -> bool:
    """Whether this is the process that writes files (always, outside a multi-process launch)."""
    return get_int_from_env(_RANK, 0) == 0


def lora_config(lora: LoraSettings, depth: int) -> LoraConfig:
    """peft's `LoraConfig` for `lora` on a model with `depth` transformer layers."""
    layers = None
    if lora.top_layers is not None:
        layers = list(range(max(0, depth - lora.top_layers), depth))
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )


def attach_lora(model: Any, lora: LoraSettings, seed: int = 0) -> PeftModel:
    """Wrap a causal LM with fresh trainable LoRA adapters (base weights frozen)."""
    torch.manual_seed(seed)
    config = lora_config(lora, int(model.config.num_hidden_layers))
    with warnings.catch_warnings():
        # peft reads a transformers attribute that transformers 5 renamed; nothing to act on.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
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


def save_adapter(
    model: PeftModel,
    out_dir: Path,
    *,
    base: str | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write the adapter as safetensors (half precision keeps it small) plus its config.

    Args:
        model: The model whose LoRA weights to export.
        out_dir: The adapter folder.
        base: Recorded as the config's base model (an alias rather than the cache folder the
            weights loaded from); None keeps what the model has.
        dtype: The exported weights' dtype.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    # Embeddings are never trained here; saying so also stops peft from asking the Hugging Face
    # hub about the base model's vocabulary.
    lora = get_peft_model_state_dict(model, save_embedding_layers=False)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in lora.items()}
    save_file(state, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    config = copy.copy(model.peft_config["default"])
    if base is not None:
        config.base_model_name_or_path = base
    config.save_pretrained(str(out_dir))
    return out_dir / ADAPTER_WEIGHTS


def total_steps(n_sequences: int, settings: TrainSettings) -> int:
    """Optimiser steps of the whole schedule: `epochs` passes of batches of `batch_size`."""
    return max(1, math.ceil(math.ceil(n_sequences / settings.batch_size) * settings.epochs))


def last_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete Trainer checkpoint under `out_dir`, or None.

    A run killed while saving leaves a folder without `trainer_state.json` (the Trainer writes
    it last); such a folder is passed over.
    """
    folder = out_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    steps = [
        (int(p.name.split("-")[1]), p)
        for p in folder.glob("checkpoint-*")
        if p.name.split("-")[1].isdigit() and (p / _TRAINER_STATE).is_file()
    ]
    return max(steps)[1] if steps else None


def train(
    model: PeftModel,
    data: Sequence[Encoded],
    settings: TrainSettings,
    out_dir: Path,
    *,
    tokenizer: Any,
    base: str | None = None,
    resume: bool = False,
    on_checkpoint: Callable[[TrainResult], None] | None = None,
) -> TrainResult:
    """Fine-tune the LoRA parameters of `model` on `data` with TRL's `SFTTrainer`.

    Under `accelerate launch` every process calls this with the same arguments; `batch_size`
    stays the number of sequences per optimiser step, split evenly between the processes, and
    only the main process writes the adapter and calls `on_checkpoint`.

    Args:
        model: A model from `attach_lora` (or a `PeftModel` with trainable adapters).
        data: Tokenised sequences.
        settings: Optimisation hyper-parameters.
        out_dir: Receives `checkpoints/` and the exported adapter.
        tokenizer: The model's tokenizer (a transformers tokenizer; its pad token, or else its
            end-of-text token, pads).
        base: Recorded as the exported adapter's base model.
        resume: Continue from the newest checkpoint in `out_dir/checkpoints` if there is one.
        on_checkpoint: Called after each checkpoint (and at the end) with the progress so far.

    Returns:
        Steps done, per-step losses and wall time, including those of resumed runs.

    Raises:
        ValueError: no data, a batch that does not split between the processes, or a
            checkpoint from a different plan.
    """
    if not data:
        raise ValueError("no training sequences")
    total = total_steps(len(data), settings)
    checkpoint = _resume_point(out_dir, total) if resume else None
    if checkpoint is None and is_main_process():
        shutil.rmtree(out_dir / CHECKPOINTS_DIR, ignore_errors=True)  # a fresh run's own
    trainer = make_trainer(
        model, data, settings, out_dir, tokenizer=tokenizer, base=base, on_checkpoint=on_checkpoint
    )
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    model.eval()
    progress = next(c for c in trainer.callback_handler.callbacks if isinstance(c, _Progress))
    return progress.result(trainer.state)


def make_trainer(
    model: PeftModel,
    data: Sequence[Encoded],
    settings: TrainSettings,
    out_dir: Path,
    *,
    tokenizer: Any,
    base: str | None = None,
    on_checkpoint: Callable[[TrainResult], None] | None = None,
) -> SFTTrainer:
    """The `SFTTrainer` that `train` runs, with the project's callbacks (see `train`).

    Raises:
        ValueError: no data, or a batch that does not split between the processes.
    """
    if not data:
        raise ValueError("no training sequences")
    if not verbose():
        datasets.disable_progress_bars()  # TRL's label-building pass over the data
    total = total_steps(len(data), settings)
    trainer = _SFTTrainer(
        model=model,
        args=sft_config(settings, out_dir, total, choose_precision()),
        train_dataset=_dataset(data),
        processing_class=tokenizer,
        callbacks=[_Progress(out_dir, total, settings.max_steps, base, on_checkpoint)],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_LossBar(min(total, settings.max_steps or total)))
    compact_fused_head(model.get_base_model())  # the model TRL patched
    return trainer


def compact_fused_head(causal: Any) -> None:
    """Make TRL's fused LM head project only the labelled positions where Triton does not run.

    `SFTTrainer` patches the model with a head that returns each label's log-probability
    without materialising the logits. On CUDA and XPU it runs Triton kernels on the labelled
    positions only; elsewhere (CPU, MPS) it scores every position, prompt included, in tiles
    it recomputes in the backward pass: about seven times the head's work when a third of the
    tokens carry a label, as in the experts' question/answer data. There, this wraps TRL's
    head with one that projects the labelled positions only and returns the same fields, so
    TRL's loss, gradient scaling and metrics are unchanged. Heads TRL adjusts for a model
    (logit scaling or soft-capping, mixture-of-experts losses) keep TRL's path.
    """
    fused = causal.forward
    config = causal.config.get_text_config()
    if any(getattr(config, name, None) is not None for name in _SCALED_HEADS):
        return

    def forward(self: Any, *args: Any, fused_lm_head: bool = False, **kwargs: Any) -> Any:
        head = self.get_output_embeddings()
        if (
            not fused_lm_head
            or head.weight.device.type in _TRITON_DEVICES
            or "shift_labels" in kwargs
            or kwargs.get("output_router_logits")
            or getattr(config, "output_router_logits", False)
        ):
            return fused(*args, fused_lm_head=fused_lm_head, **kwargs)
        labels = kwargs.pop("labels")
        count = kwargs.pop("num_items_in_batch", None)
        hidden = self.base_model(*args, **{**kwargs, "use_cache": False}).last_hidden_state
        return _labelled_log_probs(head, hidden[:, :-1], labels[:, 1:], count)

    causal.forward = types.MethodType(forward, causal)


def _labelled_log_probs(
    head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor, count: Any
) -> FusedCausalLMOutput:
    """TRL's fused-head output (zero where the label is `IGNORE_INDEX`), from the labelled
    positions' logits only."""
    mask = labels != IGNORE_INDEX
    targets = labels[mask]
    log_probs = head(hidden[mask]).float().log_softmax(-1)
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():  # metrics only
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        top1 = log_probs.argmax(-1) == targets

    def spread(values: torch.Tensor) -> torch.Tensor:
        return values.new_zeros(mask.shape).masked_scatter(mask, values)

    per_token = spread(picked)
    total = mask.sum().clamp(min=1) if count is None else count
    return FusedCausalLMOutput(
        loss=-per_token.sum() / total,
        log_probs=per_token,
        entropy=spread(entropy),
        is_top1=spread(top1),
        label_mask=mask,
    )


def sft_config(
    settings: TrainSettings, out_dir: Path, total: int, precision: Precision
) -> SFTConfig:
    """TRL's arguments for `settings`: the schedule spans `total` steps, `batch_size` sequences
    per step split between the processes, a checkpoint every `save_every` steps.

    Raises:
        ValueError: `batch_size` does not split evenly between the processes.
    """
    if settings.batch_size % precision.processes:
        raise ValueError(
            f"a batch of {settings.batch_size} does not split evenly between "
            f"{precision.processes} processes: pass a --batch-size that is a multiple of it"
        )
    return SFTConfig(
        output_dir=str(out_dir / CHECKPOINTS_DIR),
        per_device_train_batch_size=settings.batch_size // precision.processes,
        max_steps=total,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=math.ceil(settings.warmup_ratio * total),
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        seed=settings.seed,
        bf16=precision.bf16,
        # Without it, processes torchrun starts on a machine with no accelerator would each
        # train alone instead of together over gloo.
        use_cpu=precision.device == "cpu",
        **_no_activation_checkpointing(),
        # The builders have already cut each sequence to the length they were asked for.
        max_length=None,
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="steps",
        save_steps=settings.save_every,
        save_total_limit=1,
        report_to="none",
        disable_tqdm=False,
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=precision.device == "cuda",
    )


def _no_activation_checkpointing() -> dict[str, Any]:
    """Turn off TRL's default of checkpointing activations: it saves accelerator memory on large
    bases but recomputes the forward pass, a third more compute per step. transformers 5 renamed
    the argument (the old name still works, with a warning)."""
    fields = SFTConfig.__dataclass_fields__
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    return {name: False}


def _dataset(data: Sequence[Encoded]) -> datasets.Dataset:
    """Pre-tokenised sequences; TRL turns `completion_mask` into the labels (prompt: -100)."""
    return datasets.Dataset.from_dict(
        {
            "input_ids": [e.input_ids for e in data],
            "completion_mask": [[int(x != IGNORE_INDEX) for x in e.labels] for e in data],
        }
    )


def _resume_point(out_dir: Path, total: int) -> Path | None:
    """The checkpoint to continue from, after checking it was made for this plan.

    Raises:
        ValueError: a checkpoint of another number of steps, or one the earlier hand-written
            loop made.
    """
    checkpoint = last_checkpoint(out_dir)
    if checkpoint is None:
        if (out_dir / LEGACY_CHECKPOINT_DIR / _TRAINER_STATE).is_file():
            raise ValueError(
                f"{out_dir / LEGACY_CHECKPOINT_DIR} was written by an earlier version's training "
                "loop, which this trainer cannot resume: train again without --resume, or pass "
                f"--init-adapter {out_dir} to start from the adapter it exported"
            )
        return None
    planned = json.loads((checkpoint / _TRAINER_STATE).read_text()).get("max_steps")
    if planned != total:
        raise ValueError(
            f"the checkpoint in {checkpoint} was made for {planned} steps, this run has "
            f"{total}: use the same data and settings to resume"
        )
    return checkpoint


class _EpochSeededSampler(Sampler[int]):
    """The order of the examples, epoch by epoch, from the seed alone.

    Each epoch is a fresh seeded shuffle; within windows of 16 batches the examples are sorted
    by length so that a batch pads little, and the batches are then shuffled again, the epoch's
    one short batch (if the data does not divide into batches) last, so that the data loader's
    batches are exactly these. Drawn from the seed and the epoch rather than a global generator,
    a resumed run sees the batches an uninterrupted one would. `batch_size` is the batch of one
    optimiser step; under several processes each takes its share of every batch in turn.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed * 1000 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size, window = self.batch_size, self.batch_size * _SORTED_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=self.lengths.__getitem__)
            batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
        rng.shuffle(batches)
        batches.sort(key=lambda batch: len(batch) < size)  # stable: only the short one moves
        return iter([index for batch in batches for index in batch])


class _SFTTrainer(SFTTrainer):
    """TRL's `SFTTrainer`, its examples in `_EpochSeededSampler`'s order."""

    def _get_train_sampler(self, train_dataset: Any = None) -> _EpochSeededSampler:
        dataset: Any = self.train_dataset if train_dataset is None else train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        batch = self.args.per_device_train_batch_size * max(1, self.args.world_size)
        return _EpochSeededSampler(lengths, batch, self.args.seed)


class _Progress(TrainerCallback, ExportableState):
    """Stops at `max_steps`, exports the adapter at each checkpoint, and keeps the wall time of
    resumed runs (saved in the checkpoint's `trainer_state.json` as an exportable state)."""

    def __init__(
        self,
        out_dir: Path,
        total: int,
        max_steps: int | None,
        base: str | None,
        on_checkpoint: Callable[[TrainResult], None] | None,
    ) -> None:
        self.out_dir, self.total, self.base = out_dir, total, base
        self.stop = min(total, max_steps or total)
        self.on_checkpoint = on_checkpoint
        self.earlier_s = 0.0
        self.started = time.monotonic()

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"wall_time_s": self.wall_time_s()}}

    def wall_time_s(self) -> float:
        return self.earlier_s + time.monotonic() - self.started

    def result(self, state: Any) -> TrainResult:
        losses = [float(e["loss"]) for e in state.log_history if "loss" in e and "step" in e]
        return TrainResult(state.global_step, self.total, losses, self.wall_time_s())

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        saved = (state.stateful_callbacks or {}).get(type(self).__name__, {})
        self.earlier_s = float(saved.get("attributes", {}).get("wall_time_s", 0.0))
        self.started = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.stop:
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        save_adapter(kwargs["model"], self.out_dir, base=self.base)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.result(state))


class _LossBar(ProgressCallback):
    """The Trainer's progress bar up to the step the run stops at, with the step's loss and
    learning rate beside it instead of a printed dictionary per logging step."""

    def __init__(self, stop: int) -> None:
        super().__init__()
        self.stop = stop

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.training_bar = tqdm(
                total=self.stop,
                initial=state.global_step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
            )
        self.current_step = state.global_step

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any
    ) -> None:
        if self.training_bar is not None and logs and "loss" in logs:
            lr = float(logs.get("learning_rate", 0.0))
            self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}", lr=f"{lr:.2e}")
