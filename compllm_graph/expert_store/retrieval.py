"""Retrieval for an expert: the nearest of its own training items, shown before a sub-query.

An expert of the store may keep a retrieval set: items of its training data (question, answer,
optional explanation; text only, each with its id and source) and a FAISS index over the
embeddings of their questions by the store's embedder (`ExpertStore.set_retrieval`). When the
expert answers, the `k` items nearest to the sub-query whose cosine similarity is at least
`floor` (`RetrievalSettings`) go into its prompt as worked examples: each a user turn (the
question) and an assistant turn (the explanation, then the answer), in order of similarity with
the nearest last, just before the sub-query (`with_retrieval`). The prompt of an `adapter`,
`model` or `remote` expert is built here, so each of them can have one; a `program` or
`runnable` expert builds its own prompt and cannot.

In the expert's folder::

    retrieval/<n>.jsonl   the items, one JSON object a line (`RetrievalItem`)
    retrieval/<n>.faiss   IndexFlatIP over the L2-normalised embeddings of their questions

`expert.json` names the current pair under `retrieval`, with `k`, `floor`, the number of items,
the embedder and the dimension; it is replaced atomically after both files are written, so it is
the commit point, and the pairs it does not name are crash leftovers (`stale_files`).

The items come from the expert's training split. The store cannot tell a split (it sits below the
datasets in the layers); `compllm experts retrieval` checks every item against the item splits
before it stores them (`evaluation.retrieval.check_training_items`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableLambda

from compllm_graph.expert_store.data import DataFileError
from compllm_graph.expert_store.embedders import Embedder, embedder_from_spec
from compllm_graph.expert_store.index import flat_index_bytes, load_index_file, normalise
from compllm_graph.expert_store.locking import write_bytes
from compllm_graph.expert_store.records import (
    CorruptStoreError,
    RetrievalSettings,
    StoredRetrieval,
    StoreError,
)

RETRIEVAL_DIR = "retrieval"
_STORED_NAME = re.compile(r"^(\d+)\.(jsonl|faiss)$")
# `write_bytes`'s temporaries of them (`tempfile` adds 8 characters of a-z, 0-9 and _).
_TEMPORARY = re.compile(r"^\.\d+\.(?:jsonl|faiss)\.[a-z0-9_]{8}$")
QUESTION_MARK = "\n\nQuestion: "
"""What ends the execute node's context block before a dependent sub-query's own question
(`nodes.execute.CONTEXT_TEMPLATE`): the items are retrieved by that question alone, since the
parents' answers before it would pull the search towards them."""


@dataclass(frozen=True)
class RetrievalItem:
    """One training item of an expert, as its prompt may show it.

    Attributes:
        id: The item's id (`mmlu/college_biology/12`); unique within a set.
        question: The question as the expert read it in training (options included).
        answer: The answer as the expert learnt to give it.
        explanation: The working or explanation before the answer, or None.
        source: Where it comes from; the id's first part when not given.
    """

    id: str
    question: str
    answer: str
    explanation: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("id", "question", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"a retrieval item needs a non-empty {name!r} string")
        if self.explanation is not None and not isinstance(self.explanation, str):
            raise ValueError(f"item {self.id!r}: 'explanation' must be a string or null")
        if not isinstance(self.source, str):
            raise ValueError(f"item {self.id!r}: 'source' must be a string")
        if not self.source:
            object.__setattr__(self, "source", self.id.split("/")[0])

    @property
    def reply(self) -> str:
        """The worked answer shown as the assistant's turn: explanation, then the answer."""
        if self.explanation and self.explanation.strip():
            return f"{self.explanation.strip()}\n{self.answer.strip()}"
        return self.answer.strip()

    def to_dict(self) -> dict[str, Any]:
        """The item as a JSON object (the format `read_retrieval_file` reads)."""
        return {
            "id": self.id,
            "source": self.source,
            "question": self.question,
            "answer": self.answer,
            "explanation": self.explanation,
        }

    @classmethod
    def from_dict(cls, record: Any) -> RetrievalItem:
        """An item from a JSON object with `id`, `question` and `answer` strings, and optionally
        `explanation` and `source` (other keys, such as `domain`, are ignored).

        Raises:
            ValueError: a field is missing, empty or of the wrong type.
        """
        if not isinstance(record, dict):
            raise ValueError("a retrieval item must be a JSON object")
        fields: dict[str, Any] = record  # each field is checked in __post_init__
        return cls(
            id=fields.get("id", ""),
            question=fields.get("question", ""),
            answer=fields.get("answer", ""),
            explanation=fields.get("explanation"),
            source=fields.get("source") or "",
        )


