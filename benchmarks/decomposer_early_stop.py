"""What the decompose node's early stop saves: tokens generated, read whole vs stopped (CPU).

Each question is decomposed twice by the same chat model: read whole (`invoke`, as the node did
before the early stop) and through the decompose node, which streams the reply and stops it once
`decomposer.stopping.check_prefix` says it can no longer become a decomposition. The engine's own
count of generated tokens is read from the request's completion either way, with the outcome
(parsed, or the fallback reason) and whether the and-split rule split the question.

Two decomposers: `--decomposer default` (the shipped adapter under the tag grammar, as the graph
runs it) and `--decomposer few-shot` (the base model with the few-shot tag prompt and no grammar:
an unconstrained decomposer, as a remote model or a user's prompt is). `--fake` runs three
scripted failure modes on a fake streaming model instead, with no model at all.

Usage: ``python -m benchmarks.decomposer_early_stop [--model ALIAS] [--engine llama.cpp]
[--decomposer few-shot] [--questions 6] [--fake]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langgraph.graph import START, StateGraph
from pydantic import Field

from compllm_graph.data_dir import DEFAULT_DATA_DIR
from compllm_graph.datasets.decompositions import default_files, load_examples, select
from compllm_graph.decomposer.prompts import DECOMPOSER_PROMPT
from compllm_graph.nodes.decompose import make_decompose_node
from compllm_graph.query_graph import (
    DEFAULT_MAX_SUB_QUERIES,
    DecompositionError,
    parse_decomposition,
    sub_query_char_limit,
)
from compllm_graph.state import CompLLMState

SUN = (
    "What is the chemical symbol of the element that makes up most of the Sun, and how many "
    "bones are in an adult human body?"
)
DEMO = "Which organelle makes most of a cell's ATP, and what is the chemical formula of glucose?"
MAX_NEW_TOKENS = 512  # the default decomposer's limit (`decomposer.loading`)
FAKE_SCRIPTS = {
    "a sub-query runs on": "<q>What is the chemical symbol of the element"
    + " that makes up most of the Sun" * 70,
    "a sub-query repeats": "<q>Which element makes up most of the Sun?</q>" * 45,
    "text after a tag": "<q>Which element makes up most of the Sun?</q> It is hydrogen. " * 30,
}


def questions(count: int) -> list[str]:
    """The Sun and demo questions, then the first MuSiQue test-split questions."""
    try:
        examples = select(load_examples(default_files(DEFAULT_DATA_DIR)["musique"]), "test")
    except (FileNotFoundError, KeyError):
        print(f"no MuSiQue data under {DEFAULT_DATA_DIR}", file=sys.stderr)
        examples = []
    return [SUN, DEMO, *(e.question for e in examples[:count])]


def node_app(chat: Runnable, prompt: str | None) -> Any:
    """The decompose node alone, compiled."""
    builder = StateGraph(CompLLMState)
    builder.add_node("decompose", make_decompose_node(chat, prompt, DEFAULT_MAX_SUB_QUERIES))
    builder.add_edge(START, "decompose")
    return builder.compile()


def outcome(text: str, question: str) -> str:
    try:
        graph = parse_decomposition(text, max_chars=sub_query_char_limit(question))
    except DecompositionError as exc:
        return f"fallback: {exc}"
    return f"{len(graph)} sub-queries"


def measure_model(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both runs of every question on a real model."""
    from compllm_graph.defaults import default_decomposer
    from compllm_graph.models import load_model

    model = load_model(args.model, engine=args.engine)
    if args.decomposer == "default":
        chat, prompt = default_decomposer(model)
    else:
        chat, prompt = model.chat_model(max_new_tokens=MAX_NEW_TOKENS), DECOMPOSER_PROMPT
    futures = watch(model.batcher)
    app = node_app(chat, prompt)
    rows = []
    for question in questions(args.questions):
        started = time.perf_counter()
        reply = chat.invoke([SystemMessage(prompt or ""), HumanMessage(question)])
        whole_s = time.perf_counter() - started
        whole = futures[-1].result()
        started = time.perf_counter()
        out = app.invoke({"query": question})
        node_s = time.perf_counter() - started
        streamed = futures[-1].result()
        rows.append(
            {
                "question": question[:60],
                "whole_tokens": len(whole.token_ids),
                "whole_s": round(whole_s, 2),
                "whole": outcome(str(reply.content), question),
                "node_tokens": len(streamed.token_ids),
                "node_s": round(node_s, 2),
                "node_finish": streamed.finish_reason,
                "node": out["fallback_reason"] or f"{len(out['query_graph']['sub_queries'])} sq",
                "split": out["split_rule"] is not None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def watch(batcher: Any) -> list[Future[Any]]:
    """Record the future of every request the engine takes."""
    futures: list[Future[Any]] = []
    submit: Callable[[Any], Future[Any]] = batcher.submit

    def spy(request: Any) -> Future[Any]:
        futures.append(submit(request))
        return futures[-1]

    batcher.submit = spy
    return futures


class Scripted(BaseChatModel):
    """Streams `script` four characters a token, counting the tokens it was asked for."""

    script: str
    sent: list[int] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.sent.append(-(-len(self.script) // 4))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.script))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        count = 0
        try:
            for start in range(0, len(self.script), 4):
                count += 1
                yield ChatGenerationChunk(
                    message=AIMessageChunk(content=self.script[start : start + 4])
                )
        finally:
            self.sent.append(count)


def measure_fake() -> list[dict[str, Any]]:
    """Both runs of each scripted failure mode."""
    rows = []
    for name, script in FAKE_SCRIPTS.items():
        model = Scripted(script=script, sent=[])
        model.invoke([HumanMessage(SUN)])
        out = node_app(model, None).invoke({"query": SUN})
        rows.append(
            {
                "case": name,
                "whole_tokens": model.sent[0],
                "node_tokens": model.sent[1],
                "node": out["fallback_reason"][:90],
                "split": out["split_rule"] is not None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--engine", default=None, choices=["llama.cpp", "transformers"])
    parser.add_argument("--decomposer", default="default", choices=["default", "few-shot"])
    parser.add_argument("--questions", type=int, default=6, help="MuSiQue test questions")
    parser.add_argument("--fake", action="store_true", help="scripted failures, no model")
    args = parser.parse_args()
    rows = measure_fake() if args.fake else measure_model(args)
    whole = sum(r["whole_tokens"] for r in rows)
    node = sum(r["node_tokens"] for r in rows)
    print(f"tokens generated: read whole {whole}, with the early stop {node}")
    print(json.dumps({"rows": rows, "whole_tokens": whole, "node_tokens": node}))


if __name__ == "__main__":
    main()
