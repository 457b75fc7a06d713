"""benchmarks/program_expert.py: the strict score reads the stated answer, not any number."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the benchmark loads the [local] engines")
pytest.importorskip("faiss", reason="the benchmark imports the expert store ([router])")

from benchmarks.program_expert import strictly_right


@pytest.mark.parametrize(
    ("reply", "gold", "right"),
    [
        ("48 / 2 = 24, so 24 + 48 = 72. The answer is 72.", "72", True),
        ("```python\nprint(48 + 24)\n```\nThe answer is 72.", "72", True),
        ("The answer is 1,200.", "1200", True),
        # The gold number appears in the working, but the stated answer is another.
        ("72 pens in April, so 72 / 2 = 36. The answer is 36.", "72", False),
        ("I cannot tell.", "72", False),
    ],
)
def test_the_strict_score_reads_the_stated_answer(reply: str, gold: str, right: bool) -> None:
    assert strictly_right(reply, gold) is right
