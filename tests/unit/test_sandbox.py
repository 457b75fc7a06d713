"""The sandbox refuses or contains every break-out attempt, by more than one layer, and runs
good programs.

Each attempt runs twice where it can: through the static check (refused before any process
starts), and with the check off (`static_check=False`), to show that the run-time layers in
the child hold on their own. Limits are small so the file takes a few seconds.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compllm_graph import _sandbox_child as child
from compllm_graph._help import field_help
from compllm_graph.sandbox import (
    FRAME_ATTRS,
    REFUSED_NAMES,
    SAFE_MODULES,
    SandboxError,
    SandboxLimits,
    arun_program,
    check_program,
    plain_number,
    printed_number,
    run_program,
)

LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=4.0, memory_mb=256, max_output_bytes=4096)

# The classic escape: from a tuple up to `object`, down to a class defined in `os`, into the
# globals of `os` itself.
OS_GLOBALS = (
    "wrap = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close']\n"
    "os_globals = wrap[0].__init__.__globals__\n"
)


@pytest.fixture
def target() -> Iterator[Path]:
    """A path in /tmp (writable by anyone, `nobody` included) that no attempt may create."""
    path = Path("/tmp") / f"compllm-sandbox-{uuid.uuid4().hex}"
    yield path
    assert not path.exists(), f"a sandboxed program created {path}"


def unchecked(code: str, limits: SandboxLimits = LIMITS) -> tuple[str | None, str]:
    """Run `code` past the static check; the error kind and message."""
    result = run_program(code, limits, static_check=False, need_number=False)
    return result.error, result.message


def refused_statically(code: str, *fragments: str) -> None:
    problems = check_program(code, LIMITS)
    assert problems, f"the static check let through {code!r}"
    result = run_program(code, LIMITS)
    assert (result.ok, result.error) == (False, "refused")
    for fragment in fragments:
        assert fragment in result.message, (fragment, result.message)


# --- good programs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "answer"),
    [
        ("print(48/2)", "24"),
        ("from fractions import Fraction\nprint(Fraction(1, 3) + Fraction(1, 6))", "0.5"),
        ("import math\nprint(math.sqrt(16) + math.factorial(4))", "28"),
        (
            "import datetime, statistics, collections, decimal\n"
            "d = datetime.datetime.strptime('2024-03-01', '%Y-%m-%d') - datetime.timedelta(1)\n"
            "c = collections.Counter('aab').most_common(1)[0][1]\n"
            "print(d.day + statistics.mean([1, 2, 3]) + c + float(decimal.Decimal('0.5')))",
            "33.5",
        ),
    ],
)
def test_good_programs_print_their_answer(code: str, answer: str) -> None:
    result = run_program(code, LIMITS)
    assert result.ok, result
    assert (result.error, result.answer) == (None, answer)


def test_a_program_that_prints_no_number_fails_only_when_a_number_is_needed() -> None:
    assert run_program("print('hello')", LIMITS).error == "no-number"
    result = run_program("print('hello')", LIMITS, need_number=False)
    assert (result.ok, result.stdout) == (True, "hello\n")


def test_syntax_errors_and_exceptions_are_reported_as_such() -> None:
    syntax = run_program("print(1", LIMITS)
    assert (syntax.error, syntax.message.startswith("line 1")) == ("syntax", True)
    raised = run_program("print(1)\nprint(1 / 0)", LIMITS)
    assert raised.error == "exception" and "ZeroDivisionError" in raised.message
    assert raised.stdout == "1\n"  # what it printed before failing


# --- break-out attempts -------------------------------------------------------------------


@pytest.mark.parametrize("module", ["os", "subprocess", "socket", "sys", "ctypes", "importlib"])
def test_importing_a_module_outside_the_whitelist_is_refused(module: str) -> None:
    refused_statically(f"import {module}", f"import of {module!r}")
    refused_statically(f"from {module} import path", f"import of {module!r}")
    assert unchecked(f"import {module}")[0] == "refused"


def test_subprocess_never_runs(target: Path) -> None:
    code = f"import subprocess\nsubprocess.run(['touch', '{target}'])"
    refused_statically(code, "import of 'subprocess'")
    assert unchecked(code)[0] == "refused"


def test_opening_a_file_for_writing_is_refused_and_creates_nothing(target: Path) -> None:
    code = f"open('{target}', 'w').write('x')"
    refused_statically(code, "the name 'open'")
    assert unchecked(code) == ("refused", "open()")


def test_reading_etc_passwd_is_refused() -> None:
    refused_statically("print(open('/etc/passwd').read())", "the name 'open'")
    assert unchecked("print(open('/etc/passwd').read())")[0] == "refused"
    # Past the Python layers too: `os.open` is an audited event, refused.
    error, message = unchecked(OS_GLOBALS + "print(os_globals['open']('/etc/passwd', 0))")
    assert (error, message) == ("refused", "the audited event 'open'")


def test_dunder_import_is_refused(target: Path) -> None:
    code = f"__import__('os').system('touch {target}')"
    refused_statically(code, "the dunder name '__import__'")
    assert unchecked(code)[0] == "refused"


@pytest.mark.parametrize("code", ["eval('1 + 1')", "exec('x = 1')", "compile('1', 'f', 'eval')"])
def test_eval_exec_and_compile_are_refused(code: str) -> None:
    refused_statically(code, "the name")
    assert unchecked(code)[0] == "refused"


def test_the_subclasses_escape_is_refused_and_os_system_never_runs(target: Path) -> None:
    refused_statically("().__class__.__base__.__subclasses__()", "'__class__'", "'__base__'")
    error, message = unchecked(OS_GLOBALS + f"os_globals['system']('touch {target}')")
    assert (error, message) == ("refused", "the audited event 'os.system'")


@pytest.mark.parametrize(
    "code",
    [
        "getattr((), '__class__')",
        "getattr((), '_' * 2 + 'class' + '_' * 2)",
        "setattr(print, 'x', 1)",
        "vars()",
        "globals()",
    ],
)
def test_getattr_and_namespace_tricks_are_refused(code: str) -> None:
    refused_statically(code, "the name")
    assert unchecked(code)[0] == "refused"


def test_attribute_names_built_at_run_time_are_refused() -> None:
    # The static check cannot see a name made of pieces; the wrapped operator module can.
    code = "import operator\nprint(operator.attrgetter('_' * 2 + 'class' + '_' * 2)(()))"
    assert check_program(code, LIMITS) == []
    result = run_program(code, LIMITS)
    assert (result.error, result.message) == ("refused", "access to attribute '__class__'")
    # string.Formatter().get_field returns attributes by name: the module view has none.
    code = "import string\nprint(string.Formatter().get_field('0.real', [1], {}))"
    result = run_program(code, LIMITS)
    assert result.error == "exception" and "Formatter" in result.message


def test_module_views_hide_modules_and_private_names() -> None:
    refused_statically("import statistics\nstatistics.random._os", "'_os'")
    error, message = unchecked("import fractions\nprint(fractions.sys)")
    assert error == "exception" and "has no attribute 'sys'" in message


def test_frames_are_out_of_reach() -> None:
    code = "def g():\n    yield 1\nprint(g().gi_frame.f_back.f_globals)"
    refused_statically(code, "'gi_frame'", "'f_back'", "'f_globals'")
    assert unchecked(code) == ("refused", "the audited event 'object.__getattr__'")


def test_a_refusal_is_reported_even_when_the_program_catches_it() -> None:
    caught = "try:\n    import os\nexcept Exception:\n    pass\n"
    assert unchecked(caught + "print(1)")[0] == "refused"
    assert unchecked(caught + "print(1 / 0)")[0] == "refused"  # not the later exception


def test_an_exception_whose_message_fails_is_still_reported() -> None:
    code = "class Odd(Exception):\n    def __str__(self):\n        return 1 / 0\nraise Odd()"
    result = run_program(code, LIMITS)
    assert (result.error, result.message) == ("exception", "Odd (its message could not be read)")


def test_fork_and_a_fork_bomb_are_refused() -> None:
    refused_statically("import os\nos.fork()", "import of 'os'")
    bomb = OS_GLOBALS + "while True:\n    os_globals['fork']()"
    assert unchecked(bomb) == ("refused", "the audited event 'os.fork'")


def test_no_new_file_descriptor_can_be_opened() -> None:
    # `os.dup` is not an audited event; RLIMIT_NOFILE stops it (and any open or socket).
    error, message = unchecked(OS_GLOBALS + "os_globals['dup'](1)")
    assert error == "exception" and "Too many open files" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root parent's child changes user")
def test_a_root_parents_program_runs_as_nobody() -> None:
    result = run_program(
        OS_GLOBALS + "print(os_globals['getuid'](), os_globals['getgid']())",
        LIMITS,
        static_check=False,
    )
    assert (result.ok, result.stdout) == (True, f"{child.NOBODY} {child.NOBODY}\n")


def test_socket_connections_are_refused() -> None:
    code = "import socket\nsocket.create_connection(('127.0.0.1', 80))"
    refused_statically(code, "import of 'socket'")
    assert unchecked(code)[0] == "refused"


def test_print_to_a_file_is_refused(target: Path) -> None:
    refused_statically(f"print('x', file=open('{target}', 'w'))", "print(file=...)")
    code = "class F:\n    def write(self, text):\n        pass\nprint('x', file=F())"
    assert unchecked(code) == ("refused", "print(file=...): a program prints to stdout only")


def test_an_endless_loop_is_stopped_by_the_cpu_limit() -> None:
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=60.0)  # a busy machine is slow
    result = run_program("while True:\n    pass", limits)
    assert result.error == "timeout" and "CPU" in result.message


def test_a_program_that_waits_is_killed_at_the_wall_clock_limit() -> None:
    limits = SandboxLimits(cpu_seconds=10, wall_seconds=0.4)
    result = run_program("while True:\n    pass", limits)
    assert result.error == "timeout" and "wall-clock" in result.message
    assert result.seconds < 2.0


def test_a_huge_allocation_fails_with_memory() -> None:
    result = run_program("x = [0] * 10**10\nprint(len(x))", LIMITS)
    assert result.error == "memory"


def test_printing_10_mb_is_cut_at_the_output_limit() -> None:
    result = run_program("print('x' * 10_000_000)", LIMITS)
    assert result.error == "output"
    assert len(result.stdout) <= LIMITS.max_output_bytes


def child_pids() -> set[int]:
    """Processes of ours running the sandbox's child."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"_sandbox_child" in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except OSError:  # it ended while we looked
            continue
    return found


