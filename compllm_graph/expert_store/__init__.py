"""Expert store and router: experts' data centroids in FAISS, adapters, calibrated thresholds,
measured gains over the base model that routing weighs (`calibration`), and each expert's
retrieval set of its own training items (`retrieval`).

Needs the [router] extra; every module below checks for it through this package.
"""

from compllm_graph._extras import requires

with requires("router"):
    import faiss  # noqa: F401
    import numpy  # noqa: F401

from compllm_graph.expert_store.calibration import Calibration, GainRule
from compllm_graph.expert_store.demo import default_store_path, demo_store
from compllm_graph.expert_store.llm_router import DomainNamingRouter
from compllm_graph.expert_store.router import ExpertRouter, ThresholdFit
from compllm_graph.expert_store.store import (
    CorruptStoreError,
    Expert,
    ExpertKind,
    ExpertKindError,
    ExpertStore,
    RetrievalItem,
    RetrievalSettings,
    StoreError,
)

__all__ = [
    "Calibration",
    "CorruptStoreError",
    "DomainNamingRouter",
    "Expert",
    "ExpertKind",
    "ExpertKindError",
    "ExpertRouter",
    "ExpertStore",
    "GainRule",
    "RetrievalItem",
    "RetrievalSettings",
    "StoreError",
    "ThresholdFit",
    "default_store_path",
    "demo_store",
]
