"""Hyper-parameters of LoRA fine-tuning (kept free of torch so the CLI parser loads fast).

Each field carries its help text (`metadata={"help": ...}`, as peft's configs do); the
`compllm train` flags that set a field take their help from it (`_help.field_help`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (rank, scaling, dropout, which linear layers get adapters)."""

    r: int = field(default=8, metadata={"help": "LoRA rank of each adapted layer"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling: updates are scaled by alpha/r"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch"})
    target_modules: tuple[str, ...] = field(
        default=ALL_PROJECTIONS, metadata={"help": "linear layers that get an adapter, by name"}
    )
    top_layers: int | None = field(
        default=None,
        metadata={
            "help": "adapt only the last N transformer layers (None: all); back-propagation "
            "then stops at the lowest adapted layer, which makes a step much cheaper on CPU"
        },
    )


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation hyper-parameters (each field's help is in its metadata)."""

    epochs: float = field(
        default=2.0, metadata={"help": "passes over the data (fractions allowed)"}
    )
    batch_size: int = field(default=8, metadata={"help": "sequences per optimiser step"})
    learning_rate: float = field(
        default=5e-4, metadata={"help": "peak learning rate after warm-up"}
    )
    warmup_ratio: float = field(
        default=0.05, metadata={"help": "share of the steps spent warming up linearly"}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decoupled weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping threshold"})
    seed: int = field(default=0, metadata={"help": "seeds the data order and LoRA initialisation"})
    save_every: int = field(default=20, metadata={"help": "steps between checkpoints"})
    max_steps: int | None = field(
        default=None,
        metadata={"help": "stop after this many steps (the schedule still spans all epochs)"},
    )
