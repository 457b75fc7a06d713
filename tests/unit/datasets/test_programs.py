"""Programs derived from GSM8K's calculator annotations: one step per annotation, earlier
results by name where that is unambiguous, and only programs that print the gold answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compllm_graph.data_dir import DEFAULT_DATA_DIR, missing_data_message
from compllm_graph.datasets.programs import (
    ProgramDerivationError,
    ProgramExample,
    ProgramYield,
    derive_program,
    evaluate_program,
    gsm8k_programs,
    prints_gold,
)
from compllm_graph.sandbox import SandboxLimits, printed_number, run_program

NATALIA = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}
WENG = {
    "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
    "babysitting. How much did she earn?",
    "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
    "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
}
UNANNOTATED_LAST_STEP = {  # the answer's own calculation has no annotation
    "question": "Carlos memorized 6 fewer digits of pi than Sam's 24, then 6 more. How many?",
    "answer": "Carlos memorized 24/6=<<24/6=4>>4 digits of pi.\nSam memorized 4+6=10.\n#### 10",
}
NO_CALCULATIONS = {"question": "What is ten?", "answer": "It is ten.\n#### 10"}


def test_each_annotation_is_a_step_and_earlier_results_are_named() -> None:
    program = derive_program(NATALIA["answer"], NATALIA["question"])
    assert program == "step1 = 48 / 2\nstep2 = 48 + step1\nprint(step2)\n"
    assert evaluate_program(program) == "72.0\n"
    assert prints_gold(program, "72")


def test_a_decimal_result_is_named_as_written() -> None:
    program = derive_program(WENG["answer"], WENG["question"])
    assert program == "step1 = 12 / 60\nstep2 = step1 * 50\nprint(step2)\n"
    assert prints_gold(program, "10")


def test_steps_may_be_named_after_the_words_beside_their_results() -> None:
    program = derive_program(NATALIA["answer"], NATALIA["question"], names="words")
    assert program == (
        "clips_may = 48 / 2\nclips_altogether = 48 + clips_may\nprint(clips_altogether)\n"
    )
    # no words after "$10.": the words before the calculation, without filler or the `x`
    program = derive_program(WENG["answer"], WENG["question"], names="words")
    assert program == "per_minute = 12 / 60\nearned = per_minute * 50\nprint(earned)\n"
    assert prints_gold(program, "10")


@pytest.mark.parametrize(
    ("solution", "program"),
    [  # a repeated name gets a number; no usable words, a keyword or a builtin is `stepN`
        ("<<2*3=6>>6 apples, <<6+1=7>>7 apples", "apples = 2 * 3\napples_2 = apples + 1\n"),
        ("<<2*3=6>>; then <<6+1=7>>.", "step1 = 2 * 3\nstep2 = step1 + 1\n"),
        ("<<2*3=6>>6 sum and <<6+1=7>>7 lambda", "step1 = 2 * 3\nstep2 = step1 + 1\n"),
    ],
)
def test_a_name_that_cannot_be_used_falls_back(solution: str, program: str) -> None:
    derived = derive_program(solution, names="words")
    assert derived.startswith(program)
    assert derived.splitlines()[-1] == f"print({program.splitlines()[-1].split(' = ')[0]})"
    with pytest.raises(ValueError, match="names must be one of"):
        derive_program(solution, names="letters")  # type: ignore[arg-type]


def test_a_number_two_steps_gave_stays_a_number() -> None:
    solution = "<<2*3=6>> and <<1+5=6>>, so <<6*2=12>>"
    assert derive_program(solution) == (
        "step1 = 2 * 3\nstep2 = 1 + 5\nstep3 = 6 * 2\nprint(step3)\n"
    )


def test_a_number_the_question_states_stays_a_number() -> None:
    solution = "Twice 3 is <<2*3=6>>6; with the 6 pears, <<6+1=7>>"
    assert derive_program(solution, "She has 6 pears and 3 apples.").splitlines()[1] == (
        "step2 = 6 + 1"
    )
    assert derive_program(solution, "She has 3 apples.").splitlines()[1] == "step2 = step1 + 1"


def test_leading_zeros_and_powers_are_read() -> None:
    program = derive_program("<<05*2=10>> then <<10**2=100>>")
    assert program == "step1 = 5 * 2\nstep2 = step1 ** 2\nprint(step2)\n"
    assert prints_gold(program, "100")


@pytest.mark.parametrize(
    ("solution", "match"),
    [
        ("No calculator here.", "no <<...>> calculations"),
        ("<<abs(-3)=3>>", "not plain arithmetic"),
        ("<<x+1=2>>", "not plain arithmetic"),
        ("<<'a'*3=aaa>>", "not plain arithmetic"),
        ("<<3+=3>>", "not an expression"),
        ("<<=3>>", "has no expression"),
    ],
)
def test_anything_but_plain_arithmetic_is_refused(solution: str, match: str) -> None:
    with pytest.raises(ProgramDerivationError, match=match):
        derive_program(solution)


def test_the_evaluator_runs_only_derived_programs() -> None:
    with pytest.raises(ProgramDerivationError, match="not a derived program's line"):
        evaluate_program("import os\nprint(1)")
    with pytest.raises(ProgramDerivationError, match="power of 1000"):
        evaluate_program("step1 = 2 ** 1000\nprint(step1)")
    with pytest.raises(ProgramDerivationError, match="prints nothing"):
        evaluate_program("step1 = 1\n")
    with pytest.raises(ZeroDivisionError):
        evaluate_program("step1 = 1 / 0\nprint(step1)")


def test_the_sandbox_prints_what_the_evaluator_computes() -> None:
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=4.0)
    for row in (NATALIA, WENG):
        program = derive_program(row["answer"], row["question"])
        result = run_program(program, limits)
        assert result.ok, result
        assert result.stdout == evaluate_program(program)
        assert result.answer == printed_number(evaluate_program(program))


def write_gsm8k(folder: Path, rows: list[dict[str, str]]) -> Path:
    (folder / "gsm8k").mkdir()
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    (folder / "gsm8k" / "train.jsonl").write_text(lines, encoding="utf-8")
    return folder


def test_only_programs_that_print_the_gold_answer_are_kept(tmp_path: Path) -> None:
    rows = [NATALIA, UNANNOTATED_LAST_STEP, NO_CALCULATIONS, WENG]
    kept, found = gsm8k_programs(write_gsm8k(tmp_path, rows))
    assert [e.id for e in kept] == ["gsm8k/train/0", "gsm8k/train/3"]
    assert kept[0] == ProgramExample(
        "gsm8k/train/0",
        NATALIA["question"],
        "step1 = 48 / 2\nstep2 = 48 + step1\nprint(step2)\n",
        "72",
    )
    assert found == ProgramYield(2, 4, {"no calculations": 1, "wrong answer": 1})
    assert found.rate == 0.5
    named, same = gsm8k_programs(tmp_path, names="words")
    assert same == found and named[0].program.startswith("clips_may = 48 / 2\n")


def test_the_real_train_file_yields_programs_for_most_problems() -> None:
    path = DEFAULT_DATA_DIR / "gsm8k" / "train.jsonl"
    if not path.is_file():
        pytest.skip(
            f"GSM8K's train file is not at {path}: {missing_data_message(DEFAULT_DATA_DIR)}"
        )
    kept, found = gsm8k_programs(DEFAULT_DATA_DIR)
    lines = sum(1 for line in path.open(encoding="utf-8") if line.strip())
    assert found.total == lines
    assert found.kept == len(kept) == found.total - sum(found.dropped.values())
    # 7,001 of 7,473 when written; the rest lack an annotation of their last step, or any.
    assert found.rate > 0.9, found
    assert set(found.dropped) <= {
        "no calculations",
        "not arithmetic",
        "does not run",
        "wrong answer",
    }
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=4.0)
    for example in kept[:: len(kept) // 4][:4]:  # the sandbox agrees, spread over the file
        result = run_program(example.program, limits)
        assert result.ok and result.answer == printed_number(example.answer), example
