import asyncio
import threading
import time
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from pydantic import Field

from compllm_graph import DeviceLimits, ExpertPolicy, QueryGraph, Route, create_compllm_graph
from compllm_graph.nodes.execute import as_question, short_answer, stated_answer
from tests.fakes import FakeChat, decomposer, keyword_router

THREE_INDEPENDENT = "<q>chem one</q><q>bio two</q><q>math three</q><dep></dep>"
ROUTER = keyword_router({"chem": "chemistry", "bio": "biology", "math": "mathematics"})


def experts(delay=0.0, **kwargs):
    return {
        name: FakeChat(label=name, delay=delay, **kwargs)
        for name in ("chemistry", "biology", "mathematics")
    }


class MeetingChat(FakeChat):
    """Replies only once `meeting.parties` calls are in flight at once (a barrier, which breaks
    after a few seconds, failing the call, when they never are)."""

    meeting: Any = None

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        self.meeting.wait(5)
        return self._answer(messages)

    async def _agenerate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        await asyncio.to_thread(self.meeting.wait, 5)
        return self._answer(messages)


def meeting_experts():
    """Three experts that each answer only while all three are answering together."""
    meeting = threading.Barrier(3)
    return {
        name: MeetingChat(label=name, meeting=meeting)
        for name in ("chemistry", "biology", "mathematics")
    }


def build(decomposition=THREE_INDEPENDENT, experts_=None, base=None, **kwargs):
    return create_compllm_graph(
        decomposer=decomposer(decomposition),
        experts=experts_ if experts_ is not None else experts(),
        router=kwargs.pop("router", ROUTER),
        base=base or FakeChat(label="base"),
        **kwargs,
    ).compile()


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
async def test_three_independent_experts_run_concurrently(scheduler):
    graph = build(experts_=meeting_experts(), scheduler=scheduler)
    out = await graph.ainvoke({"query": "three things?"})
    # each expert answers only while the other two are answering too
    assert [a["expert"] for a in out["sub_answers"]] == ["chemistry", "biology", "mathematics"]
    assert [r["expert"] for r in out["routes"]] == ["chemistry", "biology", "mathematics"]
    assert out["fallback_reason"] is None


def test_sync_invoke_runs_concurrently_too():
    graph = build(experts_=meeting_experts())
    out = graph.invoke({"query": "three things?"})
    assert [a["expert"] for a in out["sub_answers"]] == ["chemistry", "biology", "mathematics"]
    assert out["answer"].startswith("First part: chemistry answer to: chem one\n")
    assert out["answer"].startswith("First part: chemistry answer to: chem one\n")


async def test_context_passing_and_aggregation_prompt():
    base = FakeChat(label="base")
    graph = build("<q>chem who</q><q>bio of #1</q><dep>1->2</dep>", base=base)
    out = await graph.ainvoke({"query": "the whole question?"})
    first, second = out["sub_answers"]
    # the question is the sub-query's own, #1 filled in; the context goes only to the expert
    assert second["question"] == "What is the bio of chemistry answer to: chem who?"
    # the aggregator sees the original query and every part's answer, the earlier one too
    (prompt,) = base.calls
    assert prompt.endswith("repeating the facts above: the whole question?")
    assert second["answer"] in prompt and f"Answer: {first['answer']}\n" in prompt


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("place of birth of #1", "What is the place of birth of #1?"),
        ("the chemical symbol of #1", "What is the chemical symbol of #1?"),
        ("The capital of France", "What is the capital of France?"),
        ("a currency of #2", "What is a currency of #2?"),
        ("theatre of #1", "What is the theatre of #1?"),
        (" capital of France. ", "What is the capital of France?"),
        ("#1 educated at what?", "#1 educated at what?"),
        ("Who is the spouse of #1", "Who is the spouse of #1"),
        ("chem who", "chem who"),
        (
            "country of citizenship of the founder of #2",
            "What is the country of citizenship of the founder of #2?",
        ),
        (
            "The term poikilokaryosis refers to Options: (A) Loss of polarity; (B) None.",
            "The term poikilokaryosis refers to Options: (A) Loss of polarity; (B) None.",
        ),
        (
            "Jeff is 10 years older than his sister. How old is the sister of Jeff",
            "Jeff is 10 years older than his sister. How old is the sister of Jeff",
        ),
    ],
)
def test_relation_phrases_reach_experts_as_questions(text, question):
    assert as_question(text) == question


