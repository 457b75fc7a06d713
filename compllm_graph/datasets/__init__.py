"""The data that trains and evaluates Comp-LLM, split once by id so the two never meet.

Both `compllm_graph.training` and `compllm_graph.evaluation` read their data from here, and
neither imports the other. Modules, one concept each:

- `items`: single-domain questions with exact answers (MMLU, GSM8K, MedMCQA, MedQA, PubMedQA,
  ARC) as `Item`s, by expert domain (`domain_items`, `SOURCES`); GSM8K's socratic steps; the
  easy tier's OpenBookQA, ASDiv and PubMedQA with its abstract, which train nothing.
- `splits`: the two deterministic splits by id: `item_split` (items, train/test 70/30) and
  `decomposition_split` (gold decompositions, train/validation/test 80/10/10).
- `compositions`: multi-domain questions composed from items (MultiExpertQA-P and -All).
- `easy_tier`: the easy benchmark tier's sources, how much of each it takes (`EASY_MIX`), and
  every question it may not hold.
- `calibration`: the calibration split, questions no trainer reads and no benchmark holds, on
  which `compllm experts calibrate` measures each expert's gain over the base model.
- `bridges`: the fact tables that chain one domain's answer into another's question.
- `decompositions`: gold decompositions (MuSiQue, StrategyQA, Break; conjunctions; composed
  questions) as `DecompositionExample`s.
- `programs`: GSM8K solutions' calculator notes as Python programs that print the gold answer
  (training data for a program expert).
- `jsonl`: writing records as JSON lines.

Reading the data needs no extra; only `items.centroid_texts` (the questions the demo store's
centroids were built from) reads them through the expert store, which needs [router].
"""

from compllm_graph.datasets.decompositions import DecompositionExample, load_examples
from compllm_graph.datasets.items import SOURCES, Item, domain_items
from compllm_graph.datasets.splits import decomposition_split, item_split

__all__ = [
    "SOURCES",
    "DecompositionExample",
    "Item",
    "decomposition_split",
    "domain_items",
    "item_split",
    "load_examples",
]
