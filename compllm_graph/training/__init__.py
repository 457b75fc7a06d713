"""Training decomposers and experts: training-data builders and LoRA SFT.

Needs the [train] extra. Heavy modules (`sft`, `decomposer_sft`, `expert`) are not imported here;
import them directly. The data they learn from (items, splits, compositions, gold decompositions)
is `compllm_graph.datasets`; decomposition F1 is `compllm_graph.decomposer.metrics`. Nothing here
imports `compllm_graph.evaluation`, and nothing there imports this package.
"""

from compllm_graph._extras import requires

with requires("train"):
    import peft  # noqa: F401
    import scipy  # noqa: F401
    import torch  # noqa: F401

from compllm_graph.training.settings import LoraSettings, TrainSettings

__all__ = ["LoraSettings", "TrainSettings"]