class WaitingChat(FakeChat):
    """Replies once `other` is set or `patience` seconds pass; `met` says which, per call."""

    other: Any = None
    patience: float = 0.5
    met: list[bool] = Field(default_factory=list)

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        self.met.append(self.other.wait(self.patience))
        return self._answer(messages)

    async def _agenerate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.met.append(await asyncio.to_thread(self.other.wait, self.patience))
        return self._answer(messages)


class StartSignalChat(FakeChat):
    """Sets `started` as each call begins."""

    started: Any = None

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        self.started.set()
        return self._answer(messages)

    async def _agenerate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.started.set()
        return self._answer(messages)


async def test_eager_beats_waves_on_an_uneven_dag():
    # 1 (long) -> 3 ; 2 (fast) -> 4: eager starts 4 as soon as 2 ends, while 1 still runs;
    # waves waits for 1. Sub-query 1 runs until 4 starts, or 0.5 s.
    text = "<q>long a</q><q>fast b</q><q>fast c</q><q>last d</q><dep>1->3, 2->4</dep>"
    router = keyword_router({"long": "long", "fast": "fast", "last": "last"})
    overlapped, elapsed = {}, {}
    for scheduler in ("eager", "waves"):
        fourth_started = threading.Event()
        first = WaitingChat(label="long", other=fourth_started)
        fourth = StartSignalChat(label="last", started=fourth_started)
        pool = {"long": first, "fast": FakeChat(label="fast"), "last": fourth}
        graph = build(text, pool, router=router, scheduler=scheduler)
        started = time.perf_counter()
        await graph.ainvoke({"query": "q"})
        elapsed[scheduler] = time.perf_counter() - started
        overlapped[scheduler] = first.met
    assert overlapped == {"eager": [True], "waves": [False]}, "did 4 start while 1 ran?"
    assert elapsed["eager"] < elapsed["waves"], elapsed


async def test_capacity_one_on_a_shared_device_serialises():
    limits = DeviceLimits(
        {"gpu0": 1}, {"chemistry": "gpu0", "biology": "gpu0", "mathematics": "gpu0"}
    )
    graph = build(experts_=experts(delay=0.15), device_limits=limits)
    started = time.perf_counter()
    await graph.ainvoke({"query": "q"})
    assert time.perf_counter() - started >= 0.45


async def test_critical_path_runs_first_when_capacity_is_short():
    # 1 is a lone leaf; 2 -> 3 is a longer chain, so 2 must get the single slot before 1.
    text = "<q>chem lone</q><q>chem chain start</q><q>bio chain end #2</q><dep>2->3</dep>"
    pool = experts(delay=0.05)
    limits = DeviceLimits({"gpu0": 1}, {"chemistry": "gpu0"})
    await build(text, pool, device_limits=limits).ainvoke({"query": "q"})
    assert pool["chemistry"].calls == ["chem chain start", "chem lone"]


async def test_failing_expert_retries_then_falls_back_to_base():
    pool = experts(fail_times=5)
    graph = build(experts_=pool, expert_policy=ExpertPolicy(retries=2))
    out = await graph.ainvoke({"query": "q"})
    chem = out["sub_answers"][0]
    assert chem["expert"] is None and chem["answer"].startswith("base answer")
    assert chem["attempts"] == 4  # three expert attempts, then base
    reason = out["routes"][0]["fallback_reason"]
    assert "chemistry failed 3 time(s): RuntimeError: chemistry is down" in reason
    assert out["routes"][0]["expert"] == "chemistry"


async def test_hanging_expert_times_out_and_falls_back():
    pool = experts()
    pool["biology"] = FakeChat(label="biology", delay=30)
    graph = build(experts_=pool, expert_policy={"biology": ExpertPolicy(timeout=0.2, retries=0)})
    started = time.perf_counter()
    out = await graph.ainvoke({"query": "q"})
    assert time.perf_counter() - started < 2
    assert "timed out after 0.2 s" in out["routes"][1]["fallback_reason"]
    assert out["sub_answers"][1]["expert"] is None


