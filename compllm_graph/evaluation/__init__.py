"""Every evaluation of the paper's tables: answers, decomposition F1 and routing.

Answers: `benchmarks` (the benchmark files, from `compllm_graph.datasets`), `scoring` (part and
question accuracy), `answers` + `systems` (the five systems), `experts` (the single-domain table),
`attribution`, `leakage` (benchmark parts that share a passage with a train item), `stats`
(bootstrap intervals). Decomposition F1: `decomposition`, `decomposition_table`. Routing:
`routing` (Tables 2 and 3), `routing_transfer`. The `*_commands` modules are `compllm eval`.

The data comes from `compllm_graph.datasets`; nothing here imports `compllm_graph.training`, and
nothing there imports this package.
"""
