"""The tag-grammar logits processor, on the grammar and on a toy vocabulary."""

from __future__ import annotations

import pytest
import torch

from compllm_graph.decomposer import grammar
from compllm_graph.decomposer.grammar import TagGrammarProcessor, _Vocabulary, scan
from compllm_graph.query_graph import parse_decomposition


def test_prefixes_of_valid_outputs_are_accepted() -> None:
    full = "<q>Who wrote Hamlet?</q><q>When was #1 born?</q><dep>1->2</dep>"
    for cut in range(len(full) + 1):
        assert scan(full[:cut]) is not None, full[:cut]
    assert scan(full).kind == "end"  # type: ignore[union-attr]


def test_invalid_outputs_are_rejected() -> None:
    for text in (
        "Sure! <q>",  # text before the first tag
        "<q></q>",  # empty sub-query
        "<dep>",  # dependencies before any sub-query
        "<q>a</q><q>b</q><dep>2->1",  # backward edge (would allow cycles)
        "<q>a</q><q>b</q><dep>1->3",  # no sub-query 3
        "<q>a</q><q>b</q><dep>1->2, </dep>",  # dangling comma
        "<q>a\nb</q>",  # new line inside a sub-query
        "<q>a</q><dep></dep>more",  # anything after the end
    ):
        assert scan(text) is None, text


def test_maximum_number_of_sub_queries() -> None:
    assert scan("<q>a</q><q>b</q><", max_sub_queries=2).key == "<"  # type: ignore[union-attr]
    assert scan("<q>a</q><q>b</q><q", max_sub_queries=2) is None


# A toy vocabulary: characters and a few multi-character pieces, as a BPE tokenizer has.
TOKENS = [
    "<eos>",
    "<",
    "q",
    ">",
    "</",
    "><",
    "dep",
    "1",
    "2",
    "->",
    ",",
    " ",
    "a",
    "b",
    "?",
    "</q>",
    "\n",
    "x<",
    "#",
]
EOS = 0


def toy_processor() -> TagGrammarProcessor:
    vocabulary = _Vocabulary(TOKENS, special_ids={EOS})
    return TagGrammarProcessor(
        vocabulary,
        EOS,
        prompt_width=0,
        decode=lambda ids: "".join(TOKENS[i] for i in ids if i != EOS),
    )


def greedy(preferences: list[list[str]]) -> str:
    """Decode with the processor, the 'model' preferring tokens in the given order each step."""
    processor = toy_processor()
    ids: list[int] = []
    for wanted in preferences:
        scores = torch.zeros(1, len(TOKENS))
        for rank, token in enumerate(reversed(wanted)):
            scores[0, TOKENS.index(token)] = rank + 1.0
        masked = processor(torch.tensor([ids], dtype=torch.long).reshape(1, -1), scores)
        ids.append(int(masked.argmax()))
        if ids[-1] == EOS:
            break
    return "".join(TOKENS[i] for i in ids if i != EOS)


def test_the_processor_steers_a_rambling_model_into_the_grammar() -> None:
    # Each step lists the tokens the "model" prefers, best first; banned ones are skipped.
    steps = [
        ["a", "<"],
        ["q"],
        [">"],
        ["\n", "#", "a"],  # no new line; no reference before any sub-query exists
        ["?"],
        ["</"],
        ["q"],
        [">"],
        ["a", "<"],
        ["q"],
        [">"],
        ["b"],
        [" "],
        ["#"],
        ["2", "1"],  # #2 would be this sub-query itself
        ["</q>"],
        ["<"],
        ["dep"],
        [">"],
        ["2", "1"],
        ["->"],
        ["1", "2"],  # 1->1 is a self-loop
        ["\n", "</"],
        ["dep"],
        [">"],
        ["a", "<eos>"],
    ]
    assert greedy(steps) == "<q>a?</q><q>b #1</q><dep>1->2</dep>"


def test_an_over_long_sub_query_is_closed_not_filled_with_symbols(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(grammar, "_MAX_QUESTION_CHARS", 4)
    steps = [["<"], ["q"], [">"], ["a"], ["b"], ["a"], ["b"]]
    steps += [["2", "#", " ", "</q>"], ["<"], ["dep"], [">"], ["</"], ["dep"], [">"], ["<eos>"]]
    assert greedy(steps) == "<q>abab</q><dep></dep>"


def test_a_long_prompt_lets_its_sub_queries_run_as_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grammar, "_MAX_QUESTION_CHARS", 4)
    prompt = [TOKENS.index(t) for t in "abababa"]  # a 7-character prompt
    processor = TagGrammarProcessor(
        _Vocabulary(TOKENS, special_ids={EOS}),
        EOS,
        prompt_width=len(prompt),
        decode=lambda ids: "".join(TOKENS[i] for i in ids if i != EOS),
    )
    ids = prompt + [TOKENS.index(t) for t in ("<", "q", ">", "a", "b", "a", "b", "a")]
    allowed = processor(torch.tensor([ids]), torch.zeros(1, len(TOKENS)))[0]
    assert allowed[TOKENS.index("b")] == 0  # 5 characters: past the floor, within the prompt's
    ids += [TOKENS.index("b"), TOKENS.index("a")]
    allowed = processor(torch.tensor([ids]), torch.zeros(1, len(TOKENS)))[0]
    assert allowed[TOKENS.index("b")] == float("-inf")  # 7: only the close of the tag is left
    assert allowed[TOKENS.index("</q>")] == 0


def test_references_must_name_earlier_sub_queries() -> None:
    assert scan("<q>a</q><q>b #1") is not None
    assert scan("<q>a</q><q>b #") is not None  # the digits may still come
    for text in ("<q>a #1", "<q>a</q><q>b #2", "<q>a</q><q>b #</q>", "<q>a</q><q>b #x"):
        assert scan(text) is None, text


def test_end_of_turn_only_after_the_dependencies() -> None:
    processor = toy_processor()
    scores = torch.zeros(1, len(TOKENS))
    mid = [TOKENS.index(t) for t in ("<", "q", ">", "a")]
    allowed = processor(torch.tensor([mid]), scores.clone())[0] > float("-inf")
    assert not allowed[EOS] and not allowed[TOKENS.index("\n")] and allowed[TOKENS.index("</")]
    done = [
        TOKENS.index(t) for t in ("<", "q", ">", "a", "</q>", "<", "dep", ">", "</", "dep", ">")
    ]
    allowed = processor(torch.tensor([done]), scores.clone())[0] > float("-inf")
    assert allowed.nonzero().flatten().tolist() == [EOS]


def test_a_constrained_output_always_parses() -> None:
    text = "<q>a</q><q>b #1</q><dep>1->2</dep>"
    assert scan(text).kind == "end"  # type: ignore[union-attr]
    assert parse_decomposition(text).edges == ((1, 2),)