async def test_malformed_decomposition_falls_back_to_the_whole_query():
    base = FakeChat(label="base")
    out = await build("<q>a</q><q>b</q><dep>1->2, 2->1</dep>", base=base).ainvoke(
        {"query": "What is 2+2?"}
    )
    assert "cycle" in out["fallback_reason"]
    assert QueryGraph.from_dict(out["query_graph"]) == QueryGraph.single("What is 2+2?")
    assert out["answer"] == "base answer to: What is 2+2?"
    assert base.calls == ["What is 2+2?"]  # no aggregation call for a single whole-query node


def test_messages_input_appends_the_answer_and_serves_multi_turn_threads():
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem x</q>"),
        experts=experts(),
        router=ROUTER,
        base=FakeChat(label="base"),
    ).compile(checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}
    out = graph.invoke({"messages": [HumanMessage("first?")]}, config)
    assert out["query"] == "first?"
    assert isinstance(out["messages"][-1], AIMessage)
    assert out["messages"][-1].content == out["answer"]
    out = graph.invoke({"messages": [HumanMessage("second?")]}, config)
    assert out["query"] == "second?" and len(out["messages"]) == 4
    snapshot = graph.get_state(config)
    assert snapshot.values["query_graph"] == out["query_graph"]


def test_query_input_does_not_touch_messages():
    out = build().invoke({"query": "q"})
    assert "messages" not in out or not out["messages"]


def test_compiled_graph_works_as_a_node_inside_another_graph():
    inner = build()
    outer = StateGraph(MessagesState)
    outer.add_node("experts", inner)
    outer.add_node("polish", lambda s: {"messages": [AIMessage(s["messages"][-1].content.upper())]})
    outer.add_edge(START, "experts")
    outer.add_edge("experts", "polish")
    out = outer.compile().invoke({"messages": [HumanMessage("what?")]})
    assert out["messages"][-1].content.startswith("FIRST PART: CHEMISTRY ANSWER TO")


def test_stream_custom_events_cover_every_stage():
    events = [e["event"] for e in build().stream({"query": "q"}, stream_mode="custom")]
    assert events[0] == "decomposition"
    assert events[1:4] == ["route"] * 3
    assert events.count("sub_query_start") == 3 and events.count("sub_query_end") == 3
    assert events[-1] == "answer"


