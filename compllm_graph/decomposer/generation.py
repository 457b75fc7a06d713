"""The decomposer run in transformers on many questions: its chats and batched generation.

`sft_messages` is the chat a trained decomposer adapter sees (and learns from), `few_shot_messages`
the paper's few-shot prompt for an untrained model (Table 1's baseline); `generate` answers many
chats in left-padded batches, greedy or beam search, optionally under the tag grammar
(`grammar.tag_grammar_factory`). Training validates with it and the decomposition evaluations
score what it writes (`metrics`). Needs the [local] extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from compllm_graph._extras import requires
from compllm_graph.decomposer.prompts import DECOMPOSER_SYSTEM_PROMPT

with requires("local"):
    import torch

Messages = list[dict[str, str]]

# In the style of the paper's few-shot decomposition prompt (a numbered list, then the
# dependency graph as arrow chains); the three examples are our own.
FEW_SHOT_PROMPT = """You break a complex question into the smallest set of simple sub-questions \
that together answer it. Number the sub-questions 1, 2, 3, ... Where a sub-question needs the \
answer of an earlier one, write #k for the answer of sub-question k. Then write the dependency \
graph: "i -> j" means sub-question j needs the answer of sub-question i. Write "none" when the \
sub-questions are independent. Output only the sub-questions and the dependency graph.

Question: Who directed the film in which the lead actor of Titanic played a con artist?
1. Who was the lead actor of Titanic?
2. In which film did #1 play a con artist?
3. Who directed #2?
Dependency Graph: "1 -> 2 -> 3"

Question: Is the Nile longer than the Amazon?
1. How long is the Nile?
2. How long is the Amazon?
3. Is #1 greater than #2?
Dependency Graph: "1 -> 3", "2 -> 3"

Question: What are the capital of France and the capital of Japan?
1. What is the capital of France?
2. What is the capital of Japan?
Dependency Graph: "none"

Question: {question}
"""


def sft_messages(question: str) -> Messages:
    """The chat the SFT decomposer sees: its system prompt and the question."""
    return [
        {"role": "system", "content": DECOMPOSER_SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]


def few_shot_messages(question: str) -> Messages:
    """The few-shot prompt as one user turn (the model's default system prompt applies)."""
    return [{"role": "user", "content": FEW_SHOT_PROMPT.format(question=question)}]


def trim_few_shot(reply: str) -> str:
    """Cut a few-shot reply after its dependency-graph line (small models run on into new
    `Question:` examples, which would otherwise be read as part of the answer)."""
    lines: list[str] = []
    for line in reply.splitlines():
        if line.strip().lower().startswith("question:"):
            break
        lines.append(line)
        if "dependency graph" in line.lower():
            break
    return "\n".join(lines).strip()


def prompt_ids(tokenizer: Any, messages: Messages) -> list[int]:
    """Token ids of a chat rendered with the model's template, ready for the assistant turn."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return list(ids)


def generate(
    model: Any,
    tokenizer: Any,
    chats: Sequence[Messages],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    num_beams: int = 1,
    logits_processor: Callable[[int], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy (or beam-search) replies to many chats, generated in left-padded batches.

    Args:
        model: A causal LM (with or without adapters).
        tokenizer: Its tokenizer.
        chats: One message list per reply.
        batch_size: Chats per `generate` call.
        max_new_tokens: Reply length cap.
        num_beams: Beams per chat; 1 is greedy decoding.
        logits_processor: Makes a fresh logits processor for a batch, given the prompt width.
        progress: Called with the number of replies finished after each batch.

    Returns:
        The decoded replies, in the order of `chats`.

    Raises:
        ValueError: `num_beams` is below 1.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1 (1 is greedy decoding), got {num_beams}")
    replies: list[str] = []
    pad_id = tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    for start in range(0, len(chats), batch_size):
        prompts = [prompt_ids(tokenizer, chat) for chat in chats[start : start + batch_size]]
        width = max(map(len, prompts))
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        extra = {}
        if logits_processor is not None:
            extra["logits_processor"] = [logits_processor(width)]
        device = getattr(model, "device", "cpu")  # a model trained on an accelerator stays there
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=num_beams,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
                **extra,
            )
        replies.extend(
            tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out
        )
        if progress is not None:
            progress(len(prompts))
    return replies


__all__ = [
    "FEW_SHOT_PROMPT",
    "Messages",
    "few_shot_messages",
    "generate",
    "prompt_ids",
    "sft_messages",
    "trim_few_shot",
]
