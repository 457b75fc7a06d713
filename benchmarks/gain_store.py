"""The stores of Qwen2.5-Coder-0.5B's pipeline cells, pinned, so that a cell answers again with
the store it was measured with whatever the demo store becomes.

- `STORE` (the gain-routed cells): the demo store as it is built now, with the pack's
  calibration and its gain-only candidate, the 1.5B model (which must be fetched). The
  calibration (`calibration.json` in the pack) is the one measured by

      compllm experts add big --store STORE --kind model --model qwen2.5-coder-1.5b-instruct \\
          --gain-only --data general.txt --system-prompt "$BASE_SYSTEM_PROMPT"
      compllm experts calibrate --store STORE --model qwen2.5-coder-0.5b-instruct \\
          --program-expert --threads 2 --items 30 --json

  whose whole output is `CALIBRATION`, committed beside its report.
- `ALONE_STORE` (`compllm-gain-alone`): that store without the candidate, as the demo store is
  built where the 1.5B model is not fetched (the 0.5B model and its experts alone).
- `SIMILARITY_STORE` (every other pipeline cell of the model): the demo store as it was before
  it carried the calibration (`build_demo_store(..., calibrated=False)`), the adapters routed
  by similarity alone.

All three are built under `benchmarks/answers/stores/` (not in the repository: they copy the pack's
adapters) on first use. Only `ensure` needs the [router] extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compllm_graph.expert_store import ExpertStore

ROOT = Path(__file__).resolve().parent
STORES = ROOT / "answers" / "stores"
STORE = STORES / "qwen2.5-coder-0.5b-instruct-gain"
ALONE_STORE = STORES / "qwen2.5-coder-0.5b-instruct-gain-alone"
SIMILARITY_STORE = STORES / "qwen2.5-coder-0.5b-instruct-similarity"
CALIBRATION = ROOT / "results" / "gain-calibration-2026-12-07" / "calibration_qwen.json"
"""The calibrate command's `--json` output, from which the pack's calibration was taken."""
MODEL = "qwen2.5-coder-0.5b-instruct"
CANDIDATE, CANDIDATE_MODEL = "big", "qwen2.5-coder-1.5b-instruct"


def ensure(
    store: Path = STORE,
    *,
    calibrated: bool = True,
    candidate: bool = True,
    embedder: str = "minilm",
) -> ExpertStore:
    """A cell's store: built from the installed pack when missing or built otherwise.

    Args:
        store: Where it is built.
        calibrated: The gain-routed store (`STORE`); False: the similarity one.
        candidate: With the calibrated store, keep the candidate; False: `ALONE_STORE`'s.
        embedder: The embedder (the demo store's, `DEMO_EMBEDDER`).

    Raises:
        RuntimeError: a calibrated store without the candidate (its model is not fetched).
        PackError: the pack is not installed or fails its checks.
    """
    # Imported here: the tables read the stores' paths without the [router] extra.
    from compllm_graph.expert_store.demo import build_demo_store

    built = build_demo_store(store, base=MODEL, calibrated=calibrated, embedder=embedder)
    has_candidate = CANDIDATE in {e.name for e in built.experts()}
    if has_candidate and not candidate:
        built.remove_expert(CANDIDATE)  # its measurements leave the calibration with it
    elif calibrated and candidate and not has_candidate:
        raise RuntimeError(
            f"the gain-routed cells need the candidate {CANDIDATE!r}: "
            f"`compllm models fetch {CANDIDATE_MODEL}`, then run them again"
        )
    return built
