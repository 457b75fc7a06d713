"""`compllm experts ...` and `compllm eval routing`.

Every experts command takes `--store DIR` (default: the demo store under `$COMPLLM_HOME`, built
on first use) and `--json` (one JSON object on the last line).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

import numpy as np

from compllm_graph.expert_store.calibration import Calibration
from compllm_graph.expert_store.data import DataFileError, read_labelled, read_texts
from compllm_graph.expert_store.demo import (
    DEMO_CENTER,
    build_demo_store,
    default_store_path,
    demo_store,
    read_calibration,
    shipped_calibration,
)
from compllm_graph.expert_store.embedders import EmbedderError
from compllm_graph.expert_store.records import (
    ExpertKind,
    check_kind,
    check_model_alias,
    needs_runnable,
)
from compllm_graph.expert_store.router import ExpertRouter
from compllm_graph.expert_store.serving import vllm_lora_args
from compllm_graph.expert_store.store import (
    DEFAULT_THRESHOLD,
    Expert,
    ExpertStore,
    StoreError,
    check_name,
)
from compllm_graph.models.catalogue import DEFAULT_MODEL
from compllm_graph.packs import PackError, install_hint, installed_packs, write_manifest
from compllm_graph.types import BASE, display_name

_ERRORS = (StoreError, EmbedderError, DataFileError, PackError, ValueError, OSError)
SELF_ROUTING_SAMPLE = 200
"""How many of a new expert's own texts `experts add` routes to check its threshold."""


def register(experts: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """Add the `compllm experts` subcommands to its group parser; return the subcommands, to
    which `cli.EXTENSIONS` add theirs (`calibrate`)."""
    commands = experts.add_subparsers(dest="experts_command", required=True)

    create = _command(commands, "create", "create an empty store", _create)
    create.add_argument(
        "--embedder",
        default="minilm",
        help="minilm | hashing:DIM | mean-pool:ALIAS | last-token:ALIAS",
    )
    create.add_argument(
        "--center",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="centre embeddings on the mean of all expert data (default: on; of the routing "
        "methods measured on questions no centroid saw, one centred centroid per expert "
        "misrouted least)",
    )
    create.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="default cosine threshold below which texts go to base",
    )
    create.add_argument(
        "--vote",
        type=int,
        default=None,
        help="keep every example and route by a vote of the K nearest (default: centroids)",
    )

    add = _command(commands, "add", "add an expert from a data file", _add)
    add.add_argument("name")
    add.add_argument(
        "--data",
        required=True,
        type=Path,
        help=".txt (one text a line), .jsonl (text/question), .csv (question)",
    )
    add.add_argument("--description", default="")
    add.add_argument("--adapter", type=Path, help="peft adapter folder (safetensors)")
    add.add_argument("--centroids", type=int, default=1, help="k-means centroids (default 1)")
    add.add_argument("--system-prompt")
    add.add_argument("--base-model", help="base model of the adapter")
    add.add_argument("--threshold", type=float, help="per-expert threshold override")
    add.add_argument(
        "--kind",
        choices=get_args(ExpertKind),
        default="adapter",
        help="what answers: adapter (a LoRA on the base model, or none), remote (--url and "
        "--model), model (--model ALIAS), program (--model ALIAS writes the programs, or a "
        "Runnable of your code) or runnable (a Runnable of your code, given to "
        "store.chat_models(..., runnables=...)); default: %(default)s",
    )
    add.add_argument("--url", help="a remote expert's OpenAI-compatible base URL (.../v1)")
    add.add_argument(
        "--model",
        help="a remote expert's served model name, or a model or program expert's alias",
    )
    add.add_argument(
        "--gain-only",
        action="store_true",
        help="never route to it by similarity: it answers only the domains where a calibration "
        "measures it ahead of the base model and of every other expert there (a costlier "
        "model, say); its --data is kept but routes nothing. Run `compllm experts calibrate` "
        "after adding it",
    )

    _command(commands, "list", "list the experts", _list)

    remove = _command(commands, "remove", "remove an expert", _remove)
    remove.add_argument("name")

    route = _command(commands, "route", "route texts and show the top scores", _route)
    route.add_argument("texts", nargs="*", metavar="TEXT")
    route.add_argument("--file", type=Path, help="also route the texts in this data file")
    route.add_argument("--top-k", type=int, default=3)

    fit = _command(
        commands,
        "fit-thresholds",
        "fit per-expert thresholds on labelled texts and save them",
        _fit,
    )
    fit.add_argument(
        "--data",
        required=True,
        type=Path,
        help=".jsonl or .csv with text/question and expert (empty or base: none)",
    )
    fit.add_argument("--dry-run", action="store_true", help="report without saving")

    demo = _command(commands, "build-demo", "build the demo store from the shipped data", _demo)
    demo.add_argument("--embedder", default="minilm")
    demo.add_argument(
        "--center",
        action=argparse.BooleanOptionalAction,
        default=DEMO_CENTER,
        help="centre embeddings on the mean of all expert data (default: on)",
    )
    demo.add_argument("--centroids", type=int, default=1)
    demo.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep the default threshold instead of fitting per-expert ones",
    )
    demo.add_argument(
        "--similarity-only",
        action="store_true",
        help="leave out the pack's measured calibration and its gain-only candidates: route "
        "by similarity alone (default: carry them, where the pack ships one)",
    )
    demo.add_argument("--force", action="store_true", help="rebuild an existing store")

    vllm = _command(
        commands,
        "vllm-args",
        "print the `vllm serve` flags that load the store's adapters under their names",
        _vllm_args,
    )
    vllm.add_argument(
        "--only",
        default=None,
        help="comma-separated experts for this server, to split them across servers",
    )

    _command(
        commands,
        "packs",
        "list the installed expert packs (adapters per base model) and verify their files",
        _packs,
        store=False,
    )

    manifest = _command(
        commands,
        "pack-manifest",
        "write manifest.json (every file's sha256 and size) for an expert pack's folder",
        _pack_manifest,
        store=False,
    )
    manifest.add_argument(
        "folder", type=Path, help="the pack's package folder (holding experts/ and decomposer/)"
    )
    manifest.add_argument(
        "--model", help="the base model's alias (default: the one the manifest records)"
    )
    manifest.add_argument(
        "--base-model",
        help="the base model's public id (default: the catalogue's, e.g. "
        "HuggingFaceTB/SmolLM2-135M-Instruct)",
    )
    return commands


