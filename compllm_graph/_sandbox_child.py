"""The sandbox's child: run one program under the run-time layers of `compllm_graph.sandbox`.

`compllm_graph.sandbox` starts this file as `python -I -S -W ignore _sandbox_child.py`: no
environment, no site-packages, no script folder on `sys.path`, so it imports only the standard
library (and nothing of the package). It reads one JSON request from stdin (`code`, `modules`,
`cpu_seconds`, `memory_bytes`), writes the program's output to stdout and, last, one JSON status
line (`kind`, `message`) to stderr, then leaves with `os._exit` (no exit handlers run).

The order matters: the limits on CPU time, memory, file size and processes come first, so the
modules' imports count against them; then the whitelisted modules are imported and wrapped;
then no new file descriptor may be opened (`RLIMIT_NOFILE` at the three already open), root
becomes `nobody`, and the audit hook goes in; only then does the program run.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import json
import operator
import os
import resource
import sys
import types
from collections.abc import Callable
from typing import Any, NoReturn

NOBODY = 65534
"""uid and gid of `nobody`: a root parent's child runs as it, so `RLIMIT_NPROC` and file
permissions apply (the kernel ignores `RLIMIT_NPROC` for root)."""

MESSAGE_CHARS = 2000
"""Longest message in the status line (an exception's text can be huge)."""

# Modules a whitelisted function imports on first use (Counter.most_common imports heapq,
# datetime.strptime imports _strptime): imported here, before the audit hook refuses imports.
LAZY_IMPORTS = {
    "collections": ("heapq",),
    "datetime": ("_strptime", "time"),
    "functools": ("types", "weakref"),
    "decimal": ("locale",),
}

# Attributes that reach interpreter internals (frames, code objects) without a dunder name.
FRAME_ATTRS = frozenset(
    {"gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "f_back", "f_globals"}
    | {"f_locals", "f_builtins", "f_code", "tb_frame", "tb_next"}
)

SAFE_BUILTINS = (
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytes",
    "callable",
    "chr",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "id",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "super",
    "property",
    "staticmethod",
    "classmethod",
    "NotImplemented",
    "Ellipsis",
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "IndexError",
    "KeyError",
    "LookupError",
    "NameError",
    "NotImplementedError",
    "OverflowError",
    "RecursionError",
    "RuntimeError",
    "StopIteration",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
)
"""The builtins a program gets; `print` and `__import__` are replaced, and the rest refuse."""

REFUSED_BUILTINS = (
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
)

refusals: list[str] = []
"""What was refused, in order: a program that catches the exception is still reported."""


class Refused(Exception):
    """An operation the sandbox does not allow."""


def refuse(what: str) -> NoReturn:
    """Record `what` as refused and raise `Refused`."""
    refusals.append(what)
    raise Refused(what)


def safe_name(name: object) -> str:
    """`name` (an attribute path) if it names no private or internal attribute, else refuse."""
    if not isinstance(name, str):
        refuse(f"attribute name {name!r} is not a string")
    for part in name.split("."):
        if part.startswith("_") or part in FRAME_ATTRS:
            refuse(f"access to attribute {part!r}")
    return name


def safe_attrgetter(attr: str, *attrs: str) -> operator.attrgetter:
    """`operator.attrgetter` for public attributes only."""
    return operator.attrgetter(safe_name(attr), *(safe_name(a) for a in attrs))


def safe_methodcaller(name: str, /, *args: Any, **kwargs: Any) -> operator.methodcaller:
    """`operator.methodcaller` for public methods only."""
    return operator.methodcaller(safe_name(name), *args, **kwargs)


# Module attributes that read attributes by a name made at run time, replaced or removed.
REPLACED: dict[str, dict[str, Any]] = {
    "operator": {"attrgetter": safe_attrgetter, "methodcaller": safe_methodcaller},
    "string": {"Formatter": None},  # get_field("0.__class__", ...) returns the object
    "functools": {"update_wrapper": None, "wraps": None},  # copy attributes named by strings
}


def public_view(module: types.ModuleType) -> types.ModuleType:
    """A module of `module`'s public attributes, less other modules (`fractions.sys`)."""
    view = types.ModuleType(module.__name__)
    for name, value in vars(module).items():
        if not name.startswith("_") and not isinstance(value, types.ModuleType):
            setattr(view, name, value)
    for name, value in REPLACED.get(module.__name__, {}).items():
        if value is None:
            delattr(view, name)
        else:
            setattr(view, name, value)
    return view


def restricted_builtins(views: dict[str, types.ModuleType], lazy: set[str]) -> dict[str, Any]:
    """The builtins the program runs with: `views` are what `import` gives, and the `lazy`
    helpers are handed to the whitelisted modules' C code that imports them."""

    def safe_import(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> types.ModuleType:
        if level == 0 and name in views:
            return views[name]
        if level == 0 and name in lazy:  # C code asking for its helper (datetime: _strptime)
            return sys.modules[name]
        refuse(f"import of {name!r} (allowed: {', '.join(sorted(views))})")

    def safe_print(
        *values: object, sep: str | None = " ", end: str | None = "\n", file: Any = None,
        flush: bool = False,
    ) -> None:  # fmt: skip
        if file is not None:
            refuse("print(file=...): a program prints to stdout only")
        print(*values, sep=sep, end=end, flush=flush)

    def refuser(name: str) -> Callable[..., NoReturn]:
        def refused(*args: object, **kwargs: object) -> NoReturn:
            refuse(f"{name}()")

        return refused

    table: dict[str, Any] = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    table.update({name: refuser(name) for name in REFUSED_BUILTINS})
    table.update(
        {
            "print": safe_print,
            "__import__": safe_import,
            "__build_class__": builtins.__build_class__,
        }
    )
    return table


def audit_hook(event: str, args: tuple[Any, ...]) -> None:
    """Refuse every audited event: opening files, sockets, processes, imports, exec, compile,
    frame and code access, `os.*`, `ctypes.*`. A program that needs none of them runs with none."""
    refuse(f"the audited event {event!r}")


def set_limits(cpu_seconds: int, memory_bytes: int) -> None:
    """CPU seconds (SIGXCPU, then SIGKILL one second on), address space, no file bytes, no
    processes, no core dumps."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def seal() -> None:
    """No new file descriptors (stdin, stdout and stderr stay open: a new one would be >= 3),
    and drop root for `nobody`. A root without the right to switch keeps root: the other layers
    still hold, and `compllm_graph.sandbox` documents it."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))
    if os.geteuid() == 0:
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        except OSError:
            pass


def status(kind: str, message: str = "") -> NoReturn:
    """Flush the program's output, write the status line, and leave without exit handlers."""
    with contextlib.suppress(Exception):  # the parent stopped reading: it knows why
        sys.stdout.flush()
    if refusals and kind not in ("refused", "memory"):  # a caught refusal still counts
        kind, message = "refused", refusals[0]
    line = json.dumps({"kind": kind, "message": message[:MESSAGE_CHARS]})
    sys.stderr.write("\n" + line + "\n")
    sys.stderr.flush()
    os._exit(0)


def prepare(request: dict[str, Any]) -> Callable[[], object]:
    """Everything up to the program's first line: limits, modules, builtins, the function."""
    set_limits(int(request["cpu_seconds"]), int(request["memory_bytes"]))
    sys.stdout.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    modules = [str(m) for m in request["modules"]]
    lazy = {helper for name in modules for helper in LAZY_IMPORTS.get(name, ())}
    for helper in lazy:
        importlib.import_module(helper)
    views = {name: public_view(importlib.import_module(name)) for name in modules}
    namespace = {"__builtins__": restricted_builtins(views, lazy), "__name__": "__program__"}
    code = compile(request["code"], "<program>", "exec", dont_inherit=True)
    # A function runs the module's code without `exec`, so the hook can refuse every exec.
    return types.FunctionType(code, namespace)


def main() -> NoReturn:
    """Read the request, run the program, report."""
    try:
        program = prepare(json.loads(sys.stdin.read()))
    except SyntaxError as exc:
        status("syntax", f"line {exc.lineno}: {exc.msg}")
    except ValueError as exc:  # a NUL byte in the code
        status("syntax", str(exc))
    except MemoryError:
        status("memory", "out of memory before the program started")
    seal()
    sys.addaudithook(audit_hook)
    try:
        program()
    except MemoryError:
        status("memory", "MemoryError: the program ran out of memory")
    except Refused as exc:
        status("refused", str(exc))
    except BaseException as exc:  # the program's own error, whatever it is
        status("exception", describe(exc))
    status("ok")


def describe(exc: BaseException) -> str:
    """`Type: text` of the program's exception; its own `__str__` may fail (or be refused)."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except BaseException:
        return f"{type(exc).__name__} (its message could not be read)"


if __name__ == "__main__":
    main()
