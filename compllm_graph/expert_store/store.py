"""The expert store: experts' data centroids, adapters and thresholds in one folder.

Layout::

    store.json                      format version, embedder spec, centring, default threshold,
                                    listed experts, the current index file and its row -> expert map
    store.lock                      flock'ed by writers (exclusive) and readers (shared)
    experts/<name>/expert.json      description, base model, adapter, system prompt, threshold,
                                    data statistics, centroid counts
    experts/<name>/centroids.npy    raw (uncentred) mean embedding of each k-means cluster
    experts/<name>/adapter/         peft LoRA adapter, safetensors only (optional)
    index/<generation>.faiss        IndexFlatIP over L2-normalised (optionally centred) centroids
    index/<generation>.center.npy   the centring vector (mean of all expert data), when centring

`store.json` is the commit point: it is replaced atomically after everything it names is written,
so a crash leaves at most unlisted files, which the next writer removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from compllm_graph.errors import CompLLMError
from compllm_graph.expert_store.embedders import (
    Embedder,
    EmbedderError,
    check_spec,
    embedder_from_spec,
)

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from compllm_graph.models.local import LocalModel

FORMAT = "compllm-expert-store"
FORMAT_VERSION = 1
DEFAULT_THRESHOLD = 0.7
MAX_CENTROIDS = 64
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MANIFEST = "store.json"
_LOCK = "store.lock"


class StoreError(CompLLMError, RuntimeError):
    """A store operation cannot be done (missing store, unknown or duplicate expert, bad input)."""


class CorruptStoreError(StoreError):
    """The store on disk is damaged or partially written."""


@dataclass(frozen=True)
class Expert:
    """One expert as stored.

    Attributes:
        name: Unique name matching `NAME_PATTERN`.
        description: What the expert knows.
        base_model: Base model the adapter was trained on, or None.
        adapter: Path of the stored peft adapter folder, or None (the base model answers, with
            `system_prompt` if set).
        system_prompt: System message put before the expert's prompts, or None.
        threshold: Per-expert routing threshold, or None for the store default.
        counts: Training texts per centroid.
        stats: Statistics of the expert's data.
        centroids: Raw (uncentred) mean embedding per centroid, shape (len(counts), dim).
    """

    name: str
    description: str
    base_model: str | None
    adapter: Path | None
    system_prompt: str | None
    threshold: float | None
    counts: tuple[int, ...]
    stats: dict[str, Any] = field(default_factory=dict)
    centroids: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 0), np.float32), repr=False, compare=False
    )


def check_name(name: str) -> str:
    """Return `name` if it is a valid expert name.

    Raises:
        StoreError: the name does not match `^[a-z0-9][a-z0-9_-]{0,63}$`.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name in ("base",):
        raise StoreError(
            f"invalid expert name {name!r}: use 1-64 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit ('base' is reserved)"
        )
    return name