async def test_cancelling_the_run_kills_the_program() -> None:
    before = child_pids()
    limits = SandboxLimits(cpu_seconds=30, wall_seconds=30.0)
    task = asyncio.ensure_future(arun_program("while True:\n    pass", limits))
    for _ in range(100):  # until it has started
        await asyncio.sleep(0.02)
        if child_pids() - before:
            break
    assert child_pids() - before, "the program never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not child_pids() - before


async def test_the_event_loop_runs_while_a_program_runs() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    result = await arun_program("x = sum(range(3_000_000))\nprint(x)", LIMITS)
    ticker.cancel()
    assert result.ok and ticks >= 3


# --- the checks and settings, without a process --------------------------------------------


def test_the_static_check_names_every_problem() -> None:
    problems = check_program("import os\nx = eval('1')\nprint(x.__class__)", LIMITS)
    assert problems == [
        "line 1: import of 'os' (allowed: " + ", ".join(SAFE_MODULES) + ")",
        "line 2: the name 'eval'",
        "line 3: access to attribute '__class__'",
    ]


def test_the_static_check_allows_dunder_methods_and_refuses_other_dunder_bindings() -> None:
    assert check_program("class A:\n    def __init__(self):\n        self.x = 1\n") == []
    assert check_program("def __import__(name):\n    pass")
    assert check_program("import math as __builtins__")
    assert check_program("match 1:\n    case int(__class__=c):\n        pass")


