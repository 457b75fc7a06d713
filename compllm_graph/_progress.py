"""Library progress bars (transformers' "Loading weights", GGUF de-quantising) stay quiet unless
`COMPLLM_VERBOSE` is set (`compllm --verbose`); long first loads print one line of our own."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator

VERBOSE_VARIABLE = "COMPLLM_VERBOSE"


def verbose() -> bool:
    """Whether the user asked for libraries' own logs and bars."""
    return bool(os.environ.get(VERBOSE_VARIABLE))


def quiet_library_bars() -> None:
    """Turn off transformers' and the hub's progress bars, unless verbose."""
    if verbose():
        return
    import transformers

    transformers.utils.logging.disable_progress_bar()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hide what a library writes to stderr in the block (bars it does not let us turn off,
    such as transformers' GGUF de-quantising one), unless verbose. Exceptions still propagate."""
    if verbose():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def say(message: str) -> None:
    """One progress line on stderr (for a load that takes a while the first time)."""
    print(f"compllm: {message}", file=sys.stderr, flush=True)


__all__ = ["VERBOSE_VARIABLE", "quiet_library_bars", "quiet_stderr", "say", "verbose"]
