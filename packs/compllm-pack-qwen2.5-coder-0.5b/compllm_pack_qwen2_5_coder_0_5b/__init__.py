"""The compllm-graph expert pack for Qwen2.5-Coder-0.5B-Instruct (`qwen2.5-coder-0.5b-instruct`).

Its data files lie beside this module. compllm-graph finds the pack through its
`compllm_graph.packs` entry point and reads `manifest.json`, which lists every file with its
sha256; see `compllm_graph.packs` and docs/packs.md.
"""