def cluster_means(vectors: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, tuple[int, ...]]:
    """Split an expert's data into `k` clusters (spherical k-means) and average each.

    Clustering runs on unit vectors (routing uses cosine); the means are of the raw vectors so
    that the store can re-centre them later without the data.

    Returns:
        The raw mean vector of each non-empty cluster and its size.

    Raises:
        StoreError: `k` is out of range or larger than the number of vectors.
    """
    n, dim = vectors.shape
    if not 1 <= k <= MAX_CENTROIDS:
        raise StoreError(f"centroids must be in 1..{MAX_CENTROIDS}, got {k}")
    if n < k:
        raise StoreError(f"{k} centroids need at least {k} texts, got {n}")
    if k == 1:
        return vectors.mean(axis=0, keepdims=True).astype(np.float32), (n,)
    unit = normalise(vectors)
    kmeans = faiss.Kmeans(
        dim, k, niter=25, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1
    )
    kmeans.train(unit)
    _, assign = kmeans.index.search(unit, 1)
    groups = [np.flatnonzero(assign[:, 0] == c) for c in range(k)]
    groups = [g for g in groups if len(g)]
    means = np.stack([vectors[g].mean(axis=0) for g in groups]).astype(np.float32)
    return means, tuple(len(g) for g in groups)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


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
        local_model: LocalModel | None,
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
    ) -> ExpertStore:
        """Create an empty store.

        Args:
            path: Folder to create (it may exist if empty).
            embedder: An embedder or its spec (`minilm`, `hashing:DIM`, `mean-pool:ALIAS`,
                `last-token:ALIAS`). A spec is only resolved when texts are embedded.
            center: Subtract the mean of all expert data before comparing (needed for raw
                decoder embeddings, which all point the same way).
            threshold: Default cosine threshold below which a sub-query goes to base.

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
        _check_threshold(threshold)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"cannot create a store at {root}: it exists and is not empty")
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "embedder": spec,
            "dim": None,
            "center": bool(center),
            "default_threshold": float(threshold),
            "generation": 0,
            "experts": [],
            "index": None,
        }
        with _locked(root, exclusive=True):
            (root / "experts").mkdir(exist_ok=True)
            (root / "index").mkdir(exist_ok=True)
            _write_json(root / _MANIFEST, manifest)
        return cls(root, manifest, {}, instance, None)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        embedder: Embedder | None = None,
        local_model: LocalModel | None = None,
    ) -> ExpertStore:
        """Open and validate a store.

        Args:
            path: The store folder.
            embedder: Embedder to use instead of building one from the spec; its spec must match.
            local_model: Loaded model to reuse for `mean-pool:`/`last-token:` specs.

        Raises:
            StoreError: there is no store at `path`, or `embedder` does not match.
            CorruptStoreError: a file is missing, truncated or inconsistent.
        """
        root = Path(path).expanduser()
        if not (root / _MANIFEST).is_file():
            raise StoreError(
                f"no expert store at {root} (missing {_MANIFEST}); create one with "
                "`compllm experts create` or `compllm experts build-demo`"
            )
        with _locked(root, exclusive=False):
            manifest, experts = _load(root)
        if embedder is not None and embedder.spec != manifest["embedder"]:
            raise StoreError(
                f"the store at {root} embeds with {manifest['embedder']!r}, not {embedder.spec!r}"
            )
        return cls(root, manifest, experts, embedder, local_model)

    def reload(self) -> None:
        """Re-read the store from disk (to see other processes' changes)."""
        with _locked(self.path, exclusive=False):
            self._manifest, self._experts = _load(self.path)

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

    def load_index(self) -> tuple[faiss.Index, list[str], np.ndarray | None]:
        """The FAISS index, the expert of each row, and the centring vector (or None)."""
        info = self._manifest["index"]
        if info is None:
            return faiss.IndexFlatIP(self._manifest["dim"] or 1), [], None
        index, center = _read_index(self.path, info, self._manifest)
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
    ) -> Expert:
        """Add an expert: embed its texts, cluster them into centroids, and index them.

        Embedding runs before the lock is taken, so concurrent writers only serialise on the
        (fast) commit.

        Args:
            name: Unique expert name.
            texts: The expert's domain data (questions or documents).
            description: What the expert knows.
            adapter: A peft adapter folder (adapter_config.json + *.safetensors) to copy in.
            centroids: k-means centroids for this expert (the paper's Table 3).
            system_prompt: System message for the expert's chat model.
            base_model: Base model of the adapter; read from adapter_config.json when omitted.
            threshold: Per-expert threshold override.
            embeddings: Precomputed embeddings of `texts` by the store's embedder.

        Raises:
            StoreError: invalid name or arguments, the expert exists, or dimensions differ.
        """
        check_name(name)
        texts = [t.strip() for t in texts if t and t.strip()]
        if not texts:
            raise StoreError(f"expert {name!r} needs at least one non-empty text")
        if threshold is not None:
            _check_threshold(threshold)
        adapter_dir, base_model = _check_adapter(adapter, base_model)
        if name in self._experts:
            raise StoreError(f"expert {name!r} already exists in {self.path}; remove it first")
        vectors = self.embedder.embed(texts) if embeddings is None else embeddings
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(texts) or not np.isfinite(vectors).all():
            raise StoreError(f"expert {name!r}: embeddings must be finite, one row per text")
        means, counts = cluster_means(vectors, centroids)
        unit = normalise(vectors)
        own = normalise(means)[np.argmax(unit @ normalise(means).T, axis=1)]
        stats = {
            "texts": len(texts),
            "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
            "mean_cosine_to_centroid": round(float(np.mean(np.sum(unit * own, axis=1))), 4),
        }
        record = {
            "name": name,
            "description": description,
            "base_model": base_model,
            "adapter": "adapter" if adapter_dir else None,
            "system_prompt": system_prompt,
            "threshold": threshold,
            "centroids": len(counts),
            "counts": list(counts),
            "stats": stats,
        }
        with _locked(self.path, exclusive=True):
            manifest, experts = _load(self.path)
            if name in experts:
                raise StoreError(f"expert {name!r} already exists in {self.path}; remove it first")
            if manifest["dim"] not in (None, means.shape[1]):
                raise StoreError(
                    f"embeddings have {means.shape[1]} dimensions; the store has {manifest['dim']}"
                )
            manifest["dim"] = int(means.shape[1])
            experts[name] = _write_expert(self.path, record, means, adapter_dir)
            self._commit(manifest, experts)
        return self._experts[name]

    def remove_expert(self, name: str) -> None:
        """Remove expert `name` and its files.

        Raises:
            StoreError: no such expert.
        """
        with _locked(self.path, exclusive=True):
            manifest, experts = _load(self.path)
            if name not in experts:
                raise StoreError(f"no expert {name!r} in {self.path}; experts: {sorted(experts)}")
            del experts[name]
            self._commit(manifest, experts)
            shutil.rmtree(self.path / "experts" / name, ignore_errors=True)

    def set_thresholds(
        self, thresholds: Mapping[str, float | None], default: float | None = None
    ) -> None:
        """Persist per-expert threshold overrides (None clears one) and optionally the default.

        Raises:
            StoreError: an unknown expert or a threshold outside [-1, 1].
        """
        for value in [*thresholds.values(), default]:
            if value is not None:
                _check_threshold(value)
        with _locked(self.path, exclusive=True):
            manifest, experts = _load(self.path)
            unknown = sorted(set(thresholds) - set(experts))
            if unknown:
                raise StoreError(f"no such experts: {unknown}")
            for name, value in thresholds.items():
                expert_json = self.path / "experts" / name / "expert.json"
                record = json.loads(expert_json.read_text())
                record["threshold"] = None if value is None else float(value)
                _write_json(expert_json, record)
            if default is not None:
                manifest["default_threshold"] = float(default)
            _write_json(self.path / _MANIFEST, manifest)
            self._manifest, self._experts = _load(self.path)

    def _commit(self, manifest: dict[str, Any], experts: dict[str, Expert]) -> None:
        """Write a new index for `experts`, then `store.json` naming it; clean up leftovers.

        Must be called with the exclusive lock held.
        """
        generation = int(manifest["generation"]) + 1
        manifest["generation"] = generation
        manifest["experts"] = sorted(experts)
        manifest["index"] = _write_index(self.path, generation, experts, manifest["center"])
        _write_json(self.path / _MANIFEST, manifest)
        _remove_unlisted(self.path, manifest)
        self._manifest, self._experts = manifest, experts

    # -- serving --------------------------------------------------------------------------------

    def chat_models(self, local_model: LocalModel, **generation: Any) -> dict[str, Runnable]:
        """The `experts` mapping for `create_compllm_graph`, served by `local_model`.

        An expert with an adapter gets `local_model.chat_model(adapter=name)` (the adapter is
        loaded on first use); one without gets the base chat model. A system prompt, if set, is
        put before every request.

        Args:
            local_model: The loaded base model.
            **generation: Generation settings passed to every chat model.

        Raises:
            StoreError: an adapter was trained on a different base model.
        """
        from compllm_graph.models.local import same_base

        models: dict[str, Runnable] = {}
        for expert in self.experts():
            if expert.adapter is not None:
                if expert.base_model and not same_base(expert.base_model, local_model.name):
                    raise StoreError(
                        f"expert {expert.name!r} has an adapter for {expert.base_model!r}, but "
                        f"the loaded model is {local_model.name!r}"
                    )
                if expert.name not in _loaded_adapters(local_model):
                    local_model.add_adapter(expert.name, expert.adapter)
                chat: Runnable = local_model.chat_model(adapter=expert.name, **generation)
            else:
                chat = local_model.chat_model(**generation)
            models[expert.name] = _with_system_prompt(chat, expert.system_prompt)
        return models


