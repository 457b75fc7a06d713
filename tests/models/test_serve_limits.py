"""`compllm serve` under hostile input: oversized bodies and prompts longer than the context."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs the [local] extra")
pytest.importorskip("starlette", reason="needs the [serve] extra")

import httpx

from compllm_graph.models import TransformersModel
from compllm_graph.serve import create_app, local_chat_models, serve_in_thread


def test_an_oversized_body_gets_413_and_the_server_keeps_serving(tiny: TransformersModel) -> None:
    app = create_app(local_chat_models(tiny), max_new_tokens=4, max_body_bytes=10_000)
    huge = {"model": "tiny", "messages": [{"role": "user", "content": "a " * 20_000}]}
    small = {"model": "tiny", "messages": [{"role": "user", "content": "ab"}]}
    with serve_in_thread(app) as url:
        refused = httpx.post(f"{url}/chat/completions", json=huge, timeout=30)
        assert refused.status_code == 413 and "10,000 bytes" in refused.text
        assert httpx.post(f"{url}/chat/completions", json=small, timeout=30).status_code == 200


def test_a_prompt_over_the_context_gets_400_naming_the_limit(tiny: TransformersModel) -> None:
    limit = tiny.context_length  # the tiny Llama's 256 positions
    app = create_app(local_chat_models(tiny), max_new_tokens=4)
    long = {"model": "tiny", "messages": [{"role": "user", "content": "ab " * limit}]}
    with serve_in_thread(app) as url:
        reply = httpx.post(f"{url}/chat/completions", json=long, timeout=30)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded" and f"context of {limit}" in error["message"]
