"""`compllm models fetch ALIAS`, `compllm models list` and `compllm models safetensors ALIAS`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from compllm_graph.models.catalogue import CATALOGUE, get_spec
from compllm_graph.models.download import FetchError, fetch, gguf_path, home, is_cached, model_dir


def register(models: argparse.ArgumentParser) -> None:
    """Add `fetch`, `list` and `safetensors` to the `compllm models` group."""
    actions = models.add_subparsers(dest="models_command", required=True)

    fetch_cmd = actions.add_parser("fetch", help="download, assemble and verify a model")
    fetch_cmd.add_argument("alias", choices=sorted(CATALOGUE), help="model alias")
    fetch_cmd.add_argument("--json", action="store_true", help="print one JSON object at the end")
    fetch_cmd.set_defaults(func=_fetch)

    list_cmd = actions.add_parser("list", help="show the catalogue and what is cached")
    list_cmd.add_argument("--json", action="store_true", help="print one JSON object at the end")
    list_cmd.set_defaults(func=_list)

    copy_cmd = actions.add_parser(
        "safetensors",
        help="print the model's safetensors folder (converted from the GGUF once), for "
        "servers such as `vllm serve FOLDER`",
    )
    copy_cmd.add_argument("alias", choices=sorted(CATALOGUE), help="model alias")
    copy_cmd.set_defaults(func=_safetensors)


def _fetch(args: argparse.Namespace) -> int:
    was_cached = is_cached(args.alias)
    try:
        path = fetch(args.alias, progress=not args.json and sys.stderr.isatty())
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"alias": args.alias, "ok": False, "error": str(exc)}))
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "alias": args.alias,
                    "ok": True,
                    "path": str(path),
                    "sha256": get_spec(args.alias).sha256,
                    "already_cached": was_cached,
                }
            )
        )
    else:
        state = "already cached" if was_cached else "fetched"
        print(f"{args.alias}: {state}, sha256 verified: {path}")
    return 0


def _safetensors(args: argparse.Namespace) -> int:
    from compllm_graph.models.loading import ModelLoadError, safetensors_folder  # imports torch

    try:
        print(safetensors_folder(args.alias))
    except (FetchError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _entry(alias: str) -> dict[str, Any]:
    spec = get_spec(alias)
    cached = is_cached(alias)
    return {
        "alias": alias,
        "description": spec.description,
        "size_bytes": spec.size,
        "wheels": len(spec.parts),
        "cached": cached,
        "path": str(gguf_path(alias)) if cached else None,
        "safetensors_copy": (model_dir(alias) / "hf" / "model.safetensors").is_file(),
    }


def _list(args: argparse.Namespace) -> int:
    entries = [_entry(alias) for alias in CATALOGUE]
    if args.json:
        print(json.dumps({"home": str(home()), "models": entries}))
        return 0
    print(f"cache: {home()}")
    for entry in entries:
        state = "cached" if entry["cached"] else "not fetched"
        if entry["safetensors_copy"]:
            state += " (+ safetensors copy)"
        size = entry["size_bytes"] / 1e6
        print(f"  {entry['alias']:<30} {size:7.0f} MB  {state:<32} {entry['description']}")
    return 0


__all__ = ["register"]
