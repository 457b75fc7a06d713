"""Training and evaluating decomposers and experts: data builders, LoRA SFT, decomposition F1.

Heavy modules (`sft`, `decomposition`, `decoding`) import torch and peft; import them directly.
"""

from compllm_graph.training.data import DecompositionExample, load_examples, split_of
from compllm_graph.training.metrics import DecompositionReport, score_graph, score_text
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
