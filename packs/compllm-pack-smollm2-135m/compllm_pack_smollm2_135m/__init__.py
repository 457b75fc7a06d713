"""The compllm-graph expert pack for SmolLM2-135M-Instruct (`smollm2-135m-instruct`).

Its data files lie beside this module. compllm-graph finds the pack through its
`compllm_graph.packs` entry point and reads `manifest.json`, which lists every file with its
sha256; see `compllm_graph.packs` and docs/packs.md.
"""
