"""Hyper-parameters of LoRA fine-tuning (kept free of torch so the CLI parser loads fast)."""

from __future__ import annotations

from dataclasses import dataclass

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (rank, scaling, dropout, which linear layers get adapters)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ALL_PROJECTIONS
    top_layers: int | None = None
    """Adapt only the last N transformer layers (None: all). Back-propagation then stops at the
    lowest adapted layer, which makes a step much cheaper on CPU."""


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation hyper-parameters.

    Attributes:
        epochs: Passes over the data (fractions allowed).
        batch_size: Sequences per optimiser step.
        learning_rate: Peak learning rate after warm-up.
        warmup_ratio: Share of the steps spent warming up linearly.
        weight_decay: AdamW decoupled weight decay.
        max_grad_norm: Gradient clipping threshold.
        seed: Seeds the data order and LoRA initialisation.
        save_every: Steps between checkpoints.
        max_steps: Stop after this many steps (the schedule still spans all epochs).
    """

    epochs: float = 2.0
    batch_size: int = 8
    learning_rate: float = 5e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 20
    max_steps: int | None = None
