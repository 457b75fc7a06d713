"""Retrieval sets checked against the item splits: `compllm experts retrieval`.

An expert's retrieval set (`expert_store.retrieval`) puts its nearest training items into its
prompt, so an item of an evaluation in it would hand the expert the answer. The store cannot
tell splits (it sits below the datasets in the layers), so this module, which can, checks every
item before the command stores the set (`check_training_items`):

- An item whose id names a source of the shared data (`PROJECT_SOURCES`) must be a train-split
  item of the experts' sources (`datasets.items.SOURCES`, split by id by `datasets.splits`, or by
  the source's own split): a test-split item, an item of a source kept for calibration or the
  easy tier (MMLU dev, OpenBookQA, ASDiv, PubMedQA with its abstract, MMLU health) and an id that
  names no item are refused. An open-form pair's id is its item's id and `#open`; it counts as
  its item.
- Whatever its id, an item whose question is the question of a test-split item is refused,
  unless a train-split item asks it too: every benchmark build leaves such test items out
  (`datasets.compositions.left_out`), and the experts trained on the train item.

Items of other sources (your own data) are stored as they are: nothing of the shared data can
be among them but by question, which the second rule checks when the shared data is there.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compllm_graph.data_dir import DEFAULT_DATA_DIR, missing_data_message
from compllm_graph.datasets.items import SOURCES, Item, domain_items, unlettered
from compllm_graph.errors import CompLLMError

if TYPE_CHECKING:
    from compllm_graph.expert_store.records import Expert, RetrievalSettings, StoredRetrieval
    from compllm_graph.expert_store.retrieval import RetrievalItem
    from compllm_graph.expert_store.store import ExpertStore

PROJECT_SOURCES = frozenset(
    {
        "arc",
        "asdiv",
        "gsm8k",
        "medmcqa",
        "medqa",
        "mmlu",
        "mmlu-dev",
        "openbookqa",
        "pubmedqa",
        "pubmedqa-abstract",
    }
)
"""Id prefixes of the shared data's item sources (`datasets.items`, `datasets.calibration`)."""
MAX_LISTED = 5
"""Refused items named in an error, the rest counted."""


class RetrievalSplitError(CompLLMError, ValueError):
    """A retrieval set holds an item that is not a training item: one of an evaluation, of the
    calibration split, or an id of the shared data that names no item."""


@dataclass(frozen=True)
class TrainingPool:
    """What the check compares items with: the experts' sources' items by split.

    Attributes:
        train_ids: Ids of the train-split items.
        test_ids: Ids of the test-split items.
        test_questions: The questions (without options) an evaluation may hold: those of the
            test-split items, less any that is also a train-split item's, which every benchmark
            build leaves out (`datasets.compositions.left_out`).
    """

    train_ids: frozenset[str]
    test_ids: frozenset[str] = field(default_factory=frozenset)
    test_questions: frozenset[str] = field(default_factory=frozenset)


def pool_of(items: Iterable[Item]) -> TrainingPool:
    """The pool of `items` by their split (`Item.in_split`)."""
    train, test, train_questions, test_questions = set(), set(), set(), set()
    for item in items:
        if item.in_split == "train":
            train.add(item.id)
            train_questions.add(unlettered(item.question))
        else:
            test.add(item.id)
            test_questions.add(unlettered(item.question))
    return TrainingPool(
        frozenset(train), frozenset(test), frozenset(test_questions - train_questions)
    )


def training_pool(data_dir: Path) -> TrainingPool:
    """The pool of every item of the experts' sources in the shared data at `data_dir`.

    Raises:
        ValueError: there is no data folder at `data_dir`.
    """
    if not data_dir.is_dir():
        raise ValueError(missing_data_message(data_dir))
    return pool_of(item for domain in sorted(SOURCES) for item in domain_items(data_dir, domain))


def needs_pool(items: Iterable[RetrievalItem]) -> bool:
    """Whether any item's id names a source of the shared data (whose split must be checked)."""
    return any(_source(item.id) in PROJECT_SOURCES for item in items)


def refused_items(items: Iterable[RetrievalItem], pool: TrainingPool) -> list[tuple[str, str]]:
    """(id, why) of every item that is no training item (see the module's rules)."""
    refused = []
    for item in items:
        own = item.id.split("#", 1)[0]  # an open-form pair is its item
        if _source(own) in PROJECT_SOURCES and own not in pool.train_ids:
            why = (
                "a test-split item"
                if own in pool.test_ids
                else "not a train-split item of the experts' sources (a calibration or "
                "easy-tier source, or an id that names no item)"
            )
            refused.append((item.id, why))
        elif unlettered(item.question) in pool.test_questions:
            refused.append((item.id, "its question is a test-split item's"))
    return refused


