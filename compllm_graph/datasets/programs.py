"""Python programs derived from GSM8K's calculator annotations, for training a program expert.

A GSM8K solution marks each calculation as `<<48/2=24>>`. `derive_program` turns them, in order,
into one assignment each (`step1 = 48 / 2`); a number in a later calculation that is the result
of exactly one earlier step, and not also a number of the question, becomes that step's
variable (`step2 = 48 + step1`); the program ends by printing the last step. Nothing is
guessed: a calculation that is not plain arithmetic (numbers, `+ - * / // % **`, brackets)
drops the problem.

`gsm8k_programs` keeps only the programs that print the gold answer (the number after `####`),
judged as the program expert judges a run (`sandbox.printed_number`: the last number printed,
rounded to 10 decimals). The programs are run by `evaluate_program`, a small evaluator of
exactly this arithmetic (no process per program: the train file has 7,473 problems), which
prints what Python would; the tests check that the sandbox prints the same.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from compllm_graph.datasets.items import gsm8k_items
from compllm_graph.errors import CompLLMError
from compllm_graph.sandbox import plain_number, printed_number

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_QUESTION_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")  # "05" is not a Python number; "0.5" stays
_MAX_EXPONENT = 64  # GSM8K squares and cubes; a larger power is not a grade-school step

_BINARY: Mapping[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: Mapping[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class ProgramDerivationError(CompLLMError, ValueError):
    """A solution whose annotations give no program, or a program outside the arithmetic."""


@dataclass(frozen=True)
class ProgramExample:
    """A GSM8K problem with a program that prints its answer.

    Attributes:
        id: The problem's item id (`gsm8k/train/N`, as `items.gsm8k_items` gives it), so it
            keeps the problem's split.
        question: The problem.
        program: The derived program; it prints `answer`.
        answer: The gold answer.
    """

    id: str
    question: str
    program: str
    answer: str


@dataclass(frozen=True)
class ProgramYield:
    """How many problems gave a program that prints the gold answer, and why the rest did not.

    Attributes:
        kept: Problems kept.
        total: Problems read.
        dropped: Reason -> problems dropped for it ("no calculations", "not arithmetic",
            "does not run", "wrong answer").
    """

    kept: int
    total: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """`kept / total` (0 for no problems)."""
        return self.kept / self.total if self.total else 0.0


def derive_program(solution: str, question: str = "") -> str:
    """The program of a GSM8K solution's `<<expression=result>>` annotations.

    Args:
        solution: The worked solution with its annotations (the JSONL's `answer`).
        question: The problem: a number it states is never replaced by a variable, since a
            later calculation's use of it may be the question's number, not the step's.

    Returns:
        `step1 = ...` per annotation, then `print(stepN)`.

    Raises:
        ProgramDerivationError: no annotations, or one that is not plain arithmetic.
    """
    calculations = [_calculation(text) for text in _ANNOTATION.findall(solution)]
    if not calculations:
        raise ProgramDerivationError("the solution has no <<...>> calculations")
    stated = {_value(n) for n in _QUESTION_NUMBER.findall(question)}
    lines: list[str] = []
    results: list[Fraction | None] = []
    for number, (expression, result) in enumerate(calculations, start=1):
        named = _Substitute(results, stated).visit(expression)
        lines.append(f"step{number} = {ast.unparse(named)}")
        results.append(result)
    lines.append(f"print(step{len(calculations)})")
    return "\n".join(lines) + "\n"


def _calculation(text: str) -> tuple[ast.expr, Fraction | None]:
    """The expression of `48/2=24` as a checked AST, and its annotated result (None if unread)."""
    expression, _, result = text.rpartition("=")
    if not expression.strip():
        raise ProgramDerivationError(f"<<{text}>> has no expression")
    try:
        tree = ast.parse(_LEADING_ZEROS.sub("", expression.strip()), mode="eval").body
    except SyntaxError as exc:
        raise ProgramDerivationError(f"<<{text}>> is not an expression") from exc
    _check_arithmetic(tree, text)
    try:
        value: Fraction | None = _value(result.strip())
    except ValueError:
        value = None
    return tree, value


def _check_arithmetic(tree: ast.expr, text: str) -> None:
    if not all(_plain(node) for node in ast.walk(tree)):
        raise ProgramDerivationError(f"<<{text}>> is not plain arithmetic")


def _plain(node: ast.AST) -> bool:
    """Numbers, the operators of `_BINARY` and `_UNARY`, and their operator nodes."""
    if isinstance(node, ast.BinOp):
        return type(node.op) in _BINARY
    if isinstance(node, ast.UnaryOp):
        return type(node.op) in _UNARY
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float)
    return isinstance(node, ast.operator | ast.unaryop)


def _value(number: str) -> Fraction:
    return Fraction(number.replace(",", ""))


class _Substitute(ast.NodeTransformer):
    """Numbers that are one earlier step's result, and no number of the question, become that
    step's variable."""

    def __init__(self, results: list[Fraction | None], stated: set[Fraction]) -> None:
        self.results = results
        self.stated = stated

    def visit_Constant(self, node: ast.Constant) -> ast.expr:
        value = Fraction(str(node.value))  # 0.2 as written, not as its binary float
        steps = [i for i, result in enumerate(self.results, start=1) if result == value]
        if len(steps) == 1 and value not in self.stated:
            return ast.Name(f"step{steps[0]}", ast.Load())
        return node


def evaluate_program(program: str) -> str:
    """What a derived program prints, computed without running it: its assignments of plain
    arithmetic and its last `print(...)`, with Python's own int and float semantics.

    Raises:
        ProgramDerivationError: anything else in the program, or a power above 64.
        ArithmeticError: the arithmetic fails (division by zero, overflow).
    """
    names: dict[str, Any] = {}
    printed = None
    for statement in ast.parse(program).body:
        match statement:
            case ast.Assign(targets=[ast.Name(id=name)], value=value):
                names[name] = _evaluate(value, names)
            case ast.Expr(value=ast.Call(func=ast.Name(id="print"), args=[value], keywords=[])):
                printed = str(_evaluate(value, names))
            case _:
                raise ProgramDerivationError(
                    f"not a derived program's line: {ast.unparse(statement)}"
                )
    if printed is None:
        raise ProgramDerivationError("the program prints nothing")
    return printed + "\n"


def _evaluate(node: ast.expr, names: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=int() | float() as value) if not isinstance(value, bool):
            return value
        case ast.Name(id=name) if name in names:
            return names[name]
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            return _UNARY[type(op)](_evaluate(operand, names))
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _evaluate(left, names), _evaluate(right, names)
            if isinstance(op, ast.Pow) and abs(b) > _MAX_EXPONENT:
                raise ProgramDerivationError(f"a power of {b} is out of range")
            return _BINARY[type(op)](a, b)
    raise ProgramDerivationError(f"not plain arithmetic: {ast.unparse(node)}")


def prints_gold(program: str, gold: str) -> bool:
    """Whether `program` prints `gold`, read as the program expert reads a run (the last number
    printed, rounded to 10 decimals)."""
    return printed_number(evaluate_program(program)) == plain_number(_value(gold))


def gsm8k_programs(
    data_dir: Path, file: str = "train"
) -> tuple[list[ProgramExample], ProgramYield]:
    """The programs of GSM8K's `file` that print the gold answer, and the yield.

    Args:
        data_dir: The shared data folder (with `gsm8k/FILE.jsonl`).
        file: `train` (for training) or `test`.

    Returns:
        The kept examples in file order, and how many of how many were kept.
    """
    kept: list[ProgramExample] = []
    dropped: Counter[str] = Counter()
    for item, solution in zip(gsm8k_items(data_dir, file), _solutions(data_dir, file), strict=True):
        reason, program = _program_of(solution, item.question, item.answer)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(ProgramExample(item.id, item.question, program, item.answer))
    total = len(kept) + sum(dropped.values())
    return kept, ProgramYield(len(kept), total, dict(sorted(dropped.items())))


def _solutions(data_dir: Path, file: str) -> Iterator[str]:
    """The annotated solutions, in `gsm8k_items`' order (its items' solutions lack them)."""
    with (data_dir / "gsm8k" / f"{file}.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)["answer"].rpartition("####")[0]


def _program_of(solution: str, question: str, gold: str) -> tuple[str | None, str]:
    """(None, program) for a kept problem, else (why it was dropped, "")."""
    if not _ANNOTATION.search(solution):
        return "no calculations", ""
    try:
        program = derive_program(solution, question)
    except ProgramDerivationError:
        return "not arithmetic", ""
    try:
        right = prints_gold(program, gold)
    except (ArithmeticError, ProgramDerivationError, ValueError):
        return "does not run", ""
    return (None, program) if right else ("wrong answer", "")


__all__ = [
    "ProgramDerivationError",
    "ProgramExample",
    "ProgramYield",
    "derive_program",
    "evaluate_program",
    "gsm8k_programs",
    "prints_gold",
]
