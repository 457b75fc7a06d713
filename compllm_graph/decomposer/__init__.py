"""The decomposer: its prompts, its tag grammar, and the trained SFT adapters.

One LoRA adapter ships per base model, in the model's expert pack (`compllm_graph.packs`;
`adapter_for(alias)` gives it, None where no installed pack has one).
`default_decomposer(local_model)` loads the right one with its recorded system prompt and
grammar-constrained decoding; by hand, load it with
`local_model.add_adapter("decomposer", folder)`, chat with
`local_model.chat_model(adapter="decomposer")` sending `DECOMPOSER_SYSTEM_PROMPT` as the system
message and the user's question as the human message, and read the reply with
`compllm_graph.query_graph.parse_decomposition`. `training.json` beside the weights records how
each was trained and what it scored.

Modules: `prompts` (the two prompts the graph sends; the evaluation's few-shot baseline prompt
is in `generation`), `grammar` (the tag grammar as a logits processor; needs the
[local] extra), `loading` (the packs' adapters, training records, `default_decomposer`),
`stopping` (whether a reply written so far can still become a decomposition: the decompose node
stops the decomposer when it cannot), `split_rule` (independent questions joined by "and", which
the decompose node splits when the decomposer leaves them whole), `chain_rule` (a sub-query that
asks for an attribute of a thing it only describes, which the decompose node makes two steps),
`premise_rule` (the facts a question opens with, which the decompose node gives back to a
sub-query written without them).
"""

from compllm_graph.decomposer.loading import (
    BASE_MODEL,
    adapter_for,
    default_decomposer,
    read_training_record,
    shipped,
)
from compllm_graph.decomposer.prompts import DECOMPOSER_PROMPT, DECOMPOSER_SYSTEM_PROMPT

__all__ = [
    "BASE_MODEL",
    "DECOMPOSER_PROMPT",
    "DECOMPOSER_SYSTEM_PROMPT",
    "adapter_for",
    "default_decomposer",
    "read_training_record",
    "shipped",
]