def test_a_long_program_is_refused() -> None:
    limits = SandboxLimits(max_code_chars=20)
    assert run_program("x = 1\n" * 10, limits).error == "refused"


def test_the_child_refuses_what_the_static_check_refuses() -> None:
    # The child cannot import the package, so it keeps its own copies of these sets.
    assert set(child.REFUSED_BUILTINS) == REFUSED_NAMES
    assert child.FRAME_ATTRS == FRAME_ATTRS
    assert not set(child.SAFE_BUILTINS) & REFUSED_NAMES


@pytest.mark.parametrize(
    ("stdout", "number"),
    [
        ("24.0\n", "24"),
        ("The total is 1,234 dollars", "1234"),
        ("3/4", "0.75"),
        ("0.30000000000000004", "0.3"),
        ("23.999999999999996", "24"),
        ("[1, 2, 3]", "3"),
        ("-5", "-5"),
        ("2.5e-3", "0.0025"),
        ("nothing", None),
        ("1/0", None),
    ],
)
def test_printed_number_reads_the_last_number(stdout: str, number: str | None) -> None:
    assert printed_number(stdout) == number


def test_plain_number_has_no_exponent_or_trailing_zeros() -> None:
    assert (plain_number(1e20), plain_number(0.1 + 0.2), plain_number(2.50)) == (
        "100000000000000000000",
        "0.3",
        "2.5",
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"cpu_seconds": 0},
        {"cpu_seconds": 1.5},
        {"wall_seconds": 0},
        {"memory_mb": -1},
        {"max_output_bytes": True},
        {"modules": ("math", "os")},
        {"modules": "math"},
    ],
)
def test_bad_limits_are_refused_early(settings: dict) -> None:
    with pytest.raises(SandboxError, match="SandboxLimits"):
        SandboxLimits(**settings)


def test_every_limit_has_help() -> None:
    for name in ("cpu_seconds", "wall_seconds", "memory_mb", "max_output_bytes", "modules"):
        assert field_help(SandboxLimits, name)


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(SandboxError, match="string of Python code"):
        run_program(b"print(1)")  # type: ignore[arg-type]
    with pytest.raises(SandboxError, match="SandboxLimits"):
        run_program("print(1)", {"cpu_seconds": 1})  # type: ignore[arg-type]
    assert run_program("print(1)\x00", LIMITS).error == "syntax"
