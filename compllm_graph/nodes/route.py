"""Route: send each sub-query to the expert whose data it most resembles, or to the base model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.query_graph import QueryGraph
from compllm_graph.types import Router


def make_route_node(router: Router, experts: set[str]) -> RunnableLambda:
    """Build the node that routes every sub-query of the state's query graph in one batch."""

    def route(state: Mapping[str, Any]) -> dict:
        query_graph = QueryGraph.from_dict(state["query_graph"])
        routes = list(router([sq.text for sq in query_graph]))
        if len(routes) != len(query_graph):
            raise ValueError(
                f"the router returned {len(routes)} routes for {len(query_graph)} sub-queries; "
                "it must return one Route per text, in order"
            )
        for route_ in routes:
            if route_.expert is not None and route_.expert not in experts:
                raise ValueError(
                    f"the router chose expert {route_.expert!r}, which is not among the experts "
                    f"given to create_compllm_graph ({sorted(experts)}); add it there"
                )
        writer = get_stream_writer()
        for sq, route_ in zip(query_graph, routes):
            writer(
                {
                    "event": "route",
                    "sub_query": sq.id,
                    "expert": route_.expert,
                    "score": route_.score,
                    "candidates": route_.candidates,
                }
            )
        return {"routes": [r.to_dict() for r in routes]}

    return RunnableLambda(route, name="route")
