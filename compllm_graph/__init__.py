"""compllm-graph: Comp-LLM (decompose, route, execute, aggregate) as a LangGraph graph."""

from compllm_graph.errors import CompLLMError
from compllm_graph.graph import create_compllm_graph
from compllm_graph.nodes.execute import ExpertPolicy
from compllm_graph.query_graph import DecompositionError, QueryGraph, SubQuery, parse_decomposition
from compllm_graph.scheduling import DeviceLimits
from compllm_graph.types import BASE, Route, Scheduler

__all__ = [
    "BASE",
    "CompLLMError",
    "DecompositionError",
    "DeviceLimits",
    "ExpertPolicy",
    "QueryGraph",
    "Route",
    "Scheduler",
    "SubQuery",
    "create_compllm_graph",
    "parse_decomposition",
]
