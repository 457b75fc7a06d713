"""Evaluation against an OpenAI-compatible endpoint (vLLM, `compllm serve`, any such server).

`--endpoint URL` makes every model an evaluation builds a chat model of that server: the base
model under `--model NAME` (default: the first model the server lists that is not a LoRA), each
adapter (experts, the all-domains adapter) under its own name, and the decomposer under
`--served-decomposer` (default `decomposer`). `systems.load_for_eval` hands out a `RemoteModel`
in place of a loaded model, so each system is built exactly as in-process. What the server must
serve is checked before any question is asked.

Each outputs line records where it was answered (`ENDPOINT_KEY`: the URL and served base
model), and a rerun refuses an outputs file answered elsewhere (in-process, another server or
another model), so one file never mixes two setups. A request that still fails after
`--retries` retries stops the run (`marked`): the graph would otherwise fall back to another
model and the fallback's answer would be scored as the system's.

Routing needs no endpoint: its evaluations embed texts with the router's embedder (MiniLM, or a
decoder's pooled hidden states, which chat-completion servers do not return) and call no
generating model.

This module imports nothing heavy; the [remote] extra loads when an endpoint is used.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compllm_graph.evaluation.answers import Answer, Answerer, BenchmarkError

if TYPE_CHECKING:
    from compllm_graph.models.remote import EndpointLimit, RemoteModel

ENDPOINT_KEY = "endpoint"
"""Outputs key: `{"url": ..., "model": ...}` of the server that answered; absent in-process."""
SERVED_DECOMPOSER = "decomposer"
"""The name a server serves the decomposer adapter under, unless `--served-decomposer` says."""
DEFAULT_CONCURRENCY = 4
"""Requests in flight to a server without `--endpoint-concurrency`, unless an earlier run in the
same process set the server's limit (it is shared by every chat model of the endpoint: see
`models.remote.endpoint_limit`), which a run without the flag then keeps."""
DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT = 300.0
"""Seconds per HTTP request: a 7B model writing a monolith's 640 tokens under load needs minutes."""
_ENDPOINT_ONLY = ("endpoint_concurrency", "retries", "endpoint_timeout", "api_key_env")
_LOCAL_ONLY = {"engine": "--engine", "threads": "--threads", "max_batch_size": "--max-batch-size"}


def add_endpoint_args(parser: argparse.ArgumentParser, *, grammar_help: str) -> None:
    """Add `--endpoint` and the options that go with it, as their own help group.

    Args:
        parser: The command's parser (it must have `--model`).
        grammar_help: What the grammar is for in this command.
    """
    group = parser.add_argument_group(
        "against an endpoint",
        "run every model on an OpenAI-compatible server instead of in this process; --model "
        "then names the served base model (default: the first model the server lists that is "
        "not a LoRA)",
    )
    group.add_argument(
        "--endpoint",
        default=None,
        metavar="URL",
        help="the server's base URL, e.g. http://h:8000/v1",
    )
    group.add_argument(
        "--endpoint-concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"requests in flight to the server at once (default {DEFAULT_CONCURRENCY}, or the "
        "limit an earlier run in this process set for the server)",
    )
    group.add_argument(
        "--retries",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help=f"retries of a failed request (default {DEFAULT_RETRIES}); one that still fails "
        "stops the run",
    )
    group.add_argument(
        "--endpoint-timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help=f"per request (default {DEFAULT_TIMEOUT:.0f})",
    )
    group.add_argument(
        "--endpoint-grammar",
        choices=("none", "vllm"),
        default="none",
        help=f"{grammar_help}: none (compllm serve has no grammar sampler; the default) or vllm "
        "(vLLM's structured-output grammar)",
    )
    group.add_argument(
        "--served-decomposer",
        default=None,
        metavar="NAME",
        help=f"the decomposer adapter's served name (default {SERVED_DECOMPOSER!r})",
    )
    group.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the server's API key (default: none is sent)",
    )


def check_endpoint_args(args: argparse.Namespace) -> None:
    """Refuse options that contradict each other, before anything is loaded or contacted.

    Raises:
        ValueError: an endpoint option without `--endpoint`, an in-process engine option with
            it, or `--api-key-env` naming an unset variable.
    """
    if args.endpoint is None:
        given = [name for name in _ENDPOINT_ONLY if getattr(args, name, None) is not None]
        given += ["served_decomposer"] if args.served_decomposer is not None else []
        given += ["endpoint_grammar"] if args.endpoint_grammar != "none" else []
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            verb = "apply" if len(given) > 1 else "applies"
            raise ValueError(f"{flags} {verb} only with --endpoint URL")
        return
    local = [flag for key, flag in _LOCAL_ONLY.items() if getattr(args, key, None) is not None]
    if local:
        verb = "set" if len(local) > 1 else "sets"
        raise ValueError(
            f"{', '.join(local)} {verb} the in-process engine; with --endpoint the server runs "
            "the model (choose its engine, threads and batch size where you start it)"
        )
    if args.api_key_env is not None and not os.environ.get(args.api_key_env):
        raise ValueError(f"--api-key-env {args.api_key_env}: that variable is not set")


