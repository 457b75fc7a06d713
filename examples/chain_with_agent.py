"""Chaining Comp-LLM with another agent: its answer feeds a second chat model and a tool.

Comp-LLM answers a multi-part question; a "reviewer" chat model (the same local weights, no
adapter) then checks the answer against the question, and a tool records the reviewed answer.
The whole pipeline is one LCEL chain, so it streams, batches and traces like any runnable.

    python examples/chain_with_agent.py [--max-new-tokens 48] [--notes FILE.jsonl]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from langchain_core.tools import tool

from compllm_graph.defaults import build_default_graph
from compllm_graph.models import DEFAULT_MODEL, load_model

QUESTION = "What gas do plants absorb for photosynthesis, and what is 15 plus 27?"
REVIEWER_PROMPT = (
    "You review answers. Say in one sentence whether the answer covers every part of the "
    "question, then give the corrected answer if it does not."
)


def make_note_tool(path: Path) -> Runnable:
    """A tool that appends a question, answer and review to a JSON-lines file."""

    @tool
    def save_note(question: str, answer: str, review: str) -> str:
        """Append a reviewed answer to the notes file."""
        with path.open("a", encoding="utf-8") as notes:
            notes.write(json.dumps({"question": question, "answer": answer, "review": review}))
            notes.write("\n")
        return f"saved to {path}"

    return save_note


def build_chain(model: str, max_new_tokens: int, notes: Path) -> Runnable:
    """question -> Comp-LLM -> reviewer -> save_note tool."""
    local = load_model(model)  # loaded once: Comp-LLM and the reviewer share it
    compllm = build_default_graph(local, max_new_tokens=max_new_tokens).compile()
    reviewer = local.chat_model(max_new_tokens=max_new_tokens)

    def review_prompt(step: dict) -> list:
        return [
            SystemMessage(REVIEWER_PROMPT),
            HumanMessage(f"Question: {step['question']}\nAnswer: {step['answer']}"),
        ]

    return (
        RunnablePassthrough.assign(
            answer=(lambda step: {"query": step["question"]})
            | compllm
            | (lambda out: out["answer"])
        )
        .assign(review=RunnableLambda(review_prompt) | reviewer | (lambda m: m.content))
        .assign(note=make_note_tool(notes))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model alias (default: %(default)s)")
    parser.add_argument(
        "--notes", type=Path, default=Path(tempfile.gettempdir()) / "compllm_notes.jsonl"
    )
    args = parser.parse_args()
    chain = build_chain(args.model, args.max_new_tokens, args.notes)
    result = chain.invoke({"question": QUESTION})
    print(f"Question: {result['question']}")
    print(f"Comp-LLM: {result['answer']}")
    print(f"Reviewer: {result['review']}")
    print(f"Tool: {result['note']}")


if __name__ == "__main__":
    main()
