"""Training and evaluating decomposers and experts: data builders, LoRA SFT, decomposition F1.

Needs the [train] extra. Heavy modules (`sft`, `decomposition`, `decomposer_sft`, `expert`) are
not imported here; import them directly.
"""

from compllm_graph._extras import requires

with requires("train"):
    import peft  # noqa: F401
    import scipy  # noqa: F401
    import torch  # noqa: F401

from compllm_graph.evaluation.decomposition_metrics import (
    DecompositionReport,
    score_graph,
    score_text,
)
from compllm_graph.training.data import DecompositionExample, load_examples, split_of
from compllm_graph.training.settings import LoraSettings, TrainSettings

__all__ = [
    "DecompositionExample",
    "DecompositionReport",
    "LoraSettings",
    "TrainSettings",
    "load_examples",
    "score_graph",
    "score_text",
    "split_of",
]