def remote_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `remote_chat_model` arguments of the endpoint options."""
    return {
        "api_key": os.environ[args.api_key_env] if args.api_key_env else None,
        # None keeps a limit this process already set for the endpoint (else its default, 4)
        "max_concurrency": args.endpoint_concurrency,
        "timeout": args.endpoint_timeout or DEFAULT_TIMEOUT,
        "max_retries": DEFAULT_RETRIES if args.retries is None else args.retries,
    }


def resolve_model(args: argparse.Namespace) -> list[str]:
    """Set `args.model` to the served base model, checking that the server serves it.

    Without `--model`, the base model is the first listed model with no `parent` (vLLM gives
    every LoRA one; `compllm serve` lists its base model first).

    Returns:
        Every name the server serves.

    Raises:
        EndpointError: the server cannot be reached, serves nothing, or not `--model`.
        ValueError: a bad URL.
    """
    from compllm_graph.models.remote import EndpointError, served_models

    listing = served_models(args.endpoint, api_key=remote_settings(args)["api_key"])
    names = [str(entry.get("id")) for entry in listing]
    if args.model is None:
        bases = [str(entry.get("id")) for entry in listing if not entry.get("parent")]
        if not bases:
            raise EndpointError(f"{args.endpoint} serves no model")
        args.model = bases[0]
    if args.model not in names:
        raise EndpointError(
            f"{args.endpoint} does not serve {args.model!r}; it serves {names}: pass one of "
            "them as --model (vLLM: the --served-model-name)"
        )
    return names


def remote_model(args: argparse.Namespace) -> RemoteModel:
    """The server's base model and adapters, as `systems.load_for_eval` hands them out.

    The decomposer folder (`--decomposer-adapter`, else the pack's for `--model`) is read here
    for its `training.json` only; the server serves it under `--served-decomposer`.

    Raises:
        EndpointError: the server cannot be reached or does not serve `--model`.
        PackError: the pack's files fail their sha256 check.
    """
    from compllm_graph.decomposer.loading import adapter_for
    from compllm_graph.models.remote import RemoteModel

    served = resolve_model(args)
    folder = getattr(args, "decomposer_adapter", None) or adapter_for(args.model)
    renamed = {folder: served_decomposer(args)} if folder else {}
    return RemoteModel(
        args.endpoint,
        args.model,
        served=served,
        adapter_names=renamed,
        grammar=args.endpoint_grammar,
        **remote_settings(args),
    )


def served_decomposer(args: argparse.Namespace) -> str:
    """`--served-decomposer`, or `SERVED_DECOMPOSER`."""
    return str(args.served_decomposer or SERVED_DECOMPOSER)


def origin(args: argparse.Namespace) -> dict[str, str] | None:
    """Where answers are made: the endpoint's URL and served base model, None in-process.

    `args.model` must be resolved first (`resolve_model`).
    """
    if args.endpoint is None:
        return None
    from compllm_graph.models.remote import normalise_endpoint

    return {"url": normalise_endpoint(args.endpoint), "model": str(args.model)}


def check_outputs_origin(
    where: Mapping[str, str] | None, done: Mapping[str, Answer], outputs: Path | None
) -> None:
    """Refuse to resume outputs answered elsewhere (in-process, another server or model).

    Raises:
        BenchmarkError: a line of `done` records another origin than `where` (lines with no
            `ENDPOINT_KEY` were answered in-process).
    """
    for row in done.values():
        theirs = row.get(ENDPOINT_KEY)
        if theirs == where:
            continue
        raise BenchmarkError(
            f"{outputs} holds answers made {_described(theirs)} (first {row['id']!r}), and this "
            f"run answers {_described(where)}: resume it with the same --endpoint and --model, "
            "or give this run another --outputs file"
        )


def _described(where: Any) -> str:
    if where is None:
        return "in-process"
    if isinstance(where, Mapping):
        return f"by {where.get('model')!r} at {where.get('url')}"
    return f"at {where!r}"


def marked(answerer: Answerer, where: Mapping[str, str], limit: EndpointLimit) -> Answerer:
    """`answerer` whose answers record `where`, and that refuses answers made while a request
    to the server failed for good.

    Raises (from the returned answerer):
        EndpointError: a request to the server failed after its retries while the question
            was answered (with several questions in flight, any of theirs): the graph fell back
            or the call raised, so the answer is not the system's and is not recorded.
    """
    from compllm_graph.models.remote import EndpointError

    def failed(record: Mapping[str, Any]) -> EndpointError:
        return EndpointError(
            f"a request to {limit.endpoint} failed after its retries while {record['id']!r} "
            f"was answered ({limit.last_failure}); its answer is not recorded. The answers so "
            "far are kept: rerun the same command to resume"
        )

    def answer(record: Mapping[str, Any]) -> Answer:
        before = limit.failures
        try:
            reply = answerer(record)
        except Exception as exc:
            if limit.failures == before:
                raise
            raise failed(record) from exc
        if limit.failures != before:
            raise failed(record)
        return {**reply, ENDPOINT_KEY: dict(where)}

    return answer


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


__all__ = [
    "ENDPOINT_KEY",
    "SERVED_DECOMPOSER",
    "add_endpoint_args",
    "check_endpoint_args",
    "check_outputs_origin",
    "marked",
    "origin",
    "remote_model",
    "remote_settings",
    "resolve_model",
    "served_decomposer",
]
