"""Random LoRA adapters for tests and benchmarks of multi-adapter serving (not for answers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from safetensors.torch import save_file


def save_random_lora(
    model: Any,
    folder: str | Path,
    *,
    seed: int,
    rank: int = 8,
    alpha: int = 16,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    std: float = 0.02,
) -> Path:
    """Write a LoRA adapter with random non-zero A and B matrices for ``model``.

    Unlike peft's default initialisation (B = 0, a no-op), both matrices are random so the
    adapter really changes the output. ``model`` is only read, never modified.

    Args:
        model: the base transformers model, or a ``PeftModel`` wrapping it.
        folder: where ``adapter_config.json`` and ``adapter_model.safetensors`` go.
        seed: random seed; different seeds give different adapters.
        rank: LoRA rank.
        alpha: LoRA alpha (scaling is alpha / rank).
        target_modules: suffixes of the ``nn.Linear`` modules to adapt.
        std: standard deviation of the B entries.

    Returns:
        The adapter folder.

    Raises:
        ValueError: no module of ``model`` matches ``target_modules``.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    # A model that already carries adapters is read through its unwrapped base; its LoRA
    # layers keep in/out_features, so they match like the nn.Linear they wrap.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name, module in base.named_modules():
        if name.rsplit(".", 1)[-1] in target_modules and hasattr(module, "in_features"):
            fan_in, fan_out = module.in_features, module.out_features
            a = torch.randn(rank, fan_in, generator=generator) / fan_in**0.5
            b = torch.randn(fan_out, rank, generator=generator) * std
            # peft's on-disk key layout: base_model.model.<module>.lora_{A,B}.weight
            tensors[f"base_model.model.{name}.lora_A.weight"] = a.contiguous()
            tensors[f"base_model.model.{name}.lora_B.weight"] = b.contiguous()
    if not tensors:
        raise ValueError(f"no linear module named {list(target_modules)} in the model")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=list(target_modules), task_type="CAUSAL_LM"
    )
    config.save_pretrained(str(out))
    return out


__all__ = ["save_random_lora"]