def add_command(
    commands: Any,
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], dict[str, Any]],
    *,
    store: bool = True,
) -> argparse.ArgumentParser:
    """Add an experts subcommand as the others are: `--store` (unless `store` is False) and
    `--json`; `func` returns a dict whose `text` is printed, and an expected error exits 1."""
    return _command(commands, name, help_text, func, store=store)


def _command(
    commands: Any,
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], dict[str, Any]],
    *,
    store: bool = True,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    if store:
        parser.add_argument(
            "--store", type=Path, help="store folder (default: the demo store under $COMPLLM_HOME)"
        )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=lambda args: _run(func, args))
    return parser


def _run(func: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace) -> int:
    """Call a command; print its text or JSON; turn expected errors into exit code 1."""
    try:
        result = func(args)
    except _ERRORS as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = result.pop("text", "")
    if args.json:
        print(json.dumps(result))
    elif text:
        print(text)
    return 0


def _open(args: argparse.Namespace) -> ExpertStore:
    return ExpertStore.open(args.store) if args.store else demo_store()


def _expert_dict(store: ExpertStore, expert: Expert) -> dict[str, Any]:
    return {
        "name": expert.name,
        "kind": expert.kind,
        "url": expert.url,
        "model": expert.model,
        "description": expert.description,
        "base_model": expert.base_model,
        "adapter": str(expert.adapter) if expert.adapter else None,
        "system_prompt": expert.system_prompt,
        "threshold": store.threshold(expert.name),
        "centroids": len(expert.counts),
        "texts": sum(expert.counts),
        "retrieval": retrieval_dict(expert),
        "gain_only": expert.gain_only,
    }


def retrieval_dict(expert: Expert) -> dict[str, Any] | None:
    """An expert's retrieval set as `experts list --json` shows it, or None without one."""
    retrieval = expert.retrieval
    if retrieval is None:
        return None
    return {
        "on": retrieval.settings.on,
        "k": retrieval.settings.k,
        "floor": retrieval.settings.floor,
        "items": retrieval.items,
        "sources": dict(retrieval.sources),
        "embedder": retrieval.embedder,
    }


def retrieval_text(retrieval: dict[str, Any]) -> str:
    """One line on a retrieval set: its items and whether and how the prompt shows them."""
    sources = ", ".join(f"{name} {n}" for name, n in retrieval["sources"].items())
    shown = (
        f"the {retrieval['k']} nearest at cosine >= {retrieval['floor']:.2f} before each sub-query"
        if retrieval["on"]
        else "off (k 0)"
    )
    return f"retrieval: {retrieval['items']} training items ({sources}); {shown}"


