"""Experts mixing a local LoRA adapter and a remote OpenAI-compatible endpoint.

"mathematics" runs in this process through a LoRA adapter on the local model; "chemistry" is
served over HTTP by an OpenAI-compatible server (`--remote URL`: vLLM with `--enable-lora`, a
llama.cpp server, Ollama, TGI or `compllm serve`; the adapter or model name is `--remote-model`).
Without `--remote`, the example starts `compllm serve` in-process on 127.0.0.1, so it runs
anywhere. Both kinds of expert are ordinary chat models to the graph; routing is unchanged.

Without `--adapter DIR` the mathematics adapter is a small random LoRA written with peft, a
stand-in that only shows the wiring (train a real one with `compllm train expert`).

    python examples/mixed_experts.py [--remote http://gpu-box:8000/v1 --remote-model chemistry]
        [--adapter path/to/mathematics_lora] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda
from peft import LoraConfig, get_peft_model

from compllm_graph.defaults import default_decomposer
from compllm_graph.expert_store import ExpertRouter, demo_store
from compllm_graph.graph import create_compllm_graph
from compllm_graph.models import DEFAULT_MODEL, TransformersModel, load_model
from compllm_graph.models.remote import remote_chat_model
from compllm_graph.serve import create_app, local_chat_models, serve_in_thread

QUESTION = "What is the chemical symbol for sodium, and what is 23 times 3?"


def with_system_prompt(chat: Runnable, prompt: str | None) -> Runnable:
    """`chat` with the expert's system prompt put before every request."""
    if not prompt:
        return chat
    return RunnableLambda(lambda msgs: [SystemMessage(prompt), *msgs]) | chat


@contextlib.contextmanager
def chemistry_endpoint(local: TransformersModel, remote: str | None) -> Iterator[str]:
    """The remote endpoint's base URL: `--remote`, or `compllm serve` started in-process."""
    if remote:
        yield remote
        return
    with serve_in_thread(create_app(local_chat_models(local))) as url:
        yield url


def mathematics_adapter(local: TransformersModel, adapter: Path | None, scratch: Path) -> Path:
    """`--adapter`, or a small random LoRA written to `scratch` as a stand-in."""
    if adapter is not None:
        return adapter
    # init_lora_weights=False makes B non-zero, so the stand-in really changes the output; the
    # copy keeps peft from wrapping the shared model.
    config = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(local.model), config).save_pretrained(str(scratch / "mathematics"))
    return scratch / "mathematics"


def run(args: argparse.Namespace, scratch: Path) -> None:
    local = load_model(args.model, engine="transformers")
    store = demo_store(args.model)
    tokens = args.max_new_tokens
    local.add_adapter("mathematics", mathematics_adapter(local, args.adapter, scratch))
    experts = store.chat_models(local, max_new_tokens=tokens)  # the others: local base model
    experts["mathematics"] = with_system_prompt(
        local.chat_model(adapter="mathematics", max_new_tokens=tokens),
        store.expert("mathematics").system_prompt,
    )
    with chemistry_endpoint(local, args.remote) as url:
        served = args.remote_model or args.model
        remote = remote_chat_model(url, served, max_concurrency=4, max_tokens=tokens)
        experts["chemistry"] = with_system_prompt(remote, store.expert("chemistry").system_prompt)
        print(f"chemistry   -> remote {served!r} at {url}")
        print("mathematics -> local LoRA adapter 'mathematics'")
        print(f"others      -> local base model {local.name}")
        decomposer, prompt = default_decomposer(local)
        graph = create_compllm_graph(
            decomposer=decomposer,
            experts=experts,
            router=ExpertRouter(store),
            base=local.chat_model(max_new_tokens=tokens),
            decomposer_prompt=prompt,
        ).compile()
        result = graph.invoke({"query": args.question})
        # Whatever the router chose, show the remote expert answering over HTTP.
        check = experts["chemistry"].invoke([HumanMessage("What is the symbol for sodium?")])
        print(f"chemistry (remote) says: {check.content}")
    for sub_query, route, answer in zip(
        result["query_graph"]["sub_queries"], result["routes"], result["sub_answers"]
    ):
        expert = answer["expert"] or "base model"
        print(f"[{sub_query['id']}] {sub_query['text']} -> {expert} ({route['score']:.2f})")
        print(f"    {answer['answer']}")
    print(f"Answer: {result['answer']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default=QUESTION)
    parser.add_argument("--remote", help="base URL of an OpenAI-compatible server (.../v1)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model alias (default: %(default)s)")
    parser.add_argument(
        "--remote-model", help="served model or LoRA name for chemistry (default: --model)"
    )
    parser.add_argument("--adapter", type=Path, help="a trained LoRA folder for mathematics")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run(args, Path(scratch))


if __name__ == "__main__":
    main()