class Found(NamedTuple):
    """A retrieved item and its cosine similarity to the sub-query."""

    item: RetrievalItem
    score: float


def read_retrieval_file(path: str | os.PathLike[str]) -> list[RetrievalItem]:
    """The items of a `.jsonl` retrieval file (`compllm train expert-data DOMAIN` writes one).

    Each line is an object with `id`, `question` and `answer` strings, and optionally
    `explanation` (a string or null) and `source`.

    Raises:
        DataFileError: the file is missing, unreadable, not `.jsonl`, empty, or a line is not
            JSON, lacks a field, or repeats an id; the message names the file and the line.
    """
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        raise DataFileError(f"{path}: a retrieval file must be .jsonl (one item a line)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"cannot read the retrieval file {path}: {exc}") from exc
    items = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                items.append(RetrievalItem.from_dict(json.loads(line)))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                raise DataFileError(f"{path}:{number}: not a retrieval item: {exc}") from exc
    try:
        return check_items(items)
    except StoreError as exc:
        raise DataFileError(f"{path}: {exc}") from None


def check_items(items: Iterable[RetrievalItem]) -> list[RetrievalItem]:
    """`items` as a list, if it is a non-empty set of `RetrievalItem`s with distinct ids.

    Raises:
        StoreError: no items, something that is not a `RetrievalItem`, or a repeated id.
    """
    items = list(items)
    if not items:
        raise StoreError("a retrieval set needs at least one item")
    wrong = [type(i).__name__ for i in items if not isinstance(i, RetrievalItem)]
    if wrong:
        raise StoreError(f"retrieval items must be RetrievalItem, got {wrong[0]}")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise StoreError(f"item id {item.id!r} appears twice in the retrieval set")
        seen.add(item.id)
    return items


def write_retrieval(
    folder: Path,
    items: Sequence[RetrievalItem],
    vectors: np.ndarray,
    settings: RetrievalSettings,
    embedder: str,
) -> dict[str, Any]:
    """Write a retrieval set's files into an expert's folder; return its `expert.json` entry.

    The files get a number no file of the folder has, so the set `expert.json` names now is
    never overwritten: until `expert.json` names the new pair, the old one stays whole.
    Call with the store's exclusive lock held.
    """
    target = folder / RETRIEVAL_DIR
    target.mkdir(exist_ok=True)
    taken = [int(m.group(1)) for p in target.iterdir() if (m := _STORED_NAME.match(p.name))]
    number = max(taken, default=0) + 1
    lines = "".join(json.dumps(item.to_dict()) + "\n" for item in items)
    items_file, index_file = f"{RETRIEVAL_DIR}/{number}.jsonl", f"{RETRIEVAL_DIR}/{number}.faiss"
    write_bytes(folder / items_file, lines.encode())
    write_bytes(folder / index_file, flat_index_bytes(vectors))
    sources: dict[str, int] = {}
    for item in items:
        sources[item.source] = sources.get(item.source, 0) + 1
    return {
        "k": settings.k,
        "floor": float(settings.floor),
        "items": len(items),
        "items_file": items_file,
        "index_file": index_file,
        "embedder": embedder,
        "dim": int(vectors.shape[1]),
        "sources": dict(sorted(sources.items())),
    }


def stored_entry(retrieval: StoredRetrieval, settings: RetrievalSettings) -> dict[str, Any]:
    """The `expert.json` entry of a stored set with other settings (the files stay)."""
    return {
        "k": settings.k,
        "floor": float(settings.floor),
        "items": retrieval.items,
        "items_file": f"{RETRIEVAL_DIR}/{retrieval.items_file.name}",
        "index_file": f"{RETRIEVAL_DIR}/{retrieval.index_file.name}",
        "embedder": retrieval.embedder,
        "dim": retrieval.dim,
        "sources": dict(retrieval.sources),
    }


def read_stored(folder: Path, entry: Any) -> StoredRetrieval | None:
    """The retrieval set an `expert.json` entry names (None for none); its files must exist.

    Raises:
        CorruptStoreError: the entry is malformed, or a file it names is missing.
    """
    if entry is None:
        return None
    where = folder / "expert.json"
    if not isinstance(entry, dict):
        raise CorruptStoreError(f"{where}: 'retrieval' must be an object or null")
    entry = dict[str, Any](entry)
    try:
        settings = RetrievalSettings(k=entry.get("k"), floor=entry.get("floor"))
    except StoreError as exc:
        raise CorruptStoreError(f"{where}: {exc}") from None
    files = [entry.get("items_file"), entry.get("index_file")]
    counts = [entry.get("items"), entry.get("dim")]
    if (
        not all(isinstance(f, str) and _stored_file(f) for f in files)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in counts)
        or not isinstance(entry.get("embedder"), str)
        or not isinstance(entry.get("sources", {}), dict)
    ):
        raise CorruptStoreError(f"{where}: its 'retrieval' entry is malformed")
    for name in files:
        if not (folder / name).is_file():
            raise CorruptStoreError(
                f"the retrieval file {folder / name} is missing (named by {where})"
            )
    return StoredRetrieval(
        settings=settings,
        items=int(entry["items"]),
        items_file=folder / entry["items_file"],
        index_file=folder / entry["index_file"],
        embedder=entry["embedder"],
        dim=int(entry["dim"]),
        sources={str(k): int(v) for k, v in dict(entry.get("sources") or {}).items()},
    )