def test_missing_question_is_a_clear_error():
    with pytest.raises(ValueError, match="invoke the graph with"):
        build().invoke({"messages": []})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": None}, "base must be a LangChain chat model"),
        ({"experts": {"chemistry": "not a model"}}, "experts\\['chemistry'\\] must be"),
        ({"scheduler": "fastest"}, "scheduler must be one of"),
        ({"device_limits": DeviceLimits({"gpu": 1}, {"physics": "gpu"})}, "unknown experts"),
        ({"expert_policy": {"physics": ExpertPolicy()}}, "unknown experts"),
    ],
)
def test_build_time_errors_say_how_to_fix_the_call(kwargs, message):
    args = {
        "decomposer": decomposer("<q>a</q>"),
        "experts": experts(),
        "router": ROUTER,
        "base": FakeChat(label="base"),
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        create_compllm_graph(**args)


def test_router_with_unknown_expert_fails_at_build_time():
    class StoreRouter:
        experts = ("chemistry", "physics")

        def __call__(self, texts):
            return [Route(None) for _ in texts]

    with pytest.raises(ValueError, match=r"route to \['physics'\]"):
        create_compllm_graph(
            decomposer=decomposer("<q>a</q>"),
            experts=experts(),
            router=StoreRouter(),
            base=FakeChat(),
        )


def test_router_returning_unknown_expert_at_run_time_is_reported():
    with pytest.raises(ValueError, match="not among the experts"):
        build(router=lambda texts: [Route("physics", 0.9) for _ in texts]).invoke({"query": "q"})


def test_device_limits_reject_unknown_devices():
    with pytest.raises(ValueError, match="has no capacity"):
        DeviceLimits({"gpu0": 1}, {"chemistry": "gpu1"})
    with pytest.raises(ValueError, match="at least 1"):
        DeviceLimits({"gpu0": 0})


async def test_concurrent_queries_share_device_capacity():
    limits = DeviceLimits({"gpu0": 2}, default_device="gpu0")
    pool = experts(delay=0.1)
    graph = build(experts_=pool, device_limits=limits)
    started = time.perf_counter()
    await asyncio.gather(*(graph.ainvoke({"query": f"q{i}"}) for i in range(2)))
    # six 0.1 s sub-queries (plus six base-free aggregations) through two slots: >= 0.3 s
    assert time.perf_counter() - started >= 0.3


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
def test_every_sub_query_is_its_own_node_in_the_subgraph_stream(scheduler):
    seen = set()
    for namespace, chunk in build(scheduler=scheduler).stream(
        {"query": "q"}, stream_mode="updates", subgraphs=True
    ):
        if namespace:
            seen.update(chunk)
    assert {"sub_query_1", "sub_query_2", "sub_query_3"} <= seen


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
async def test_resume_reuses_checkpointed_sub_answers(scheduler):
    chemistry, biology = FakeChat(label="chemistry"), FakeChat(label="biology")
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>chem b</q><q>bio c #1 #2</q>"),
        experts={"chemistry": chemistry, "biology": biology},
        router=ROUTER,
        base=FakeChat(label="base"),
        scheduler=scheduler,
    ).compile(checkpointer=InMemorySaver(), interrupt_before=["aggregate"])
    config: RunnableConfig = {"configurable": {"thread_id": scheduler}}
    await graph.ainvoke({"query": "q"}, config)  # stops with every sub-query answered
    assert (len(chemistry.calls), len(biology.calls)) == (2, 1)
    out = await graph.ainvoke(None, config)
    assert (len(chemistry.calls), len(biology.calls)) == (2, 1), "finished work must not rerun"
    assert out["answer"]


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
async def test_an_expert_and_base_both_failing_still_answers_the_rest(scheduler):
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>bio c</q>"),
        experts={
            "chemistry": FakeChat(label="chemistry", reply=lambda m: "CHEM"),
            "biology": FakeChat(label="biology", fail_times=5),
        },
        router=ROUTER,
        base=FakeChat(label="base", fail_times=5, reply=lambda m: "JOINED"),
        aggregator=FakeChat(label="aggregator", reply=lambda m: "CHEM, and that is all"),
        expert_policy=ExpertPolicy(retries=0),
        scheduler=scheduler,
    ).compile()
    out = await graph.ainvoke({"query": "q"})
    failed = out["sub_answers"][1]
    assert failed["answer"] == "" and "base failed" in failed["fallback_reason"]
    assert out["answer"].startswith("CHEM, and that is all")
    assert "Could not answer: [2] bio c" in out["answer"]
    assert "sub-query 2:" in out["fallback_reason"]


async def test_a_raising_decomposer_falls_back_to_the_whole_query():
    broken = FakeChat(label="decomposer", fail_times=1)
    graph = create_compllm_graph(
        decomposer=broken, experts={}, router=lambda texts: [Route(None)], base=FakeChat()
    ).compile()
    out = await graph.ainvoke({"query": "What is water?"})
    assert [sq["text"] for sq in out["query_graph"]["sub_queries"]] == ["What is water?"]
    assert "the decomposer raised RuntimeError" in out["fallback_reason"] and out["answer"]


def test_a_raising_aggregator_falls_back_to_the_parts_answers_in_order():
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>bio c</q>"),
        experts={
            "chemistry": FakeChat(label="chemistry", reply=lambda m: "First."),
            "biology": FakeChat(label="biology", reply=lambda m: "Second."),
        },
        router=ROUTER,
        base=FakeChat(),
        aggregator=FakeChat(label="aggregator", fail_times=1),
    ).compile()
    out = graph.invoke({"query": "q"})
    assert out["answer"] == "First part: First.\nSecond part: Second."
    assert "the aggregator raised RuntimeError" in out["fallback_reason"]
    assert out["aggregation"] == "replaced"


def test_a_part_as_long_as_its_long_query_is_kept_but_a_runaway_one_is_not():
    # Composed multiple-choice parts with long options run past 500 characters; the cap on a
    # sub-query grows with the query, so such a split is answered part by part.
    first, second = "chem " + "option " * 80 + "?", "bio " + "option " * 60 + "?"
    out = build(f"<q>{first}</q><q>{second}</q><dep></dep>").invoke(
        {"query": f"{first} Also, {second}"}
    )
    assert [sq["text"] for sq in out["query_graph"]["sub_queries"]] == [first, second]
    assert [a["question"] for a in out["sub_answers"]] == [first, second]
    runaway = build(f"<q>{first * 3}</q><dep></dep>").invoke({"query": first})
    assert "characters long" in runaway["fallback_reason"]