# -- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(root: Path, exclusive: bool) -> Iterator[None]:
    """Hold `store.lock` (exclusive for writers, shared for readers).

    A reader that cannot create the lock file (a read-only store) reads without it: writers
    replace files atomically, so it still never sees a half-written file.
    """
    lock_path = root / _LOCK
    try:
        handle = open(lock_path, "a+")  # noqa: SIM115 - closed below, after unlocking
    except OSError as exc:
        if not exclusive:
            yield
            return
        raise StoreError(f"cannot open the store lock {lock_path}: {exc}") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp's 0600 would hide the store from others
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, obj: Any) -> None:
    _write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _check_threshold(value: float) -> None:
    if not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
        raise StoreError(f"a threshold is a cosine similarity in [-1, 1], got {value!r}")


def _check_adapter(
    adapter: str | os.PathLike[str] | None, base_model: str | None
) -> tuple[Path | None, str | None]:
    """Validate a peft adapter folder; return it and the base model it names."""
    if adapter is None:
        return None, base_model
    folder = Path(adapter).expanduser()
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise StoreError(f"{folder} is not a peft adapter folder (no adapter_config.json)")
    if not list(folder.glob("*.safetensors")):
        raise StoreError(f"{folder} holds no .safetensors weights (only safetensors are loaded)")
    try:
        recorded = json.loads(config.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as exc:
        raise StoreError(f"cannot read {config}: {exc}") from exc
    return folder, base_model or (str(recorded) if recorded else None)


def _write_expert(
    root: Path, record: dict[str, Any], means: np.ndarray, adapter: Path | None
) -> Expert:
    """Write an expert folder under a temporary name, then rename it into place."""
    experts_dir = root / "experts"
    tmp = Path(tempfile.mkdtemp(dir=experts_dir, prefix=f".tmp-{record['name']}-"))
    tmp.chmod(0o755)
    try:
        _write_json(tmp / "expert.json", record)
        _write_bytes(tmp / "centroids.npy", _npy_bytes(means))
        if adapter is not None:
            (tmp / "adapter").mkdir()
            for item in adapter.iterdir():
                if item.is_file() and item.suffix in (".json", ".safetensors"):
                    shutil.copyfile(item, tmp / "adapter" / item.name)
        final = experts_dir / record["name"]
        shutil.rmtree(final, ignore_errors=True)  # an unlisted leftover of a crashed writer
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _read_expert(root, record["name"], means.shape[1])


def _write_index(
    root: Path, generation: int, experts: dict[str, Expert], center: bool
) -> dict[str, Any] | None:
    """Build and write the FAISS index of all centroids; return its manifest entry."""
    if not experts:
        return None
    names = sorted(experts)
    means = np.concatenate([experts[n].centroids for n in names])
    counts = np.concatenate([np.asarray(experts[n].counts, dtype=np.float64) for n in names])
    rows = [n for n in names for _ in experts[n].counts]
    info: dict[str, Any] = {"file": f"index/{generation}.faiss", "rows": rows, "center_file": None}
    vectors = means
    if center:
        mean = (means * counts[:, None]).sum(axis=0) / counts.sum()
        vectors = means - mean.astype(np.float32)
        info["center_file"] = f"index/{generation}.center.npy"
        _write_bytes(root / info["center_file"], _npy_bytes(mean[None, :]))
    index = faiss.IndexFlatIP(means.shape[1])
    index.add(normalise(vectors))
    _write_bytes(root / info["file"], faiss.serialize_index(index).tobytes())
    return info


def _remove_unlisted(root: Path, manifest: dict[str, Any]) -> None:
    """Delete index files and expert folders the manifest does not name (crash leftovers)."""
    info = manifest["index"] or {}
    keep = {info.get("file"), info.get("center_file")}
    for item in (root / "index").iterdir():
        if f"index/{item.name}" not in keep:
            item.unlink(missing_ok=True)
    listed = set(manifest["experts"])
    for item in (root / "experts").iterdir():
        if item.name not in listed:
            shutil.rmtree(item, ignore_errors=True)


def _load(root: Path) -> tuple[dict[str, Any], dict[str, Expert]]:
    """Read and validate `store.json` and every listed expert."""
    manifest = _read_manifest(root)
    experts = {name: _read_expert(root, name, manifest["dim"]) for name in manifest["experts"]}
    info = manifest["index"]
    if (info is None) != (not experts):
        raise CorruptStoreError(f"{root / _MANIFEST}: the index does not match the expert list")
    if info is not None:
        expected = [n for n in sorted(experts) for _ in experts[n].counts]
        if info.get("rows") != expected:
            raise CorruptStoreError(f"{root / _MANIFEST}: the index rows do not match the experts")
        _read_index(root, info, manifest)
    return manifest, experts


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / _MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptStoreError(f"{path} is unreadable or not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptStoreError(f"{path} is not an expert store manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise CorruptStoreError(
            f"{path} has format version {manifest.get('version')!r}; this compllm-graph reads "
            f"version {FORMAT_VERSION}"
        )
    required: dict[str, type | tuple[type, ...]] = {
        "embedder": str,
        "center": bool,
        "default_threshold": (int, float),
        "generation": int,
        "experts": list,
    }
    for key, kind in required.items():
        if not isinstance(manifest.get(key), kind):
            raise CorruptStoreError(f"{path}: field {key!r} is missing or has the wrong type")
    if not all(isinstance(n, str) and NAME_PATTERN.match(n) for n in manifest["experts"]):
        raise CorruptStoreError(f"{path}: the expert list holds an invalid name")
    return manifest


def _read_expert(root: Path, name: str, dim: int | None) -> Expert:
    folder = root / "experts" / name
    try:
        record = json.loads((folder / "expert.json").read_text())
        centroids = np.load(folder / "centroids.npy", allow_pickle=False)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptStoreError(f"expert {name!r} in {root} is damaged or missing: {exc}") from exc
    counts = record.get("counts") if isinstance(record, dict) else None
    if (
        not isinstance(counts, list)
        or record.get("name") != name
        or centroids.ndim != 2
        or centroids.shape[0] != len(counts)
        or (dim is not None and centroids.shape[1] != dim)
        or not np.isfinite(centroids).all()
    ):
        raise CorruptStoreError(
            f"expert {name!r} in {root}: expert.json and centroids.npy disagree"
        )
    adapter = folder / "adapter" if record.get("adapter") else None
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise CorruptStoreError(f"expert {name!r} in {root}: its adapter folder is incomplete")
    return Expert(
        name=name,
        description=str(record.get("description") or ""),
        base_model=record.get("base_model"),
        adapter=adapter,
        system_prompt=record.get("system_prompt"),
        threshold=record.get("threshold"),
        counts=tuple(int(c) for c in counts),
        stats=dict(record.get("stats") or {}),
        centroids=centroids.astype(np.float32),
    )


def _read_index(
    root: Path, info: dict[str, Any], manifest: dict[str, Any]
) -> tuple[faiss.Index, np.ndarray | None]:
    try:
        data = np.frombuffer((root / info["file"]).read_bytes(), dtype=np.uint8)
        index = faiss.deserialize_index(data)
        center = None
        if info.get("center_file"):
            center = np.load(root / info["center_file"], allow_pickle=False)[0]
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, IndexError) as exc:
        raise CorruptStoreError(f"the index of the store at {root} is damaged: {exc}") from exc
    if index.ntotal != len(info["rows"]) or index.d != manifest["dim"]:
        raise CorruptStoreError(f"the index of the store at {root} does not match store.json")
    if manifest["center"] != (center is not None):
        raise CorruptStoreError(f"the centring vector of the store at {root} is missing")
    return index, center


def _loaded_adapters(local_model: Any) -> set[str]:
    adapters = getattr(local_model, "adapters", None)
    if callable(adapters):
        adapters = adapters()
    return set(adapters or ())


def _with_system_prompt(chat: Runnable, system_prompt: str | None) -> Runnable:
    """`chat` with `system_prompt` put first in every request (unchanged when None)."""
    if not system_prompt:
        return chat
    from langchain_core.messages import SystemMessage, convert_to_messages
    from langchain_core.runnables import RunnableLambda

    def prepend(request: Any) -> list[Any]:
        messages = convert_to_messages([request] if isinstance(request, str) else request)
        return [SystemMessage(system_prompt), *messages]

    return RunnableLambda(prepend, name="system_prompt") | chat


__all__ = ["CorruptStoreError", "Expert", "ExpertStore", "StoreError", "check_name"]