def _stored_file(name: str) -> bool:
    head, _, tail = name.partition("/")
    return head == RETRIEVAL_DIR and bool(_STORED_NAME.match(tail))


def stale_files(folder: Path, entry: Any) -> list[Path]:
    """Retrieval files in an expert's folder that its `expert.json` entry does not name: what a
    writer that died before its commit, or a replaced set, left behind. Only names the store
    writes count, and never a symbolic link."""
    target = folder / RETRIEVAL_DIR
    if target.is_symlink() or not target.is_dir():
        return []
    named = set()
    if isinstance(entry, dict):
        named = {str(entry.get("items_file")), str(entry.get("index_file"))}
    return [
        path
        for path in sorted(target.iterdir())
        if (_STORED_NAME.match(path.name) or _TEMPORARY.match(path.name))
        and f"{RETRIEVAL_DIR}/{path.name}" not in named
        and path.is_file()
        and not path.is_symlink()
    ]


def load_items(retrieval: StoredRetrieval) -> list[RetrievalItem]:
    """The stored items.

    Raises:
        CorruptStoreError: the items file is unreadable, damaged, or holds another number of
            items than `expert.json` records; the message names it.
    """
    path = retrieval.items_file
    try:
        lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
        items = [RetrievalItem.from_dict(json.loads(line)) for line in lines]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptStoreError(f"the retrieval file {path} is damaged: {exc}") from exc
    if len(items) != retrieval.items:
        raise CorruptStoreError(
            f"the retrieval file {path} holds {len(items)} items; expert.json records "
            f"{retrieval.items}"
        )
    return items


