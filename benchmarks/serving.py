"""HTTP serving: concurrent requests to `compllm serve` share batches; one at a time they don't.

Starts the OpenAI-compatible server in-process on SmolLM2 with N random LoRA adapters, then
sends N requests (one per adapter) through `remote_chat_model`, first one at a time and then all
at once, and prints generated tokens per second of each and the ratio, measured side by side.

    python -m benchmarks.serving [--adapters 4] [--tokens 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from langchain_core.messages import BaseMessage

from compllm_graph.models import SMALL_MODEL, load_model
from compllm_graph.models.remote import RemoteChatModel, remote_chat_model
from compllm_graph.serve import create_app, local_chat_models, serve_in_thread
from tests.random_lora import save_random_lora

PROMPT = "Explain in a few sentences why the sky is blue."


def generated(reply: BaseMessage) -> int:
    """Tokens the server generated for `reply`."""
    usage = getattr(reply, "usage_metadata", None)
    return int(usage["output_tokens"]) if usage else 0


async def one_at_a_time(models: list[RemoteChatModel]) -> int:
    return sum([generated(await model.ainvoke(PROMPT)) for model in models])


async def all_at_once(models: list[RemoteChatModel]) -> int:
    replies = await asyncio.gather(*(model.ainvoke(PROMPT) for model in models))
    return sum(generated(reply) for reply in replies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    local = load_model(SMALL_MODEL, engine="transformers", max_batch_size=args.adapters)
    names = [f"expert{i}" for i in range(args.adapters)]
    with tempfile.TemporaryDirectory() as scratch:
        # Write every adapter from the plain base model before peft wraps it.
        folders = [
            save_random_lora(local.model, Path(scratch) / n, seed=i) for i, n in enumerate(names)
        ]
        for name, folder in zip(names, folders):
            local.add_adapter(name, folder)
    app = create_app(local_chat_models(local), max_new_tokens=args.tokens)
    with serve_in_thread(app) as url:
        models = [
            remote_chat_model(url, name, max_concurrency=args.adapters, max_tokens=args.tokens)
            for name in names
        ]
        asyncio.run(all_at_once(models))  # warm-up
        totals = {"one at a time": [0, 0.0], "all at once": [0, 0.0]}
        for _ in range(args.rounds):
            for label, run in (("one at a time", one_at_a_time), ("all at once", all_at_once)):
                started = time.perf_counter()
                totals[label][0] += asyncio.run(run(models))
                totals[label][1] += time.perf_counter() - started
    rates = {label: tokens / seconds for label, (tokens, seconds) in totals.items()}
    print(f"{args.adapters} requests over HTTP, one LoRA each, {args.tokens} new tokens:")
    for label, rate in rates.items():
        print(f"  {label:>13}: {rate:6.1f} tok/s")
    print(f"  ratio: {rates['all at once'] / rates['one at a time']:.2f}x")


if __name__ == "__main__":
    main()
