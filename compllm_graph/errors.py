"""The root of every error compllm-graph raises on purpose, so that callers can catch one thing."""

from __future__ import annotations


class CompLLMError(Exception):
    """Base class of compllm-graph's own errors.

    Each subclass also keeps its historical built-in base (`ValueError`, `RuntimeError`,
    `ImportError`), so code that caught those still works.
    """


__all__ = ["CompLLMError"]
