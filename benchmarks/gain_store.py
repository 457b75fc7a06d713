"""The stores of Qwen2.5-Coder-0.5B's pipeline cells, pinned, so that a cell answers again with
the store it was measured with whatever the demo store becomes.

- `WRITER_STORE` (`compllm-gain-writer`): the demo store as it is built now, with the pack's
  calibration and both its gain-only candidates on the 1.5B model (which must be fetched):
  `big`, the model answering, and `big-program`, the model writing programs for the sandbox.
  The calibration (`calibration.json` in the pack) is the one measured by

      compllm experts add big --store STORE --kind model --model qwen2.5-coder-1.5b-instruct \\
          --gain-only --data general.txt --system-prompt "$BASE_SYSTEM_PROMPT"
      compllm experts add big-program --store STORE --kind program \\
          --model qwen2.5-coder-1.5b-instruct --gain-only --data program.txt \\
          --system-prompt "$BASE_SYSTEM_PROMPT"
      compllm experts calibrate --store STORE --model qwen2.5-coder-0.5b-instruct \\
          --program-expert --threads 2 --items 30 --json

  whose whole output is `WRITER_CALIBRATION`, committed beside its report.
- `STORE` (the first gain-routed cells, `compllm-gain` and its Table 7 rows): the demo store
  with `big` alone, carrying the first calibration (`CALIBRATION`, measured the same way
  without `big-program`).
- `ALONE_STORE` (`compllm-gain-alone`): that store without the candidate, as the demo store was
  built where the 1.5B model is not fetched (the 0.5B model and its experts alone).
- `SIMILARITY_STORE` (every other pipeline cell of the model): the demo store as it was before
  it carried the calibration (`build_demo_store(..., calibrated=False)`), the adapters routed
  by similarity alone.

All four are built under `benchmarks/answers/stores/` (not in the repository: they copy the
pack's adapters) on first use. Only `ensure` needs the [router] extra.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compllm_graph.expert_store import ExpertStore

ROOT = Path(__file__).resolve().parent
STORES = ROOT / "answers" / "stores"
STORE = STORES / "qwen2.5-coder-0.5b-instruct-gain"
ALONE_STORE = STORES / "qwen2.5-coder-0.5b-instruct-gain-alone"
WRITER_STORE = STORES / "qwen2.5-coder-0.5b-instruct-gain-writer"
SIMILARITY_STORE = STORES / "qwen2.5-coder-0.5b-instruct-similarity"
CALIBRATION = ROOT / "results" / "gain-calibration-2026-12-07" / "calibration_qwen.json"
"""The first calibration (`big` alone): the calibrate command's `--json` output."""
WRITER_CALIBRATION = (
    ROOT / "results" / "gain-calibration-writer-2026-12-07" / "calibration_qwen.json"
)
"""The calibration with both candidates, from which the pack's calibration was taken."""
MODEL = "qwen2.5-coder-0.5b-instruct"
CANDIDATE, CANDIDATE_MODEL = "big", "qwen2.5-coder-1.5b-instruct"
WRITER = "big-program"
"""The second candidate: the 1.5B model writing programs (on `CANDIDATE_MODEL` too)."""
KEPT = {STORE: (CANDIDATE,), ALONE_STORE: (), WRITER_STORE: (CANDIDATE, WRITER)}
"""The candidates each calibrated store keeps."""
PINNED = {STORE: CALIBRATION, ALONE_STORE: CALIBRATION, WRITER_STORE: WRITER_CALIBRATION}
"""The measurement each calibrated store carries."""


def ensure(
    store: Path = WRITER_STORE,
    *,
    calibrated: bool = True,
    embedder: str = "minilm",
) -> ExpertStore:
    """A cell's store: built from the installed pack when missing or built otherwise.

    Args:
        store: Where it is built: one of `KEPT`'s stores (calibrated), or any other (with
            `calibrated` False: the similarity store).
        calibrated: The gain-routed store at `store`; False: the similarity one.
        embedder: The embedder (the demo store's, `DEMO_EMBEDDER`).

    Raises:
        RuntimeError: a calibrated store without a candidate it keeps (its model is not
            fetched).
        PackError: the pack is not installed or fails its checks.
    """
    # Imported here: the tables read the stores' paths without the [router] extra.
    from compllm_graph.expert_store.demo import build_demo_store

    built = build_demo_store(store, base=MODEL, calibrated=calibrated, embedder=embedder)
    if calibrated:
        _pin(built, KEPT[store], PINNED[store])
    return built


def _pin(built: ExpertStore, kept: Collection[str], measured: Path) -> None:
    """Keep only the candidates `kept` in `built`, and the calibration `measured` (less the
    others), written only when it differs (a store is built once)."""
    from compllm_graph.expert_store.calibration import Calibration
    from compllm_graph.expert_store.demo import shipped_calibration

    shipped = shipped_calibration(MODEL)
    candidates = set(shipped.candidates) if shipped is not None else set()
    present = {e.name for e in built.experts()}
    missing = sorted(set(kept) - present)
    if missing:
        raise RuntimeError(
            f"the gain-routed cells of {built.path.name} need the candidates {missing}: "
            f"`compllm models fetch {CANDIDATE_MODEL}`, then run them again"
        )
    calibration = Calibration.from_dict(json.loads(measured.read_text())["calibration"])
    for name in sorted(candidates - set(kept)):
        if name in present:
            built.remove_expert(name)
        calibration = calibration.without(name)
    if built.calibration != calibration:
        built.set_calibration(calibration)