def check_training_items(items: Sequence[RetrievalItem], pool: TrainingPool) -> None:
    """Raise unless every item may enter a retrieval set (see the module's rules).

    Raises:
        RetrievalSplitError: naming the first `MAX_LISTED` refused items and why, and how
            many there are.
    """
    refused = refused_items(items, pool)
    if refused:
        listed = "; ".join(f"{item_id} ({why})" for item_id, why in refused[:MAX_LISTED])
        more = f" and {len(refused) - MAX_LISTED} more" if len(refused) > MAX_LISTED else ""
        raise RetrievalSplitError(
            f"{len(refused)} of {len(items)} items are not training items and may not enter a "
            f"retrieval set: {listed}{more}. Write the set from the train split "
            "(`compllm train expert-data DOMAIN --out FILE`)"
        )


def _source(item_id: str) -> str:
    return item_id.split("/", 1)[0]


def extend(group: str, subcommands: argparse._SubParsersAction) -> None:
    """Add `retrieval` to the `compllm experts` subcommands (`cli.EXTENSIONS`): it checks items
    against the item splits, which the expert store's commands may not import.

    Raises:
        ValueError: a group other than `experts`.
    """
    if group != "experts":
        raise ValueError(f"evaluation.retrieval extends the experts group only, not {group!r}")
    from compllm_graph._help import field_help
    from compllm_graph.expert_store.commands import add_command
    from compllm_graph.expert_store.records import RetrievalSettings

    p = add_command(
        subcommands,
        "retrieval",
        "give an expert a retrieval set: the nearest of its training items go into its prompt "
        "as worked examples (checked against the item splits); or change or remove it",
        _retrieval,
    )
    p.add_argument("name", help="the expert")
    p.add_argument(
        "file",
        nargs="?",
        type=Path,
        help=".jsonl of its training items: id, question, answer, optional explanation and "
        "source (`compllm train expert-data DOMAIN --out FILE` writes one)",
    )
    p.add_argument(
        "--k",
        type=int,
        default=None,
        help=f"{field_help(RetrievalSettings, 'k')} (default {RetrievalSettings().k} for a new "
        "set; else unchanged)",
    )
    p.add_argument(
        "--floor",
        type=float,
        default=None,
        help=f"{field_help(RetrievalSettings, 'floor')} (default {RetrievalSettings().floor} "
        "for a new set; else unchanged)",
    )
    p.add_argument("--remove", action="store_true", help="remove the expert's retrieval set")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="the shared datasets' folder, to check the items' splits",
    )


def _retrieval(args: argparse.Namespace) -> dict[str, Any]:
    from compllm_graph.expert_store import ExpertStore, demo_store
    from compllm_graph.expert_store.commands import retrieval_dict, retrieval_text
    from compllm_graph.expert_store.records import check_retrievable

    if args.remove and (args.file or args.k is not None or args.floor is not None):
        raise ValueError("--remove takes no FILE, --k or --floor")
    store = ExpertStore.open(args.store) if args.store else demo_store()
    expert = store.expert(args.name)
    if not args.remove:
        check_retrievable(expert)  # before the file is read and checked
    checked = None
    if args.remove:
        expert = store.remove_retrieval(args.name)
    elif args.file is not None:
        expert, checked = _store_file(store, args)
    elif args.k is not None or args.floor is not None:
        expert = store.set_retrieval_settings(args.name, _settings(args, expert.retrieval))
    info = retrieval_dict(expert)
    text = f"{args.name}: " + (retrieval_text(info) if info else "no retrieval set")
    if checked is not None:
        text += (
            f"\nchecked against the item splits of the shared data at {args.data_dir}"
            if checked
            else f"\nnot checked: no item is of the shared data's sources and {args.data_dir} "
            "is not there to compare questions with"
        )
    return {
        "store": str(store.path),
        "expert": args.name,
        "retrieval": info,
        "split_checked": checked,
        "text": text,
    }


def _store_file(store: ExpertStore, args: argparse.Namespace) -> tuple[Expert, bool]:
    """Read, check and store `args.file`; return the expert and whether it was checked.

    The shared data must be there when an item names one of its sources; otherwise it is used
    when it is there (the question rule), and the set is stored unchecked when it is not.
    """
    from compllm_graph.expert_store.retrieval import read_retrieval_file

    settings = _settings(args, None)  # checked before the slower reading and checking
    items = read_retrieval_file(args.file)
    checked = needs_pool(items) or args.data_dir.is_dir()
    if checked:
        check_training_items(items, training_pool(args.data_dir))
    return store.set_retrieval(args.name, items, settings), checked


def _settings(args: argparse.Namespace, stored: StoredRetrieval | None) -> RetrievalSettings:
    """`--k` and `--floor` over the stored settings (the defaults for a new set)."""
    from compllm_graph.expert_store.records import RetrievalSettings

    current = stored.settings if stored is not None else RetrievalSettings()
    return RetrievalSettings(
        k=current.k if args.k is None else args.k,
        floor=current.floor if args.floor is None else args.floor,
    )


__all__ = [
    "MAX_LISTED",
    "PROJECT_SOURCES",
    "RetrievalSplitError",
    "TrainingPool",
    "check_training_items",
    "extend",
    "needs_pool",
    "pool_of",
    "refused_items",
    "training_pool",
]