def _create(args: argparse.Namespace) -> dict[str, Any]:
    path = args.store or default_store_path()
    store = ExpertStore.create(
        path, args.embedder, center=args.center, threshold=args.threshold, vote=args.vote
    )
    return {
        "store": str(store.path),
        "embedder": store.embedder_spec,
        "center": store.center,
        "threshold": store.default_threshold,
        "vote": store.vote,
        "text": f"created {store.path} (embedder {store.embedder_spec})",
    }


def _add(args: argparse.Namespace) -> dict[str, Any]:
    store = _open(args)
    texts = [t.strip() for t in read_texts(args.data) if t.strip()]
    check_name(args.name)  # these before the embedding, which is the slow part
    check_kind(
        args.kind, adapter=args.adapter, base_model=args.base_model, url=args.url, model=args.model
    )
    if args.model is not None and args.kind in ("model", "program"):
        check_model_alias(args.model)
    # Embedded once: for the store, and for routing the expert's own texts afterwards.
    vectors = store.embedder.embed(texts) if texts else None
    expert = store.add_expert(
        args.name,
        texts,
        embeddings=vectors,
        description=args.description,
        adapter=args.adapter,
        centroids=args.centroids,
        system_prompt=args.system_prompt,
        base_model=args.base_model,
        threshold=args.threshold,
        kind=args.kind,
        url=args.url,
        model=args.model,
        gain_only=args.gain_only,
    )
    info = _expert_dict(store, expert)
    text = f"added {expert.name}: {info['texts']} texts, {info['centroids']} centroids"
    if expert.gain_only:
        text += "; gain-only: it answers where `compllm experts calibrate` measures it right"
    warning = (
        None if expert.gain_only else _threshold_warning(store, expert.name, np.asarray(vectors))
    )
    if warning:
        text += f"\nwarning: {warning}"
    return {"store": str(store.path), "expert": info, "warning": warning, "text": text}


def _threshold_warning(store: ExpertStore, name: str, vectors: np.ndarray) -> str | None:
    """A warning when most of the expert's own texts would go to base at its threshold."""
    sample = vectors[:SELF_ROUTING_SAMPLE]
    routes = ExpertRouter(store).nearest_routes(sample)
    to_base = sum(route.expert is None for route in routes)
    if to_base * 2 <= len(sample):
        return None
    return (
        f"{to_base} of {len(sample)} of {name}'s own texts score below its threshold "
        f"{store.threshold(name):.3f} and would go to the base model; run "
        "`compllm experts fit-thresholds` with labelled texts, or pass --threshold"
    )


def _list(args: argparse.Namespace) -> dict[str, Any]:
    store = _open(args)
    calibration = store.calibration
    experts = [_expert_dict(store, e) for e in store.experts()]
    for expert in experts:
        expert["calibration"] = _measured(calibration, expert["name"])
    lines = [
        f"store {store.path} (embedder {store.embedder_spec}"
        f"{', centred' if store.center else ''}"
        f"{f', vote of {store.vote} nearest' if store.vote else ''}, default threshold "
        f"{store.default_threshold})"
    ]
    width = max([28, *(len(_answered_by(e)) for e in experts)])  # a long model alias
    for e in experts:
        routed = "gain only" if e["gain_only"] else f"thr {e['threshold']:.3f}"
        lines.append(
            f"  {e['name']:<16} {_answered_by(e):<{width}} {routed:<9}  "
            f"{e['centroids']} centroid(s), {e['texts']} texts  {e['description']}".rstrip()
        )
        if e["calibration"]:
            lines.append(f"  {'':<16} {_measured_text(e['calibration'])}")
        if e["retrieval"]:
            lines.append(f"  {'':<16} {retrieval_text(e['retrieval'])}")
    lines += _calibration_header(calibration)
    on_base = [e for e in experts if e["kind"] == "adapter"]
    if on_base and not any(e["adapter"] for e in on_base):
        lines.append(
            "  note: no expert here has a trained adapter; each adapter expert answers with the "
            "base model and its system prompt"
        )
    bound = [e.name for e in store.experts() if needs_runnable(e)]
    if bound:
        lines.append(
            f"  note: {', '.join(bound)}: answered by a Runnable of your code; build the graph's "
            "experts with store.chat_models(model, runnables={name: runnable, ...})"
        )
    return {
        "store": str(store.path),
        "embedder": store.embedder_spec,
        "center": store.center,
        "vote": store.vote,
        "default_threshold": store.default_threshold,
        "calibration": calibration.to_dict() if calibration else None,
        "experts": experts,
        "text": "\n".join(lines),
    }


