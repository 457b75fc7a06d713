"""Training decomposers and experts: training-data builders and LoRA SFT.

Needs the [train] extra (TRL, accelerate, peft). Heavy modules (`sft`, `decomposer_sft`,
`expert`) are not imported here; import them directly. The data they learn from (items, splits,
compositions, gold decompositions) is `compllm_graph.datasets`; decomposition F1 is
`compllm_graph.decomposer.metrics`. Nothing here imports `compllm_graph.evaluation`, and nothing
there imports this package.
"""

import importlib.util

from compllm_graph._extras import requires
from compllm_graph.training.settings import LoraSettings, TrainSettings

# Found, not imported: the modules that train import them, and `settings` (the CLI's flags)
# loads without torch.
with requires("train"):
    for _name in ("accelerate", "datasets", "peft", "scipy", "torch", "trl"):
        if importlib.util.find_spec(_name) is None:
            raise ModuleNotFoundError(f"No module named {_name!r}", name=_name)

__all__ = ["LoraSettings", "TrainSettings"]
