"""Route: send each sub-query to the expert whose data it most resembles, or to the base model.

A dependent step is often too terse to route on its own text ("How far is Elvis from his house
now?"): its domain lives in the steps before it. A sub-query with parents whose own text goes to
the base model is routed once more on its ancestors' texts followed by its own, and takes that
route when it names an expert.

Routing never takes the graph down: when the router raises (a broken embedder or index, text it
cannot encode), the texts it was given go to the base model and each route's `fallback_reason`
says why. A router that breaks its contract (the wrong number of routes, an expert the graph has
no model for) is a programming error and still raises `ValueError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.query_graph import QueryGraph
from compllm_graph.types import Route, Router


def with_ancestors(query_graph: QueryGraph, sub_query_id: int) -> str:
    """The texts of `sub_query_id`'s ancestors, in id order, then its own: what it is about."""
    ids = (*query_graph.ancestors(sub_query_id), sub_query_id)
    return " ".join(query_graph[i].text for i in ids)


def route_query_graph(router: Router, query_graph: QueryGraph, experts: set[str]) -> list[Route]:
    """One route per sub-query, in order; terse dependent steps routed on their ancestors too.

    Texts the router raised on go to the base model with the reason in `fallback_reason` (a
    failed second call leaves the terse steps on the base model their own texts chose).

    Raises:
        ValueError: the router returned the wrong number of routes or an unknown expert.
    """
    routes = _routes(router, [sq.text for sq in query_graph], experts)
    terse = [
        (i, sq.id)
        for i, (sq, r) in enumerate(zip(query_graph, routes))
        if r.expert is None and r.fallback_reason is None and sq.parents
    ]
    if terse:
        texts = [with_ancestors(query_graph, sq_id) for _, sq_id in terse]
        for (i, _), route_ in zip(terse, _routes(router, texts, experts)):
            if route_.expert is not None:
                routes[i] = replace(route_, on_ancestors=True)
            elif route_.fallback_reason is not None:
                routes[i] = replace(routes[i], fallback_reason=route_.fallback_reason)
    return routes


def _routes(router: Router, texts: list[str], experts: set[str]) -> list[Route]:
    """The router's routes for `texts`, or the base model for each when the router raises."""
    try:
        routes = router(texts)
    except Exception as exc:  # a router may fail in any way; the base model can answer anything
        reason = f"the router raised {type(exc).__name__}: {exc}; the base model answers"
        return [Route(None, fallback_reason=reason) for _ in texts]
    return _checked(routes, len(texts), experts)


def _checked(routes: Sequence[Route], expected: int, experts: set[str]) -> list[Route]:
    if len(routes) != expected:
        raise ValueError(
            f"the router returned {len(routes)} routes for {expected} sub-queries; "
            "it must return one Route per text, in order"
        )
    for route_ in routes:
        if route_.expert is not None and route_.expert not in experts:
            raise ValueError(
                f"the router chose expert {route_.expert!r}, which is not among the experts "
                f"given to create_compllm_graph ({sorted(experts)}); add it there"
            )
    return list(routes)


def make_route_node(router: Router, experts: set[str]) -> RunnableLambda:
    """Build the node that routes every sub-query of the state's query graph in one batch
    (and the terse dependent steps in a second, see `route_query_graph`).

    The router's failures are added to the state's `fallback_reason` (after the decomposer's)
    and sent in the `route` events.
    """

    def route(state: Mapping[str, Any]) -> dict:
        query_graph = QueryGraph.from_dict(state["query_graph"])
        routes = route_query_graph(router, query_graph, experts)
        writer = get_stream_writer()
        for sq, route_ in zip(query_graph, routes):
            writer(
                {
                    "event": "route",
                    "sub_query": sq.id,
                    "expert": route_.expert,
                    "score": route_.score,
                    "candidates": route_.candidates,
                    "on_ancestors": route_.on_ancestors,
                    "fallback_reason": route_.fallback_reason,
                }
            )
        update: dict[str, Any] = {"routes": [r.to_dict() for r in routes]}
        failures = [r.fallback_reason for r in routes if r.fallback_reason]
        if failures:
            reasons = [state.get("fallback_reason"), *dict.fromkeys(failures)]
            update["fallback_reason"] = "; ".join(r for r in reasons if r)
        return update

    return RunnableLambda(route, name="route")