def _measured(calibration: Calibration | None, name: str) -> dict[str, Any] | None:
    """An expert's measured gains per domain and its seconds per call, or None."""
    if calibration is None:
        return None
    gains = {}
    for domain, found in sorted(calibration.domains.items()):
        result = found.experts.get(name)
        if result is not None:
            gains[domain] = {
                "gain": round(result.gain(found.n), 4),
                "ci95": list(result.interval(found.n)),
                "n": found.n,
                "passes": calibration.rule.passes(result, found.n),
            }
    if not gains:
        return None
    return {
        "domain": calibration.owners.get(name),
        "gains": gains,
        "seconds_per_call": calibration.seconds_per_call.get(name),
    }


def _measured_text(measured: dict[str, Any]) -> str:
    gains = ", ".join(
        f"{domain} {g['gain']:+.1%} (n {g['n']}){'*' if g['passes'] else ''}"
        for domain, g in measured["gains"].items()
    )
    cost = measured["seconds_per_call"]
    owner = f"serves {measured['domain']}; " if measured["domain"] else ""
    return f"{owner}gain over base: {gains}" + (f"; {cost:.2f} s/call" if cost else "")


def _calibration_header(calibration: Calibration | None) -> list[str]:
    if calibration is None:
        return [
            "  not calibrated: parts go to the most similar expert (`compllm experts calibrate`)"
        ]
    base = calibration.seconds_per_call.get(BASE)
    cost = f", base {base:.2f} s/call" if base is not None else ""
    lines = [
        f"  calibrated for {calibration.model} ({calibration.created}{cost}); "
        f"{calibration.rule.describe()} (*: the gain passes)"
    ]
    # Says, for one, that a mathematics expert was measured answering by program.
    return lines + ([f"  measured on: {calibration.items}"] if calibration.items else [])


def _answered_by(expert: dict[str, Any]) -> str:
    """What answers for an expert, in a few words: its kind and what it points at."""
    kind = expert["kind"]
    if kind == "adapter":
        return "adapter (LoRA)" if expert["adapter"] else "adapter (none: base model)"
    if kind == "remote":
        return f"remote {expert['model']} at {expert['url']}"
    if kind == "model":
        return f"model {expert['model']}"
    if kind == "program" and expert["model"]:
        return f"program on {expert['model']}"
    return f"{kind} (bound in code)"


def _remove(args: argparse.Namespace) -> dict[str, Any]:
    store = _open(args)
    store.remove_expert(args.name)
    return {"store": str(store.path), "removed": args.name, "text": f"removed {args.name}"}


def _route(args: argparse.Namespace) -> dict[str, Any]:
    texts = list(args.texts) + (read_texts(args.file) if args.file else [])
    if not texts:
        raise ValueError("give texts to route, or --file")
    routes = ExpertRouter(_open(args), top_k=args.top_k).route(texts)
    items = [
        {
            "text": text,
            "expert": r.expert,
            "score": round(r.score, 4),
            "candidates": [[name, round(score, 4)] for name, score in r.candidates],
            "reason": r.reason,
        }
        for text, r in zip(texts, routes)
    ]
    lines = []
    for item in items:
        scores = ", ".join(f"{name} {score:.3f}" for name, score in item["candidates"])
        lines.append(f"{display_name(item['expert']):<14} [{scores}]  {item['text']}")
        if item["reason"]:  # a calibrated store says why, by the measured gains
            lines.append(f"{'':<14} {item['reason']}")
    return {"routes": items, "text": "\n".join(lines)}


def _fit(args: argparse.Namespace) -> dict[str, Any]:
    store = _open(args)
    fit = ExpertRouter(store).fit_thresholds(read_labelled(args.data))
    if not args.dry_run:
        store.set_thresholds(fit.thresholds)
    text = "\n".join(
        [f"  {name:<16} {value:.4f}" for name, value in fit.thresholds.items()]
        + [
            f"routing error on {fit.texts} texts: {fit.error_before:.1%} -> {fit.error_after:.1%}"
            + (" (not saved: --dry-run)" if args.dry_run else "")
        ]
    )
    return {
        "thresholds": fit.thresholds,
        "error_before": fit.error_before,
        "error_after": fit.error_after,
        "texts": fit.texts,
        "saved": not args.dry_run,
        "text": text,
    }


