"""Python programs derived from GSM8K's calculator annotations, for training a program expert.

A GSM8K solution marks each calculation as `<<48/2=24>>`. `derive_program` turns them, in order,
into one assignment each (`step1 = 48 / 2`); a number in a later calculation that is the result
of exactly one earlier step, and not also a number of the question, becomes that step's
variable (`step2 = 48 + step1`); the program ends by printing the last step. Nothing is
guessed: a calculation that is not plain arithmetic (numbers, `+ - * / // % **`, brackets)
drops the problem. With `names="words"` a step is named after the words the solution writes
right after its result ("<<48/2=24>>24 clips in May" gives `clips_may = 48 / 2`), where there
are any, since a small model's reasoning in a program lives in what its variables name.

`gsm8k_programs` keeps only the programs that print the gold answer (the number after `####`),
judged as the program expert judges a run (`sandbox.printed_number`: the last number printed,
rounded to 10 decimals). The programs are run by `evaluate_program`, a small evaluator of
exactly this arithmetic (no process per program: the train file has 7,473 problems), which
prints what Python would; the tests check that the sandbox prints the same.
"""

from __future__ import annotations

import ast
import builtins
import json
import keyword
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, get_args

from compllm_graph.datasets.items import gsm8k_items
from compllm_graph.errors import CompLLMError
from compllm_graph.sandbox import plain_number, printed_number

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_QUESTION_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")  # "05" is not a Python number; "0.5" stays
_MAX_EXPONENT = 64  # GSM8K squares and cubes; a larger power is not a grade-school step
# The words after a result, up to the next character that is no letter or space: "24 clips in May."
_AFTER_RESULT = re.compile(r"\s*\$?\s*(?:\d[\d,]*)?(?:\.\d+)?\s*%?([A-Za-z][A-Za-z ]*)")
_NAME_WORDS = 2
_FILLER = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "each",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "they",
        "this",
        "to",
        "was",
        "were",
        "which",
        "who",
        "will",
        "with",
    }
)

_WORDS = re.compile(r"[A-Za-z][A-Za-z ]*")


def _content(text: str) -> list[str]:
    """The words of `text` that can name a quantity: lower-cased, no filler, no `x` (times)."""
    return [w for w in text.lower().split() if w not in _FILLER and len(w) > 1]


VariableNames = Literal["steps", "words"]
"""How a derived program names its steps: `step1`, `step2`, ... or after the solution's words."""

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


def derive_program(solution: str, question: str = "", names: VariableNames = "steps") -> str:
    """The program of a GSM8K solution's `<<expression=result>>` annotations.

    Args:
        solution: The worked solution with its annotations (the JSONL's `answer`).
        question: The problem: a number it states is never replaced by a variable, since a
            later calculation's use of it may be the question's number, not the step's.
        names: `steps` names the Nth step `stepN`; `words` after the (at most two) words
            other than filler that follow its result in the solution, `stepN` where there
            are none or they make no free Python name; a repeated name gets `_2`, `_3`, ...

    Returns:
        One assignment per annotation, then a `print` of the last.

    Raises:
        ProgramDerivationError: no annotations, or one that is not plain arithmetic.
        ValueError: an unknown `names`.
    """
    if names not in get_args(VariableNames):
        raise ValueError(f"names must be one of {get_args(VariableNames)}, got {names!r}")
    found = list(_ANNOTATION.finditer(solution))
    if not found:
        raise ProgramDerivationError("the solution has no <<...>> calculations")
    calculations = [_calculation(match.group(1)) for match in found]
    variables = _variables(solution, found) if names == "words" else _steps(len(found))
    stated = {_value(n) for n in _QUESTION_NUMBER.findall(question)}
    lines: list[str] = []
    results: list[Fraction | None] = []
    for variable, (expression, result) in zip(variables, calculations, strict=True):
        named = _Substitute(results, stated, variables).visit(expression)
        lines.append(f"{variable} = {ast.unparse(named)}")
        results.append(result)
    lines.append(f"print({variables[-1]})")
    return "\n".join(lines) + "\n"


def _steps(count: int) -> list[str]:
    return [f"step{number}" for number in range(1, count + 1)]


def _variables(solution: str, found: list[re.Match[str]]) -> list[str]:
    """Each annotation's variable (see `derive_program`); never repeated."""
    chosen: list[str] = []
    for number, match in enumerate(found, start=1):
        after = _AFTER_RESULT.match(solution, match.end())
        words = _content(after.group(1))[:_NAME_WORDS] if after else []
        if not words:  # "she earned 0.2 x 50 = $<<...>>10.": the words before the calculation
            line = solution[solution.rfind("\n", 0, match.start()) + 1 : match.start()]
            runs = [_content(run) for run in _WORDS.findall(line)]
            words = next((run[-_NAME_WORDS:] for run in reversed(runs) if run), [])
        name = "_".join(words)
        if not name.isidentifier() or keyword.iskeyword(name) or hasattr(builtins, name):
            name = f"step{number}"
        base, copy = name, 1
        while name in chosen:
            copy += 1
            name = f"{base}_{copy}"
        chosen.append(name)
    return chosen


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

    def __init__(
        self, results: list[Fraction | None], stated: set[Fraction], variables: list[str]
    ) -> None:
        self.results = results
        self.stated = stated
        self.variables = variables

    def visit_Constant(self, node: ast.Constant) -> ast.expr:
        value = Fraction(str(node.value))  # 0.2 as written, not as its binary float
        steps = [i for i, result in enumerate(self.results) if result == value]
        if len(steps) == 1 and value not in self.stated:
            return ast.Name(self.variables[steps[0]], ast.Load())
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
    data_dir: Path, file: str = "train", names: VariableNames = "steps"
) -> tuple[list[ProgramExample], ProgramYield]:
    """The programs of GSM8K's `file` that print the gold answer, and the yield.

    Args:
        data_dir: The shared data folder (with `gsm8k/FILE.jsonl`).
        file: `train` (for training) or `test`.
        names: How the programs name their steps (`derive_program`).

    Returns:
        The kept examples in file order, and how many of how many were kept.
    """
    kept: list[ProgramExample] = []
    dropped: Counter[str] = Counter()
    for item, solution in zip(gsm8k_items(data_dir, file), _solutions(data_dir, file), strict=True):
        reason, program = _program_of(solution, item.question, item.answer, names)
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


def _program_of(
    solution: str, question: str, gold: str, names: VariableNames
) -> tuple[str | None, str]:
    """(None, program) for a kept problem, else (why it was dropped, "")."""
    if not _ANNOTATION.search(solution):
        return "no calculations", ""
    try:
        program = derive_program(solution, question, names)
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
    "VariableNames",
    "derive_program",
    "evaluate_program",
    "gsm8k_programs",
    "prints_gold",
]