def test_a_huge_malformed_decomposition_is_quoted_briefly():
    graph = create_compllm_graph(
        decomposer=decomposer("x" * 1_000_000),
        experts={},
        router=lambda t: [Route(None)],
        base=FakeChat(),
    ).compile()
    reason = graph.invoke({"query": "q"})["fallback_reason"]
    assert len(reason) < 600 and "1,000,000 characters" in reason


def test_prompts_grow_with_the_parents_not_the_depth():
    # 12 sub-queries, each needing the two before it: nesting whole prompts made this exponential.
    texts = [f"step {i:02d}" for i in range(1, 13)]
    deps = ", ".join(f"{j}->{i}" for i in range(2, 13) for j in (i - 2, i - 1) if j >= 1)
    expert = FakeChat(label="e", reply=lambda m: "ok")
    graph = create_compllm_graph(
        decomposer=decomposer("".join(f"<q>{t}</q>" for t in texts) + f"<dep>{deps}</dep>"),
        experts={"e": expert},
        router=lambda qs: [Route("e", 1.0) for _ in qs],
        base=FakeChat(),
    ).compile()
    out = graph.invoke({"query": "q"})
    longest = max(len(c) for c in expert.calls)
    assert longest < 4 * max(len(a["question"]) for a in out["sub_answers"]) + 120
    assert all(a["question"] == t for a, t in zip(out["sub_answers"], texts))
    assert expert.calls[-1].startswith("Answers to earlier questions:\nQ: step 10\nA: ok\n")


class BlockingForever(FakeChat):
    """A model with only a blocking `_generate`, hung until the test releases it."""

    release: Any = None

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        self.release.wait()
        return super()._generate(messages, stop, run_manager, **kw)

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        # LangChain's own default: the blocking `_generate` in the loop's executor thread.
        return await BaseChatModel._agenerate(self, *args, **kwargs)


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
def test_a_hung_blocking_model_does_not_hold_invoke_past_its_timeout(scheduler):
    release = threading.Event()
    hung = BlockingForever(label="hung", release=release)
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q>"),
        experts={"chemistry": hung},
        router=lambda texts: [Route("chemistry", 1.0) for _ in texts],
        base=FakeChat(label="base", reply=lambda m: "BASE"),
        expert_policy=ExpertPolicy(timeout=0.2, retries=0),
        scheduler=scheduler,
    ).compile()
    started = time.perf_counter()
    try:
        out = graph.invoke({"query": "q"})
    finally:
        release.set()
    assert time.perf_counter() - started < 4.0
    assert out["answer"] == "BASE" and "timed out" in out["routes"][0]["fallback_reason"]


@pytest.mark.parametrize(
    ("answer", "short"),
    [
        ("The atomic number of oxygen is 8.", "8"),
        ("The capital of France is Paris. It lies on the Seine.", "Paris"),
        ("The chemical formula of glucose is C6H12O6.", "C6H12O6"),
        ("Paris", "Paris"),
        ("It has 206 bones in total, counting all of the small bones of the ear and hands", "206"),
        (
            "To solve this, break it down.\n48 / 2 = 24 in May.\n48 + 24 = 72.\nThe answer is 72.",
            "72",
        ),
        ("The answer is (B) They both grow.", "(B) They both grow"),
    ],
)
def test_references_take_the_short_answer(answer, short):
    assert short_answer(answer) == short


LONG_OPTION = (
    "(D) no two electrons can pair up if there is an empty orbital at the same energy level"
)


def test_the_stated_answer_keeps_a_long_option_whole():
    answer = f"Hund's rule.\nThe answer is {LONG_OPTION}."
    assert stated_answer(answer) == LONG_OPTION
    assert len(short_answer(answer)) < len(LONG_OPTION)  # a reference gets the short form
    assert stated_answer("The chemical formula of glucose is C6H12O6.") == "C6H12O6"
    assert stated_answer("The answer is (C6H12O6)") == "C6H12O6"
    assert stated_answer("The answer is (B).") == "(B)"


