"""The store of the gain-routed Comp-LLM cells: Qwen2.5-Coder-0.5B's demo store, the 1.5B model as
a gain-only candidate, and the calibration measured on it (committed beside its report).

Built once under `benchmarks/answers/stores/` (not in the repository: it copies the demo
store's adapters) from the committed measurement, so that the cells rerun without calibrating
again (about 40 minutes on the 2-core CPU). Measured with:

    compllm experts add big --store STORE --kind model --model qwen2.5-coder-1.5b-instruct \\
        --gain-only --data general.txt --system-prompt "$BASE_SYSTEM_PROMPT"
    compllm experts calibrate --store STORE --model qwen2.5-coder-0.5b-instruct \\
        --program-expert --threads 2 --items 30 --json
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from compllm_graph.defaults import BASE_SYSTEM_PROMPT
from compllm_graph.expert_store import ExpertStore, demo_store
from compllm_graph.expert_store.calibration import Calibration

ROOT = Path(__file__).resolve().parent
STORE = ROOT / "answers" / "stores" / "qwen2.5-coder-0.5b-instruct-gain"
CALIBRATION = ROOT / "results" / "gain-calibration-2026-12-07" / "calibration_qwen.json"
"""The calibrate command's `--json` output on the store built here."""
MODEL = "qwen2.5-coder-0.5b-instruct"
CANDIDATE, CANDIDATE_MODEL = "big", "qwen2.5-coder-1.5b-instruct"
CANDIDATE_TEXTS = [
    "A question in any domain: science, medicine, arithmetic, general knowledge."
]  # kept, not indexed: a gain-only expert routes nothing by similarity


def ensure(
    store: Path = STORE, calibration: Path = CALIBRATION, source: ExpertStore | None = None
) -> ExpertStore:
    """The gain-routed store, built from the demo store and the measurement when missing.

    Args:
        store: Where it is built.
        calibration: The calibrate command's `--json` output.
        source: The store copied (None: Qwen2.5-Coder-0.5B's demo store).

    Raises:
        FileNotFoundError: the measurement is not there.
    """
    if store.is_dir():
        opened = ExpertStore.open(store)
        if opened.calibration is not None:
            return opened
        shutil.rmtree(store)  # a build cut short
    measured = json.loads(calibration.read_text())["calibration"]
    store.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree((source or demo_store(MODEL)).path, store)
    built = ExpertStore.open(store)
    built.add_expert(
        CANDIDATE,
        CANDIDATE_TEXTS,
        kind="model",
        model=CANDIDATE_MODEL,
        gain_only=True,
        system_prompt=BASE_SYSTEM_PROMPT,  # asked as the graph asks the base model
        description="Qwen2.5-Coder-1.5B: three times the base model's size",
    )
    built.set_calibration(Calibration.from_dict(measured))
    return built