class Retriever:
    """The nearest items of a stored retrieval set to a text.

    The items and the index are read on the first search, so building an expert costs nothing
    until it is asked; searches may run in several threads at once.

    Args:
        retrieval: The stored set (`Expert.retrieval`).
        embedder: Returns the embedder to embed the text with (the store's, whose spec must
            be the set's); called on the first search.
        settings: `k` and `floor` to use instead of the stored ones.
    """

    def __init__(
        self,
        retrieval: StoredRetrieval,
        embedder: Callable[[], Embedder],
        settings: RetrievalSettings | None = None,
    ) -> None:
        self.retrieval = retrieval
        self.settings = settings or retrieval.settings
        self._embedder = embedder
        self._lock = threading.Lock()
        self._loaded: tuple[list[RetrievalItem], Any, Embedder] | None = None

    def _load(self) -> tuple[list[RetrievalItem], Any, Embedder]:
        with self._lock:
            if self._loaded is None:
                items = load_items(self.retrieval)
                index = self._index()
                embedder = self._embedder()
                if embedder.spec != self.retrieval.embedder:
                    raise StoreError(
                        f"the retrieval set {self.retrieval.items_file} was embedded with "
                        f"{self.retrieval.embedder!r}, not {embedder.spec!r}"
                    )
                self._loaded = (items, index, embedder)
            return self._loaded

    def _index(self) -> Any:
        path = self.retrieval.index_file
        try:
            index = load_index_file(path)
        except (OSError, RuntimeError, ValueError) as exc:
            raise CorruptStoreError(f"the retrieval index {path} is damaged: {exc}") from exc
        if index.ntotal != self.retrieval.items or index.d != self.retrieval.dim:
            raise CorruptStoreError(
                f"the retrieval index {path} holds {index.ntotal} vectors of {index.d} "
                f"dimensions; expert.json records {self.retrieval.items} of {self.retrieval.dim}"
            )
        return index

    def items(self) -> list[RetrievalItem]:
        """Every item of the set, in stored order."""
        return list(self._load()[0])

    def nearest(self, text: str, k: int | None = None, floor: float | None = None) -> list[Found]:
        """The items nearest to `text`, most similar first: at most `k`, each at least `floor`
        similar (the settings' when None).

        Raises:
            CorruptStoreError: a stored file is damaged.
            StoreError: the embedder is not the one the set was embedded with.
        """
        k = self.settings.k if k is None else k
        floor = self.settings.floor if floor is None else floor
        items, index, embedder = self._load()
        if k <= 0 or not text.strip():
            return []
        query = normalise(np.asarray(embedder.embed([text]), dtype=np.float32))
        scores, rows = index.search(query, min(k, len(items)))
        return [
            Found(items[row], float(score))
            for score, row in zip(scores[0], rows[0])
            if row >= 0 and score >= floor
        ]


def question_text(message: BaseMessage) -> str:
    """The sub-query in a user turn: its own question after a context block, else all of it."""
    content = message.content
    text = content if isinstance(content, str) else " ".join(_text_parts(content))
    head, mark, question = text.rpartition(QUESTION_MARK)
    return question if mark and head else text


def _text_parts(content: list[Any]) -> list[str]:
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
    return parts


def with_examples(messages: Sequence[BaseMessage], found: Sequence[Found]) -> list[BaseMessage]:
    """`messages` with each found item as a worked example (a user turn and an assistant turn),
    the nearest last, inserted just before the last user turn."""
    messages = list(messages)
    last = next(
        (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)),
        None,
    )
    if last is None or not found:
        return messages
    examples: list[BaseMessage] = []
    for item, _ in reversed(found):
        examples += [HumanMessage(item.question), AIMessage(item.reply)]
    return [*messages[:last], *examples, *messages[last:]]


def with_retrieval(chat: Runnable, retriever: Retriever) -> Runnable:
    """`chat` with the nearest items of `retriever` put before the sub-query of every request
    (unchanged when its `k` is 0). The last user turn is the sub-query (`question_text`)."""
    if not retriever.settings.on:
        return chat

    def add_examples(request: Any) -> list[BaseMessage]:
        messages = convert_to_messages([request] if isinstance(request, str) else request)
        last = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        if last is None:
            return messages
        return with_examples(messages, retriever.nearest(question_text(last)))

    return RunnableLambda(add_examples, name="retrieval") | chat


def lazy_embedder(spec: str) -> Callable[[], Embedder]:
    """A function returning the embedder of `spec`, built on its first call and then kept."""
    built: list[Embedder] = []
    lock = threading.Lock()

    def get() -> Embedder:
        with lock:
            if not built:
                built.append(embedder_from_spec(spec))
            return built[0]

    return get


__all__ = [
    "QUESTION_MARK",
    "RETRIEVAL_DIR",
    "Found",
    "RetrievalItem",
    "Retriever",
    "check_items",
    "lazy_embedder",
    "load_items",
    "question_text",
    "read_retrieval_file",
    "read_stored",
    "stale_files",
    "stored_entry",
    "with_examples",
    "with_retrieval",
    "write_retrieval",
]
