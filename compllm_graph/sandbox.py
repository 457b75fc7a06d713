"""Run a model-written Python program in a separate, limited process and read what it printed.

The program expert (`compllm_graph.program_expert`) asks a model for a short program that prints
an arithmetic answer; this module runs it. It is containment for the programs a language model
writes: the mistakes (an endless loop, a huge list, a million lines of output), the habits
(`import os` to read a file, `open(...)`), and the well-known escape idioms
(`().__class__.__base__.__subclasses__()`, `getattr(x, "__" + "globals__")`, `print(file=...)`),
each stopped by more than one layer.

**What it is not.** It is not a security boundary against a determined attacker: the child is
an ordinary CPython process of the same kernel, with no namespaces, seccomp filter or container,
so a kernel or interpreter exploit (a crash of a C module, a bug in the audit machinery) is out
of scope. Run programs from untrusted people in a container or VM; this module assumes a model
that is wrong, not hostile.

The layers, in the order a program meets them:

1. **Static check (this process, `check_program`).** The code is parsed with `ast` and refused,
   naming every problem, when it imports a module outside the whitelist (`SAFE_MODULES`) or
   relatively; uses a name such as `eval`, `exec`, `compile`, `open`, `getattr`, `globals`,
   `input` (`REFUSED_NAMES`) or any dunder name (`__import__`, `__builtins__`, `__class__`);
   uses an attribute starting with `_` (every dunder, `statistics.random._os`, and so a
   class's private `self._x` too) or one reaching frames (`gi_frame`, `f_globals`,
   `tb_frame`, ...); holds a string with `__` (the name in `attrgetter("__class__")`); matches
   a class pattern on such an attribute; passes `file=` to `print`; or is longer than
   `SandboxLimits.max_code_chars`. A program that does not parse is a "syntax" failure.
2. **Run-time restrictions (the child, `compllm_graph._sandbox_child`).** The child runs as
   `python -I -S -W ignore`: no environment variables, no site-packages, no script folder on
   the path. It imports the whitelisted modules first and hands the program a *view* of each:
   its public attributes less other modules (no `fractions.sys`), with `operator.attrgetter`
   and `methodcaller` refusing private names, and `string.Formatter`,
   `functools.update_wrapper` and `functools.wraps` (which read attributes named by strings)
   removed. The program runs as a function (not `exec`) with restricted builtins: `import`
   gives only the views, `print` refuses `file=`, the names of `REFUSED_NAMES` refuse when
   called, and other builtins outside a short list of plain ones are absent. Then
   `sys.addaudithook` refuses every audited event: opening a file, a socket, a subprocess,
   `os.system`, `os.fork`, any import of a module not loaded before, `exec`, `compile`,
   reading a frame or code object, `ctypes`. A refusal is reported even when the program
   catches the exception.
3. **Operating-system limits (the child, set before the modules load).** `RLIMIT_CPU` (the
   kernel stops the process), `RLIMIT_AS` (allocations fail with `MemoryError`),
   `RLIMIT_FSIZE=0` (no byte written to a file), `RLIMIT_NPROC=0` (no new process or thread),
   `RLIMIT_CORE=0`, and `RLIMIT_NOFILE=3` once the modules are loaded: no new file descriptor
   at all, so no file or socket can be opened even past the layers above. A root parent's
   child switches to `nobody` (uid and gid 65534) before the program runs, because the kernel
   ignores `RLIMIT_NPROC` for root and file permissions then apply; a root that may not switch
   users keeps root, and the other layers still hold.
4. **The parent.** The child leads its own process group (`start_new_session`); the parent
   kills the whole group at the wall-clock limit, as soon as stdout passes
   `max_output_bytes`, and when the awaiting task is cancelled. Reading stops at the limit, so
   a flood of output never reaches this process's memory.

What is not promised: a program may still read what its process already holds (the
environment is empty; the whitelisted modules' own data), spend its whole CPU and wall-clock
allowance, and learn facts about the host through the whitelisted modules (`datetime.now()`).
Helpers that the whitelisted modules' C code imports on use (`time`, `_strptime` for
`datetime`) are handed over whole. `collections.namedtuple` builds its class with `exec`, so
it is refused. File creation is stopped by the Python layers and `RLIMIT_NOFILE`, not by
`RLIMIT_FSIZE`, which stops only writing bytes. Network access is stopped by the same layers;
there is no network namespace.

A run that ends cleanly but printed no number is a "no-number" failure when a number is asked
for (`need_number=True`, the default): the answer is the last number printed (`printed_number`).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Literal

from compllm_graph._sync import run_sync
from compllm_graph.errors import CompLLMError

SAFE_MODULES: tuple[str, ...] = (
    "math",
    "fractions",
    "decimal",
    "statistics",
    "itertools",
    "functools",
    "datetime",
    "re",
    "collections",
    "operator",
    "string",
)
"""The standard-library modules a program may import; `SandboxLimits.modules` may narrow it."""

REFUSED_NAMES = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "input",
        "breakpoint",
        "help",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "dir",
        "exit",
        "quit",
        "memoryview",
        "type",
    }
)
"""Names a program may not use at all, whatever they are bound to."""

FRAME_ATTRS = frozenset(
    {
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "tb_frame",
        "tb_next",
    }
)
"""Attributes that reach frames and code objects without a dunder name."""

ErrorKind = Literal["refused", "syntax", "exception", "timeout", "memory", "output", "no-number"]
"""Why a run failed."""

_CHILD = Path(__file__).with_name("_sandbox_child.py")
_STATUS_BYTES = 16_384  # the child's status line is at most a few kilobytes
# The last number in the output: "1,234.5", "-3", ".5", "2e-3", a fraction "3/4".
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+"
_LAST_NUMBER = re.compile(rf"(-?)({_NUMBER})(?:\s*/\s*(\d+)(?![\d.]))?")
_ANSWER_DECIMALS = 10


class SandboxError(CompLLMError, ValueError):
    """Bad sandbox settings or input (a limit out of range, a module outside the whitelist)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one program run. The defaults suit short arithmetic programs.

    Args:
        cpu_seconds: CPU seconds before the kernel stops the program (`RLIMIT_CPU`).
        wall_seconds: Seconds of wall-clock time, process start included, before the parent
            kills the program's process group.
        memory_mb: Address space of the child in MiB (`RLIMIT_AS`), the interpreter's own
            included.
        max_output_bytes: Most bytes of stdout read; one more and the program is killed.
        max_code_chars: Longest program accepted.
        modules: The standard-library modules a program may import: a subset of
            `SAFE_MODULES`.
    """

    cpu_seconds: int = field(
        default=2, metadata={"help": "CPU seconds before the kernel stops the program"}
    )
    wall_seconds: float = field(
        default=5.0,
        metadata={"help": "wall-clock seconds, start-up included, before the program is killed"},
    )
    memory_mb: int = field(
        default=256, metadata={"help": "address space of the program's process, in MiB"}
    )
    max_output_bytes: int = field(
        default=16_384, metadata={"help": "most bytes of output read before the program is killed"}
    )
    max_code_chars: int = field(default=10_000, metadata={"help": "longest program accepted"})
    modules: tuple[str, ...] = field(
        default=SAFE_MODULES,
        metadata={
            "help": "standard-library modules a program may import (a subset of the safe ones)"
        },
    )

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_mb", "max_output_bytes", "max_code_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SandboxError(
                    f"SandboxLimits.{name} must be a positive integer, got {value!r}"
                )
        if not self.wall_seconds > 0:
            raise SandboxError(
                f"SandboxLimits.wall_seconds must be positive, got {self.wall_seconds!r}"
            )
        if not isinstance(self.modules, tuple) or not set(self.modules) <= set(SAFE_MODULES):
            raise SandboxError(
                f"SandboxLimits.modules must be a tuple of modules among {list(SAFE_MODULES)}, "
                f"got {self.modules!r}"
            )


@dataclass(frozen=True)
class SandboxResult:
    """What one run gave.

    Attributes:
        ok: The program ran to its end without a refusal, and printed a number when one was
            asked for.
        stdout: What it printed (at most `max_output_bytes`, decoded as UTF-8).
        error: Why it failed; None when `ok`.
        message: The failure in words (the exception, the refusal, the limit); "" when `ok`.
        answer: The last number it printed (`printed_number`), or None.
        seconds: Wall-clock seconds, checks included.
    """

    ok: bool
    stdout: str = ""
    error: ErrorKind | None = None
    message: str = ""
    answer: str | None = None
    seconds: float = 0.0


class _Checker(ast.NodeVisitor):
    """Collects every reason to refuse a program (see the module docstring, layer 1)."""

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules
        self.problems: list[str] = []
        self._class_depth = 0

    def _refuse(self, node: ast.AST, what: str) -> None:
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def _module(self, node: ast.AST, name: str | None) -> None:
        if name not in self.modules:
            self._refuse(node, f"import of {name!r} (allowed: {', '.join(self.modules)})")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._module(node, alias.name)
            self._binding(node, alias.asname)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self._refuse(node, "a relative import")
        self._module(node, node.module)
        for alias in node.names:
            self._binding(node, alias.asname or alias.name)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in REFUSED_NAMES:
            self._refuse(node, f"the name {node.id!r}")
        self._binding(node, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_") or node.attr in FRAME_ATTRS:
            self._refuse(node, f"access to attribute {node.attr!r}")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and "__" in node.value:
            self._refuse(node, f"a string holding '__' ({node.value[:40]!r})")

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:
            if attr.startswith("_"):
                self._refuse(node, f"a class pattern on attribute {attr!r}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        is_print = isinstance(node.func, ast.Name) and node.func.id == "print"
        if is_print and any(k.arg == "file" for k in node.keywords):
            self._refuse(node, "print(file=...): a program prints to stdout only")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if self._class_depth == 0:  # methods may be dunders (__init__, __lt__)
            self._binding(node, node.name)
        self._visit_scope(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._binding(node, node.name)
        self._visit_scope(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._binding(node, node.name)
        self._class_depth += 1
        self.generic_visit(node)
        self._class_depth -= 1

    def _visit_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        depth, self._class_depth = self._class_depth, 0
        self.generic_visit(node)
        self._class_depth = depth

    def visit_arg(self, node: ast.arg) -> None:
        self._binding(node, node.arg)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            self._binding(node, name)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        for name in node.names:
            self._binding(node, name)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self._binding(node, node.name)
        self.generic_visit(node)

    def _binding(self, node: ast.AST, name: str | None) -> None:
        if name and name.startswith("__") and name.endswith("__"):
            self._refuse(node, f"the dunder name {name!r}")


def check_program(code: str, limits: SandboxLimits | None = None) -> list[str]:
    """Every reason the static check (layer 1) refuses `code`; [] when it may run.

    Raises:
        SyntaxError: `code` does not parse (a `ValueError` for a NUL byte becomes one too).
        SandboxError: `code` is not a string.
    """
    if not isinstance(code, str):
        raise SandboxError(f"a program is a string of Python code, got {type(code).__name__}")
    limits = limits or SandboxLimits()
    if len(code) > limits.max_code_chars:
        return [f"the program has {len(code):,} characters; at most {limits.max_code_chars:,}"]
    try:
        tree = ast.parse(code, "<program>")
    except ValueError as exc:  # "source code string cannot contain null bytes"
        raise SyntaxError(str(exc)) from exc
    checker = _Checker(limits.modules)
    checker.visit(tree)
    return checker.problems


def printed_number(stdout: str) -> str | None:
    """The last number in `stdout`, in plain decimal: "24.0" -> "24", "3/4" -> "0.75",
    "0.30000000000000004" -> "0.3" (rounded to 10 decimals), "1,234" -> "1234"; None if none."""
    matches = list(_LAST_NUMBER.finditer(stdout))
    if not matches:
        return None
    sign, number, denominator = matches[-1].groups()
    value = Fraction(Decimal(number.replace(",", "")))
    if denominator:
        if int(denominator) == 0:
            return None
        value /= int(denominator)
    return plain_number(-value if sign else value)


def plain_number(value: Fraction | int | float) -> str:
    """`value` rounded to 10 decimals, without trailing zeros or an exponent."""
    rounded = round(Fraction(value), _ANSWER_DECIMALS)
    if rounded.denominator == 1:
        return str(rounded.numerator)
    text = format(Decimal(rounded.numerator) / Decimal(rounded.denominator), "f")
    return text.rstrip("0").rstrip(".")


def run_program(
    code: str,
    limits: SandboxLimits | None = None,
    *,
    need_number: bool = True,
    static_check: bool = True,
) -> SandboxResult:
    """Run `code` in the sandbox and wait for it (see `arun_program`)."""
    return run_sync(arun_program(code, limits, need_number=need_number, static_check=static_check))


async def arun_program(
    code: str,
    limits: SandboxLimits | None = None,
    *,
    need_number: bool = True,
    static_check: bool = True,
) -> SandboxResult:
    """Run `code` in the sandbox without blocking the event loop.

    Args:
        code: The program.
        limits: Its limits; None takes `SandboxLimits()`.
        need_number: A run that printed no number fails with "no-number".
        static_check: Refuse code the static check refuses before starting a process. Only
            tests turn it off, to show that the run-time layers hold on their own.

    Returns:
        The result; a failure is a result (`ok=False`), never an exception. Cancelling the
        awaiting task kills the program.

    Raises:
        SandboxError: `code` is not a string, or `limits` is not a `SandboxLimits`.
        OSError: the child process could not be started (no program's fault).
    """
    if limits is None:
        limits = SandboxLimits()
    if not isinstance(limits, SandboxLimits):
        raise SandboxError(f"limits must be a SandboxLimits, got {type(limits).__name__}")
    started = time.perf_counter()
    if static_check:
        try:
            problems = check_program(code, limits)
        except SyntaxError as exc:
            return _failed("syntax", f"line {exc.lineno}: {exc.msg}", started)
        if problems:
            return _failed("refused", "; ".join(problems), started)
    elif not isinstance(code, str):
        raise SandboxError(f"a program is a string of Python code, got {type(code).__name__}")
    outcome = await _spawn(code, limits)
    return _result(outcome, limits, need_number, started)


@dataclass
class _Outcome:
    """What the parent saw of one child process."""

    stdout: bytes = b""
    stderr: bytes = b""
    returncode: int | None = None
    killed_for: Literal["timeout", "output"] | None = None


async def _spawn(code: str, limits: SandboxLimits) -> _Outcome:
    request = {
        "code": code,
        "modules": list(limits.modules),
        "cpu_seconds": limits.cpu_seconds,
        "memory_bytes": limits.memory_mb * 2**20,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-W",
        "ignore",
        str(_CHILD),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, killed as one
        env={},
        cwd="/",
    )
    outcome = _Outcome()
    try:
        await asyncio.wait_for(_talk(process, request, limits, outcome), limits.wall_seconds)
    except TimeoutError:
        outcome.killed_for = "timeout"
    finally:
        if process.returncode is None:
            _kill_group(process.pid)
        outcome.returncode = await process.wait()
    return outcome


async def _talk(
    process: asyncio.subprocess.Process,
    request: dict[str, object],
    limits: SandboxLimits,
    outcome: _Outcome,
) -> None:
    """Send the request, then read stdout (killing at the limit) and the status on stderr."""
    assert process.stdin and process.stdout and process.stderr  # all three are pipes
    try:
        process.stdin.write(json.dumps(request).encode())
        await process.stdin.drain()
        process.stdin.close()
    except (BrokenPipeError, ConnectionResetError):  # it died at start: its status says why
        pass
    errors = asyncio.ensure_future(_read_at_most(process.stderr, _STATUS_BYTES))
    try:
        outcome.stdout, overflowed = await _read_at_most(process.stdout, limits.max_output_bytes)
        if overflowed:
            outcome.killed_for = "output"
            _kill_group(process.pid)
        outcome.stderr, _ = await errors
    finally:
        errors.cancel()


async def _read_at_most(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of `stream` until its end, and whether it held more."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(65_536):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signal.SIGKILL)


def _failed(kind: ErrorKind, message: str, started: float, stdout: str = "") -> SandboxResult:
    return SandboxResult(
        ok=False,
        stdout=stdout,
        error=kind,
        message=message,
        seconds=time.perf_counter() - started,
    )


def _result(
    outcome: _Outcome, limits: SandboxLimits, need_number: bool, started: float
) -> SandboxResult:
    stdout = outcome.stdout.decode("utf-8", errors="replace")
    if outcome.killed_for == "output":
        message = f"the program printed more than {limits.max_output_bytes:,} bytes"
        return _failed("output", message, started, stdout)
    if outcome.killed_for == "timeout":
        message = f"the program ran past {limits.wall_seconds} s of wall-clock time"
        return _failed("timeout", message, started, stdout)
    status = _status(outcome.stderr)
    if status is None:
        return _failed(*_died(outcome, limits), started, stdout)
    kind, message = status
    if kind != "ok":
        return _failed(kind, message, started, stdout)
    answer = printed_number(stdout)
    if need_number and answer is None:
        return _failed(
            "no-number", f"the program printed no number: {stdout[-200:]!r}", started, stdout
        )
    return SandboxResult(
        ok=True, stdout=stdout, answer=answer, seconds=time.perf_counter() - started
    )


def _status(stderr: bytes) -> tuple[ErrorKind | Literal["ok"], str] | None:
    """The child's last stderr line, when it is a status it wrote."""
    lines = stderr.decode("utf-8", errors="replace").strip().splitlines()
    try:
        status = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    kinds = ("ok", "refused", "syntax", "exception", "memory")
    if not isinstance(status, dict) or status.get("kind") not in kinds:
        return None
    return status["kind"], str(status.get("message", ""))


def _died(outcome: _Outcome, limits: SandboxLimits) -> tuple[ErrorKind, str]:
    """Why a child that wrote no status ended."""
    code = outcome.returncode
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout", f"the program used more than {limits.cpu_seconds} s of CPU time"
    how = (
        f"signal {signal.Signals(-code).name}"
        if code is not None and code < 0
        else f"exit code {code}"
    )
    tail = outcome.stderr.decode("utf-8", errors="replace").strip()[-300:]
    return "exception", f"the program's process ended with {how} and no status: {tail!r}"


__all__ = [
    "FRAME_ATTRS",
    "REFUSED_NAMES",
    "SAFE_MODULES",
    "ErrorKind",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "arun_program",
    "check_program",
    "plain_number",
    "printed_number",
    "run_program",
]
