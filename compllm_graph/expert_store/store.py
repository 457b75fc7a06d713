"""The expert store: experts' data centroids, adapters and thresholds in one folder.

Layout::

    store.json                      format version, embedder spec, centring, default threshold,
                                    listed experts, the current index file and its row -> expert
                                    map, and the measured gains when calibrated (`calibration`)
    store.lock                      flock'ed by writers (exclusive) and readers (shared)
    experts/<name>/expert.json      kind (adapter, remote, model, program, runnable; absent:
                                    adapter), description, base model, adapter, URL and model
                                    name, system prompt, threshold, data statistics, centroid
                                    counts
    experts/<name>/centroids.npy    raw (uncentred) mean embedding of each k-means cluster
    experts/<name>/adapter/         peft LoRA adapter, safetensors only (optional)
    experts/<name>/retrieval/       the expert's retrieval set, when it has one: its training
                                    items (<n>.jsonl) and their FAISS index (<n>.faiss), named
                                    with k and floor by expert.json (see `retrieval`)
    index/<generation>.faiss        IndexFlatIP over L2-normalised (optionally centred) centroids
    index/<generation>.center.npy   the centring vector (mean of all expert data), when centring

`store.json` is the commit point: it is replaced atomically after everything it names is written,
so a crash leaves at most unlisted files, which the next open or writer removes. The store only
ever deletes what it writes (see `disk.leftovers`), and refuses a symbolic link among its files
and folders, and among the files of an adapter it copies in: through a link it would read,
overwrite or delete files outside its folder. An adapter's weights are validated when it is
added, so a damaged file is refused then rather than when the expert is served. The seams live
in their own modules: `records` (what is stored), `locking` (the lock and atomic writes), `disk`
(the format), `index` (FAISS), `retrieval` (an expert's own training items in its prompt) and
`serving` (experts as chat models).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from compllm_graph.adapter_folder import (
    AdapterError,
    adapter_files,
    check_adapter_folder,
    check_adapter_weights,
)
from compllm_graph.expert_store.calibration import Calibration
from compllm_graph.expert_store.disk import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    leftovers,
    load,
    read_manifest,
    remove_unlisted,
    write_expert,
)
from compllm_graph.expert_store.embedders import (
    Embedder,
    EmbedderError,
    check_spec,
    embedder_from_spec,
)
from compllm_graph.expert_store.index import cluster_means, normalise, read_index, write_index
from compllm_graph.expert_store.locking import exclusive_if_free, locked, write_json
from compllm_graph.expert_store.records import (
    DEFAULT_THRESHOLD,
    CorruptStoreError,
    Expert,
    ExpertKind,
    ExpertKindError,
    RetrievalSettings,
    StoreError,
    check_kind,
    check_model_alias,
    check_name,
    check_retrievable,
    check_threshold,
)
from compllm_graph.expert_store.retrieval import (
    RetrievalItem,
    Retriever,
    check_items,
    stale_files,
    stored_entry,
    write_retrieval,
)
from compllm_graph.expert_store.serving import expert_chat_models

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from compllm_graph.models import InferenceModel
    from compllm_graph.models.local import TransformersModel


def check_creatable(root: Path) -> None:
    """Raise unless a store can be created at `root`: a folder that is absent or empty.

    Raises:
        StoreError: `root` is a file or a folder with something in it.
    """
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise StoreError(
            f"cannot create a store at {root}: it is not empty "
            "(neither an expert store nor an empty folder)"
        )


class ExpertStore:
    """A folder of experts that the router searches by centroid.

    Use `ExpertStore.create` or `ExpertStore.open`; do not call the constructor directly.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        experts: dict[str, Expert],
        embedder: Embedder | None,
        local_model: TransformersModel | None,
    ) -> None:
        self.path = path
        self._manifest = manifest
        self._experts = experts
        self._embedder = embedder
        self._local_model = local_model

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        embedder: str | Embedder = "minilm",
        *,
        center: bool = False,
        threshold: float = DEFAULT_THRESHOLD,
        vote: int | None = None,
    ) -> ExpertStore:
        """Create an empty store.

        Args:
            path: Folder to create (it may exist if empty).
            embedder: An embedder or its spec (`minilm`, `hashing:DIM`, `mean-pool:ALIAS`,
                `last-token:ALIAS`). A spec is only resolved when texts are embedded.
            center: Subtract the mean of all expert data before comparing (needed for raw
                decoder embeddings, which all point the same way; with MiniLM it misroutes
                less too, so `compllm experts create` and the demo store centre by default).
                False here keeps what code that sets thresholds on raw cosines relies on. A
                store of one centroid is compared uncentred until a second one comes.
            threshold: Default cosine threshold below which a sub-query goes to base.
            vote: Keep every expert example in the index and route by a vote of the `vote`
                nearest (see `ExpertRouter`); None: centroids, nearest wins.

        Raises:
            StoreError: the folder is not empty, or an argument is invalid.
        """
        root = Path(path).expanduser()
        spec = embedder if isinstance(embedder, str) else embedder.spec
        instance = None if isinstance(embedder, str) else embedder
        if isinstance(embedder, str):
            try:
                check_spec(spec)
            except EmbedderError as exc:
                raise StoreError(str(exc)) from None
        check_threshold(threshold)
        if vote is not None and (isinstance(vote, bool) or not isinstance(vote, int) or vote < 1):
            raise StoreError(f"vote must be a positive number of nearest examples, got {vote!r}")
        check_creatable(root)
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "embedder": spec,
            "dim": None,
            "center": bool(center),
            "default_threshold": float(threshold),
            "vote": vote,
            "generation": 0,
            "experts": [],
            "index": None,
        }
        with locked(root, exclusive=True):
            (root / "experts").mkdir(exist_ok=True)
            (root / "index").mkdir(exist_ok=True)
            write_json(root / MANIFEST, manifest)
        return cls(root, manifest, {}, instance, None)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        embedder: Embedder | None = None,
        local_model: TransformersModel | None = None,
    ) -> ExpertStore:
        """Open and validate a store, and delete what killed writers left in it.

        Args:
            path: The store folder.
            embedder: Embedder to use instead of building one from the spec; its spec must match.
            local_model: Loaded model to reuse for `mean-pool:`/`last-token:` specs.

        Raises:
            StoreError: there is no store at `path`, or `embedder` does not match.
            CorruptStoreError: a file is missing, truncated or inconsistent, or a file or
                folder of the store is a symbolic link.
        """
        root = Path(path).expanduser()
        if not (root / MANIFEST).is_file():
            raise StoreError(
                f"no expert store at {root} (missing {MANIFEST}); create one with "
                "`compllm experts create` or `compllm experts build-demo`"
            )
        with locked(root, exclusive=False):
            manifest, experts = load(root)
            untidy = bool(leftovers(root, manifest))
        if untidy:
            _remove_leftovers(root)
        if embedder is not None and embedder.spec != manifest["embedder"]:
            raise StoreError(
                f"the store at {root} embeds with {manifest['embedder']!r}, not {embedder.spec!r}"
            )
        return cls(root, manifest, experts, embedder, local_model)

    def reload(self) -> None:
        """Re-read the store from disk (to see other processes' changes)."""
        with locked(self.path, exclusive=False):
            self._manifest, self._experts = load(self.path)

    # -- reading --------------------------------------------------------------------------------

    @property
    def embedder_spec(self) -> str:
        """The spec of the embedder the store was built with."""
        return str(self._manifest["embedder"])

    @property
    def center(self) -> bool:
        """Whether embeddings are centred on the mean of all expert data."""
        return bool(self._manifest["center"])

    @property
    def vote(self) -> int | None:
        """Nearest examples that vote on a route, or None for nearest-centroid routing."""
        vote = self._manifest.get("vote")
        return int(vote) if vote else None

    @property
    def default_threshold(self) -> float:
        """Threshold for experts without an override."""
        return float(self._manifest["default_threshold"])

    @property
    def embedder(self) -> Embedder:
        """The store's embedder, built from its spec on first use."""
        if self._embedder is None:
            self._embedder = embedder_from_spec(self.embedder_spec, self._local_model)
        return self._embedder

    def experts(self) -> list[Expert]:
        """All experts, sorted by name."""
        return [self._experts[name] for name in sorted(self._experts)]

    def expert(self, name: str) -> Expert:
        """The expert called `name`.

        Raises:
            StoreError: no such expert.
        """
        try:
            return self._experts[name]
        except KeyError:
            raise StoreError(
                f"no expert {name!r} in {self.path}; experts: {sorted(self._experts)}"
            ) from None

    def threshold(self, name: str) -> float:
        """The routing threshold in force for expert `name`."""
        override = self.expert(name).threshold
        return self.default_threshold if override is None else override

    @property
    def calibration(self) -> Calibration | None:
        """The measured gains of the experts over the base model (`set_calibration`, written by
        `compllm experts calibrate`), or None when the store has none: routers then route by
        similarity alone."""
        data = self._manifest.get("calibration")
        return None if data is None else Calibration.from_dict(data)

    def load_index(self) -> tuple[faiss.Index, list[str], np.ndarray | None]:
        """The FAISS index, the expert of each row, and the centring vector (or None)."""
        info = self._manifest["index"]
        if info is None:
            return faiss.IndexFlatIP(self._manifest["dim"] or 1), [], None
        index, center = read_index(self.path, info, self._manifest)
        return index, list(info["rows"]), center

    # -- writing --------------------------------------------------------------------------------

    def add_expert(
        self,
        name: str,
        texts: Sequence[str],
        *,
        description: str = "",
        adapter: str | os.PathLike[str] | None = None,
        centroids: int = 1,
        system_prompt: str | None = None,
        base_model: str | None = None,
        threshold: float | None = None,
        embeddings: np.ndarray | None = None,
        kind: ExpertKind = "adapter",
        url: str | None = None,
        model: str | None = None,
        gain_only: bool = False,
    ) -> Expert:
        """Add an expert: embed its texts, cluster them into centroids, and index them.

        Embedding runs before the lock is taken, so concurrent writers only serialise on the
        (fast) commit. Every kind routes alike; `kind` says what answers (see `ExpertKind`):
        `store.add_expert("calc", texts, kind="runnable")` registers an expert whose Runnable
        (an agent, say) is given to `chat_models(..., runnables={"calc": agent})`.

        Args:
            name: Unique expert name.
            texts: The expert's domain data (questions or documents).
            description: What the expert knows.
            adapter: A peft adapter folder (adapter_config.json + *.safetensors) to copy in.
            centroids: k-means centroids for this expert (the paper's Table 3); a voting
                store (`vote`) keeps every text's embedding instead.
            system_prompt: System message for the expert's chat model.
            base_model: Base model of the adapter; read from adapter_config.json when omitted.
            threshold: Per-expert threshold override.
            embeddings: Precomputed embeddings of `texts` by the store's embedder.
            kind: What answers: `adapter` (the default: `adapter` and `base_model` apply),
                `remote` (give `url` and `model`), `model` (give `model`, a catalogue alias),
                `program` (with `model`, built by the store on that model; without, bound at
                graph-building time) or `runnable` (bound at graph-building time).
            url: A `remote` expert's OpenAI-compatible base URL (`http://host:8000/v1`).
            model: A `remote` expert's served model name, or a `model` or `program` expert's
                alias.
            gain_only: Keep the expert out of the similarity index: it answers only the parts
                a stored calibration moves to it, where its measured gain passes and is the
                largest (`Calibration.choose`; calibrate after adding it). Its texts are kept,
                but route nothing.

        Raises:
            ExpertKindError: an unknown kind, or arguments that do not fit it (a `StoreError`
                and a `ValueError`), raised before anything is embedded.
            StoreError: invalid name or arguments, the expert exists, dimensions differ, or the
                adapter is unusable (see `check_adapter`).
            CorruptStoreError: the store is damaged or holds a symbolic link.
        """
        check_name(name)
        check_kind(kind, adapter=adapter, base_model=base_model, url=url, model=model)
        if model is not None and kind in ("model", "program"):
            check_model_alias(str(model))
        texts = [t.strip() for t in texts if t and t.strip()]
        if not texts:
            raise StoreError(f"expert {name!r} needs at least one non-empty text")
        if threshold is not None:
            check_threshold(threshold)
        adapter_dir, base_model = check_adapter(adapter, base_model)
        if name in self._experts:
            raise StoreError(f"expert {name!r} already exists in {self.path}; remove it first")
        vectors = self.embedder.embed(texts) if embeddings is None else embeddings
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(texts) or not np.isfinite(vectors).all():
            raise StoreError(f"expert {name!r}: embeddings must be finite, one row per text")
        if self.vote and centroids != 1:
            raise StoreError("a voting store keeps every example: leave centroids at 1")
        means, counts = (
            (vectors, (1,) * len(texts)) if self.vote else cluster_means(vectors, centroids)
        )
        unit = normalise(vectors)
        own = normalise(means)[np.argmax(unit @ normalise(means).T, axis=1)]
        stats = {
            "texts": len(texts),
            "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
            "mean_cosine_to_centroid": round(float(np.mean(np.sum(unit * own, axis=1))), 4),
        }
        record = {
            "name": name,
            "kind": kind,
            "description": description,
            "base_model": base_model,
            "adapter": "adapter" if adapter_dir else None,
            "url": url,
            "model": model,
            "system_prompt": system_prompt,
            "threshold": threshold,
            "centroids": len(counts),
            "counts": list(counts),
            "stats": stats,
            "gain_only": gain_only,
        }
        with locked(self.path, exclusive=True):
            manifest, experts = load(self.path)
            if name in experts:
                raise StoreError(f"expert {name!r} already exists in {self.path}; remove it first")
            if manifest["dim"] not in (None, means.shape[1]):
                raise StoreError(
                    f"embeddings have {means.shape[1]} dimensions; the store has {manifest['dim']}"
                )
            manifest["dim"] = int(means.shape[1])
            experts[name] = write_expert(self.path, record, means, adapter_dir)
            self._commit(manifest, experts)
        return self._experts[name]

    def remove_expert(self, name: str) -> None:
        """Remove expert `name` and its files.

        Raises:
            StoreError: no such expert.
        """
        with locked(self.path, exclusive=True):
            manifest, experts = load(self.path)
            if name not in experts:
                raise StoreError(f"no expert {name!r} in {self.path}; experts: {sorted(experts)}")
            del experts[name]
            if manifest.get("calibration") is not None:  # its gains leave with it
                calibration = Calibration.from_dict(manifest["calibration"]).without(name)
                manifest["calibration"] = calibration.to_dict()
            self._commit(manifest, experts)  # which deletes the folder, now unlisted

    def set_thresholds(
        self, thresholds: Mapping[str, float | None], default: float | None = None
    ) -> None:
        """Persist per-expert threshold overrides (None clears one) and optionally the default.

        Raises:
            StoreError: an unknown expert or a threshold outside [-1, 1].
        """
        for value in [*thresholds.values(), default]:
            if value is not None:
                check_threshold(value)
        with locked(self.path, exclusive=True):
            manifest, experts = load(self.path)
            unknown = sorted(set(thresholds) - set(experts))
            if unknown:
                raise StoreError(f"no such experts: {unknown}")
            for name, value in thresholds.items():
                expert_json = self.path / "experts" / name / "expert.json"
                record = json.loads(expert_json.read_text())
                record["threshold"] = None if value is None else float(value)
                write_json(expert_json, record)
            if default is not None:
                manifest["default_threshold"] = float(default)
            write_json(self.path / MANIFEST, manifest)
            self._manifest, self._experts = load(self.path)

    def set_calibration(self, calibration: Calibration | None) -> None:
        """Store measured gains (`calibration.measure`); None removes them.

        Routers built afterwards (`ExpertRouter(store)`) send a part to an expert only where
        its measured gain on the part's domain passes the calibration's rule. An expert added
        later has no gains and keeps routing by similarity; a removed one's gains go with it.

        Raises:
            StoreError: the calibration names an expert the store does not have.
            CorruptStoreError: its counts are inconsistent.
        """
        with locked(self.path, exclusive=True):
            manifest, experts = load(self.path)
            if calibration is None:
                manifest.pop("calibration", None)
            else:
                calibration.check(experts)
                manifest["calibration"] = calibration.to_dict()
            write_json(self.path / MANIFEST, manifest)
            self._manifest, self._experts = load(self.path)

    def set_retrieval(
        self,
        name: str,
        items: Sequence[RetrievalItem],
        settings: RetrievalSettings | None = None,
        *,
        embeddings: np.ndarray | None = None,
    ) -> Expert:
        """Give expert `name` a retrieval set: items of its training data that its prompt shows,
        the nearest to each sub-query, as worked examples (see `retrieval`).

        The questions are embedded with the store's embedder before the lock is taken; the set
        replaces any the expert had. The items must come from the expert's training split, never
        from an evaluation: the store cannot tell splits, so check them first
        (`evaluation.retrieval.check_training_items`, which `compllm experts retrieval` runs).

        Args:
            name: The expert.
            items: Its training items (`retrieval.read_retrieval_file` reads a file of them).
            settings: `k` and `floor` (default: `RetrievalSettings()`).
            embeddings: Precomputed embeddings of the items' questions by the store's embedder.

        Raises:
            StoreError: no such expert, no items, a repeated id, or embeddings that do not fit.
            ExpertKindError: a `program` or `runnable` expert, which builds its own prompt.
        """
        check_retrievable(self.expert(name))
        items = check_items(items)
        settings = settings or RetrievalSettings()
        vectors = (
            self.embedder.embed([i.question for i in items]) if embeddings is None else embeddings
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(items) or not np.isfinite(vectors).all():
            raise StoreError(f"expert {name!r}: embeddings must be finite, one row per item")
        dim = self._manifest["dim"]
        if dim is not None and vectors.shape[1] != dim:
            raise StoreError(f"embeddings have {vectors.shape[1]} dimensions; the store has {dim}")
        with locked(self.path, exclusive=True):
            folder, record = self._expert_record(name)
            record["retrieval"] = write_retrieval(
                folder, items, vectors, settings, self.embedder_spec
            )
            self._write_record(folder, record)
        return self._experts[name]

    def set_retrieval_settings(self, name: str, settings: RetrievalSettings) -> Expert:
        """Change `k` and `floor` of expert `name`'s retrieval set (`k=0`: off, items kept).

        Raises:
            StoreError: no such expert, or it has no retrieval set.
        """
        if self.expert(name).retrieval is None:
            raise StoreError(
                f"expert {name!r} has no retrieval set; give it one first "
                "(`compllm experts retrieval NAME FILE`, `store.set_retrieval`)"
            )
        with locked(self.path, exclusive=True):
            folder, record = self._expert_record(name)
            current = self._experts[name].retrieval
            if current is None:  # removed by another process meanwhile
                raise StoreError(f"expert {name!r} has no retrieval set any more")
            record["retrieval"] = stored_entry(current, settings)
            self._write_record(folder, record)
        return self._experts[name]

    def remove_retrieval(self, name: str) -> Expert:
        """Remove expert `name`'s retrieval set and its files (nothing happens without one).

        Raises:
            StoreError: no such expert.
        """
        self.expert(name)
        with locked(self.path, exclusive=True):
            folder, record = self._expert_record(name)
            record["retrieval"] = None
            self._write_record(folder, record)
        return self._experts[name]

    def retriever(self, name: str, settings: RetrievalSettings | None = None) -> Retriever:
        """The nearest items of expert `name`'s retrieval set to a text (`Retriever.nearest`),
        with the store's embedder and the stored settings, or `settings`.

        Raises:
            StoreError: no such expert, or it has no retrieval set.
        """
        retrieval = self.expert(name).retrieval
        if retrieval is None:
            raise StoreError(f"expert {name!r} has no retrieval set")
        return Retriever(retrieval, lambda: self.embedder, settings)

    def _expert_record(self, name: str) -> tuple[Path, dict[str, Any]]:
        """Reload the store and return expert `name`'s folder and `expert.json`; call with the
        exclusive lock held."""
        self._manifest, self._experts = load(self.path)
        if name not in self._experts:
            raise StoreError(f"no expert {name!r} in {self.path}; experts: {sorted(self._experts)}")
        check_retrievable(self._experts[name])
        folder = self.path / "experts" / name
        return folder, json.loads((folder / "expert.json").read_text())

    def _write_record(self, folder: Path, record: dict[str, Any]) -> None:
        """Commit an expert's `expert.json`, delete the retrieval files it no longer names, and
        reload; call with the exclusive lock held."""
        write_json(folder / "expert.json", record)
        for path in stale_files(folder, record.get("retrieval")):
            path.unlink(missing_ok=True)
        self._manifest, self._experts = load(self.path)

    def _commit(self, manifest: dict[str, Any], experts: dict[str, Expert]) -> None:
        """Write a new index for `experts`, then `store.json` naming it; clean up leftovers.

        Must be called with the exclusive lock held.
        """
        generation = int(manifest["generation"]) + 1
        manifest["generation"] = generation
        manifest["experts"] = sorted(experts)
        manifest["index"] = write_index(self.path, generation, experts, manifest["center"])
        write_json(self.path / MANIFEST, manifest)
        remove_unlisted(self.path, manifest)
        self._manifest, self._experts = manifest, experts

    # -- serving --------------------------------------------------------------------------------

    def chat_models(
        self,
        local_model: InferenceModel,
        *,
        runnables: Mapping[str, Runnable] | None = None,
        **generation: Any,
    ) -> dict[str, Runnable]:
        """The `experts` mapping for `create_compllm_graph`; see `serving.expert_chat_models`.

        An expert with a retrieval set whose `k` is above 0 shows its nearest items before each
        sub-query, embedded with the store's embedder (`retrieval.with_retrieval`).

        Args:
            local_model: The loaded base model, for `adapter` experts.
            runnables: Expert name -> Runnable for the experts whose Runnable lives in your
                code (kinds `program` and `runnable`: every one of them must be given), or to
                replace what the store would build for another. A LangGraph graph with a
                `messages` state is wrapped with `as_expert`.
            **generation: Generation settings for the experts the store builds.

        Raises:
            ExpertKindError: a `program` or `runnable` expert has no Runnable in `runnables`,
                or `runnables` names an expert the store does not have.
        """
        return expert_chat_models(
            self.experts(),
            local_model,
            runnables=runnables,
            embedder=lambda: self.embedder,
            **generation,
        )


def _remove_leftovers(root: Path) -> None:
    """Delete what killed writers left in the store at `root`, unless it is in use right now.

    Only under the writers' lock: a writer makes its `.tmp-*` folder while holding it, so with
    the lock held every such folder is dead. Not waiting for the lock keeps opening fast; a store
    in use is tidied by its next writer (`_commit`) or opener instead.
    """
    with exclusive_if_free(root) as held:
        if held:
            remove_unlisted(root, read_manifest(root))


def check_adapter(
    adapter: str | os.PathLike[str] | None, base_model: str | None
) -> tuple[Path | None, str | None]:
    """Validate a peft LoRA adapter folder for copying; return it and the base model it names.

    Raises:
        StoreError: the folder fails `adapter_folder.check_adapter_folder`'s checks, a file to
            copy is a symbolic link, or `adapter_model.safetensors` is damaged or holds no LoRA
            weights of the configured modules (`check_adapter_weights`).
    """
    if adapter is None:
        return None, base_model
    try:
        folder, config = check_adapter_folder(adapter)
        adapter_files(folder)  # refuses links now, before the slow embedding, not at the copy
        check_adapter_weights(folder, config)
    except AdapterError as exc:
        raise StoreError(str(exc)) from None
    recorded = config.get("base_model_name_or_path")
    return folder, base_model or (str(recorded) if recorded else None)


__all__ = [
    "DEFAULT_THRESHOLD",
    "CorruptStoreError",
    "Expert",
    "ExpertKind",
    "ExpertKindError",
    "ExpertStore",
    "RetrievalItem",
    "RetrievalSettings",
    "StoreError",
    "check_creatable",
    "check_name",
    "cluster_means",
    "normalise",
]