def _vllm_args(args: argparse.Namespace) -> dict[str, Any]:
    store = _open(args)
    experts = store.experts()
    if args.only is not None:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {e.name for e in experts})
        if unknown:
            raise StoreError(
                f"no expert named {unknown} in {store.path}; see `compllm experts list`"
            )
        experts = [e for e in experts if e.name in wanted]
    flags = vllm_lora_args(experts)
    return {"args": flags, "text": shlex.join(flags)}


def _calibration_text(pack: Mapping[str, Any]) -> str:
    if not pack["calibration"]:
        return "no"
    return f"yes (candidates: {', '.join(pack['candidates']) or 'none'})"


def _packs(args: argparse.Namespace) -> dict[str, Any]:
    packs: list[dict[str, Any]] = []
    for pack in installed_packs():
        try:
            pack.verify()
            problem = None
        except PackError as exc:
            problem = str(exc)
        decomposer = pack.decomposer()
        calibration, candidates = pack.calibration(), []
        if calibration is not None and problem is None:
            try:
                candidates = sorted(read_calibration(calibration, pack.model).candidates)
            except PackError as exc:
                problem = str(exc)
        packs.append(
            {
                "name": pack.name,
                "version": pack.version,
                "model": pack.model,
                "base_model": pack.base_model,
                "folder": str(pack.folder),
                "experts": list(pack.experts()),
                "decomposer": decomposer is not None,
                "calibration": calibration is not None,
                "candidates": candidates,
                "files": len(pack.files),
                "bytes": sum(f.size for f in pack.files.values()),
                "verified": problem is None,
                "problem": problem,
            }
        )
    lines = [
        f"{p['name']} {p['version']}  model {p['model']} ({p['base_model']})  "
        f"{p['files']} files, {p['bytes'] / 1e6:.1f} MB, "
        f"{'verified' if p['verified'] else 'NOT verified'}\n"
        f"  experts: {', '.join(p['experts']) or 'none'}; decomposer: "
        f"{'yes' if p['decomposer'] else 'no'}; calibration: "
        f"{_calibration_text(p)}  ({p['folder']})"
        + (f"\n  problem: {p['problem']}" if p["problem"] else "")
        for p in packs
    ]
    if not packs:
        lines.append(
            f"no expert pack is installed: `{install_hint(DEFAULT_MODEL)}` "
            "from a checkout of compllm-graph (docs/packs.md)"
        )
    return {"packs": packs, "text": "\n".join(lines)}


def _pack_manifest(args: argparse.Namespace) -> dict[str, Any]:
    manifest = write_manifest(args.folder, model=args.model, base_model=args.base_model)
    path = args.folder / "manifest.json"
    return {
        "manifest": str(path),
        "model": manifest["model"],
        "base_model": manifest["base_model"],
        "files": len(manifest["files"]),
        "text": f"wrote {path}: {len(manifest['files'])} files for {manifest['model']} "
        f"({manifest['base_model']})",
    }


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    store = build_demo_store(
        args.store,
        embedder=args.embedder,
        center=args.center,
        centroids=args.centroids,
        calibrate=not args.no_calibrate,
        calibrated=not args.similarity_only,
        force=args.force,
    )
    experts = store.experts()
    thresholds = {e.name: store.threshold(e.name) for e in experts if not e.gain_only}
    listing = ", ".join(
        f"{e.name} (gain only)" if e.gain_only else f"{e.name} (threshold {thresholds[e.name]:.3f})"
        for e in experts
    )
    routed = "by measured gain" if store.calibration is not None else "by similarity"
    shipped = None if args.similarity_only else shipped_calibration(DEFAULT_MODEL)
    # the pack's gain-only candidates whose model is not fetched: build_demo_store leaves them out
    left_out = {} if shipped is None else shipped.unfetched_models()
    fetch = "; ".join(
        f"left out: {', '.join(names)} (`compllm models fetch {model}` adds "
        f"{'it' if len(names) == 1 else 'them'})"
        for model, names in left_out.items()
    )
    return {
        "store": str(store.path),
        "embedder": store.embedder_spec,
        "thresholds": thresholds,
        "experts": [e.name for e in experts],
        "calibrated": store.calibration is not None,
        "left_out": [name for names in left_out.values() for name in names],
        "text": f"demo store at {store.path}: {listing}; routed {routed}"
        + (f"\n{fetch}" if fetch else ""),
    }


__all__ = ["add_command", "register", "retrieval_dict", "retrieval_text"]
