"""How much of the decomposer's MuSiQue F1 is memory of the train split; what retrieval adds.

MuSiQue composes its questions from a shared pool of single-hop questions and names them in its
question ids (`2hop__197470_271394`), so a test question can share a hop with train questions
although the split is by question id. This scores the shipped decomposer (tag grammar, greedy)
on the first test-split questions, separately for those that share a hop with the train split
and those that do not: once plainly, and once with the `--examples` train questions most
similar to the question (IDF-weighted word overlap) put before it as solved chat turns.

Usage: ``python -m benchmarks.decomposer_memory [--model ALIAS] [--limit 100] [--examples 2]``.
Needs the shared data. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence

from compllm_graph.data_dir import DEFAULT_DATA_DIR
from compllm_graph.datasets.decompositions import (
    DecompositionExample,
    default_files,
    load_examples,
    select,
)
from compllm_graph.decomposer import adapter_for
from compllm_graph.decomposer.generation import Messages, generate, sft_messages
from compllm_graph.decomposer.grammar import tag_grammar_factory
from compllm_graph.decomposer.metrics import score_text, tokens
from compllm_graph.models import SMALL_MODEL, load_model


def hop_ids(qid: str) -> set[str]:
    """The single-hop question ids a MuSiQue question id names."""
    return set(re.findall(r"\d+", qid.partition("__")[2]))


class Neighbours:
    """Train questions ranked by IDF-weighted cosine of their word counts to a question."""

    def __init__(self, train: Sequence[DecompositionExample]) -> None:
        self.train = list(train)
        counts = [Counter(tokens(e.question)) for e in self.train]
        documents = Counter(word for count in counts for word in count)
        self.idf = {w: math.log(len(counts) / n) for w, n in documents.items()}
        self.vectors = [self._vector(count) for count in counts]

    def _vector(self, count: Counter[str]) -> dict[str, float]:
        weights = {w: n * self.idf.get(w, 0.0) for w, n in count.items()}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        return {w: v / norm for w, v in weights.items()}

    def nearest(self, question: str, k: int) -> list[DecompositionExample]:
        query = self._vector(Counter(tokens(question)))
        scores = [sum(query[w] * v.get(w, 0.0) for w in query) for v in self.vectors]
        best = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[:k]
        return [self.train[i] for i in best]


def with_examples(question: str, examples: Sequence[DecompositionExample]) -> Messages:
    """The SFT chat with solved examples as earlier turns, the most similar one last."""
    system, user = sft_messages(question)
    turns: Messages = []
    for example in reversed(examples):
        turns += [
            {"role": "user", "content": example.question},
            {"role": "assistant", "content": example.target},
        ]
    return [system, *turns, user]


def mean(values: Sequence[float]) -> float | None:
    """The mean, or None for a group with no questions (JSON null, not an invalid NaN)."""
    return sum(values) / len(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SMALL_MODEL)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--examples", type=int, default=2)
    args = parser.parse_args()
    adapter = adapter_for(args.model)
    if adapter is None:
        sys.exit(f"no decomposer ships for {args.model!r}")
    try:
        examples = load_examples(default_files(DEFAULT_DATA_DIR)["musique"])
    except (FileNotFoundError, KeyError):
        sys.exit(f"no MuSiQue data under {DEFAULT_DATA_DIR}: this benchmark needs the shared data")
    train, test = select(examples, "train"), select(examples, "test")[: args.limit]
    train_hops = set().union(*(hop_ids(e.qid) for e in train))
    shared = [bool(hop_ids(e.qid) & train_hops) for e in test]

    local = load_model(args.model, engine="transformers")
    local.add_adapter("decomposer", adapter)
    model = local.model.merge_and_unload()
    neighbours = Neighbours(train)
    chats = {
        "plain": [sft_messages(e.question) for e in test],
        f"{args.examples} retrieved examples": [
            with_examples(e.question, neighbours.nearest(e.question, args.examples)) for e in test
        ],
    }
    result: dict[str, object] = {"model": args.model, "n": len(test), "shared_hop": sum(shared)}
    print(f"{args.model}: {len(test)} MuSiQue test questions, {sum(shared)} share a hop with train")
    for name, prompts in chats.items():
        outputs = generate(
            model, local.tokenizer, prompts, logits_processor=tag_grammar_factory(local.tokenizer)
        )
        f1 = [score_text(out, e.graph, e.question).subquery_f1 for out, e in zip(outputs, test)]
        row = {
            "all": mean(f1),
            "shared_hop": mean([s for s, hit in zip(f1, shared) if hit]),
            "no_shared_hop": mean([s for s, hit in zip(f1, shared) if not hit]),
        }
        shown = ("-" if v is None else f"{v:.3f}" for v in row.values())
        print(f"  {name:<22} " + "  ".join(f"{k} {v}" for k, v in zip(row, shown)), flush=True)
        result[name] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