def test_the_full_answer_stays_in_the_context_block():
    base = FakeChat(reply=lambda m: "The atomic number of oxygen is 8.")
    graph = create_compllm_graph(
        decomposer=decomposer("<q>atomic number of oxygen</q><q>#1 multiplied by 3</q>"),
        experts={},
        router=lambda texts: [Route(None) for _ in texts],
        base=base,
    ).compile()
    second = graph.invoke({"query": "q"})["sub_answers"][1]
    assert second["question"] == "8 multiplied by 3"
    assert "A: The atomic number of oxygen is 8.\n\nQuestion: 8 multiplied by 3" in base.calls[1]


def test_a_reducer_that_leaves_out_a_parts_answer_gives_way_to_the_parts():
    graph = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>bio of #1</q><dep>1->2</dep>"),
        experts={
            "chemistry": FakeChat(label="chemistry", reply=lambda m: "The answer is 26."),
            "biology": FakeChat(label="biology", reply=lambda m: "The answer is (B) Iron."),
        },
        router=ROUTER,
        base=FakeChat(),
        aggregator=FakeChat(label="aggregator", reply=lambda m: "It is (B) Iron."),
        check_aggregate=True,
    ).compile()
    out = graph.invoke({"query": "q"})
    assert out["answer"] == "First part: The answer is 26.\nSecond part: The answer is (B) Iron."
    assert "left out the answer of sub-query 1" in out["fallback_reason"]
    kept = create_compllm_graph(
        decomposer=decomposer("<q>chem a</q><q>bio c</q>"),
        experts={
            "chemistry": FakeChat(reply=lambda m: "Neon."),
            "biology": FakeChat(label="biology"),
        },
        router=ROUTER,
        base=FakeChat(),
        aggregator=FakeChat(reply=lambda m: "Neon, and biology answer to: bio c"),
        check_aggregate=True,
    ).compile()
    assert kept.invoke({"query": "q"})["answer"] == "Neon, and biology answer to: bio c"


def recording_router() -> tuple[list[list[str]], Any]:
    calls: list[list[str]] = []

    def router(texts: list[str]) -> list[Route]:
        calls.append(texts)
        return ROUTER(texts)

    return calls, router


def test_a_terse_dependent_step_is_routed_on_its_ancestors_texts():
    # steps 2 and 3 alone name no domain, their ancestors do; step 4 has no parents and stays
    # with the base model however terse it is
    calls, router = recording_router()
    graph = build(
        "<q>math: Elvis drives 5 hours at 60 mph.</q><q>How far west?</q><q>How far from home?</q>"
        "<q>And then?</q><dep>1->2</dep><dep>2->3</dep>",
        router=router,
    )
    out = graph.invoke({"query": "q"})
    experts_ = [s["expert"] for s in out["sub_answers"]]
    assert experts_ == ["mathematics", "mathematics", "mathematics", None]
    assert [r["on_ancestors"] for r in out["routes"]] == [False, True, True, False]
    assert calls[1] == [
        "math: Elvis drives 5 hours at 60 mph. How far west?",
        "math: Elvis drives 5 hours at 60 mph. How far west? How far from home?",
    ]
    events = [
        e for e in graph.stream({"query": "q"}, stream_mode="custom") if e["event"] == "route"
    ]
    assert [e["on_ancestors"] for e in events] == [False, True, True, False]


def test_a_dependent_step_that_routes_on_its_own_text_keeps_its_route():
    # a bridge: step 2 names its own domain, another than its parent's; no second call
    calls, router = recording_router()
    out = build(
        "<q>math: 3 + 3</q><q>chem: element number #1</q><dep>1->2</dep>", router=router
    ).invoke({"query": "q"})
    assert [s["expert"] for s in out["sub_answers"]] == ["mathematics", "chemistry"]
    assert len(calls) == 1


def test_a_second_route_must_also_name_a_known_expert():
    def router(texts: list[str]) -> list[Route]:
        return [Route("physics" if " " in t else None, 0.9) for t in texts]

    with pytest.raises(ValueError, match="not among the experts"):
        build("<q>a</q><q>b</q><dep>1->2</dep>", router=router).invoke({"query": "q"})
