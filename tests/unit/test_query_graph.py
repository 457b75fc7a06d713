import pytest

from compllm_graph.query_graph import (
    MAX_SUB_QUERY_CHARS,
    REWORDING_CHARS,
    DecompositionError,
    QueryGraph,
    SubQuery,
    parse_decomposition,
    sub_query_char_limit,
)

# The paper's two decomposition examples (Figure 1 / Table 12 style), in its two output formats.
PAPER_TAGGED = (
    "<q>What is the atomic number of the element with symbol Fe?<\\q>"
    "<q>What is the boiling point of water in Kelvin?<\\q>"
    "<q>What is the sum of #1 and #2?<\\q>"
    "<dep>1->3, 2->3</dep>"
)
PAPER_NUMBERED = """Sub-queries:
1. Who wrote the novel that the film Blade Runner is based on?
2. In which year was that author born?
3. Which city was the author born in?
Dependency Graph: "1 -> 2", "1 -> 3"
"""


def test_paper_tagged_example():
    graph = parse_decomposition(PAPER_TAGGED)
    assert next(sq.text for sq in graph).startswith("What is the atomic number")
    assert graph.edges == ((1, 3), (2, 3))
    assert graph.roots == (1, 2)
    assert graph.leaves == (3,)
    assert graph.remaining_depth == {1: 2, 2: 2, 3: 1}


def test_paper_numbered_example():
    graph = parse_decomposition(PAPER_NUMBERED)
    assert len(graph) == 3
    assert graph.edges == ((1, 2), (1, 3))
    assert graph.leaves == (2, 3)
    assert graph.order == (1, 2, 3)


def test_ancestors_follow_every_path_up():
    graph = parse_decomposition("<q>a</q><q>b</q><q>c</q><q>d</q><dep>1->3, 2->3, 3->4</dep>")
    assert graph.ancestors(4) == (1, 2, 3)
    assert graph.ancestors(3) == (1, 2)
    assert graph.ancestors(1) == ()


def test_every_dep_tag_counts():
    graph = parse_decomposition("<q>a</q><q>b</q><q>c</q><dep>1->2</dep><dep>2->3</dep>")
    assert graph.edges == ((1, 2), (2, 3))


def test_numbered_chain_implies_consecutive_edges():
    graph = parse_decomposition('1. a\n2. b\n3. c\nDependency Graph: "1 -> 2 -> 3"')
    assert graph.edges == ((1, 2), (2, 3))
    assert graph.critical_path_length == 3


@pytest.mark.parametrize(
    "deps",
    ["1->2, 2->3", "1 → 2; 2 → 3", "1 - > 2\n2- >3", "1->2->3", " 1->2 , 2->3 , 1->2 "],
)
def test_dependency_spellings(deps):
    graph = parse_decomposition(f"<q>a</q><q>b</q><q>c</q><dep>{deps}</dep>")
    assert graph.edges == ((1, 2), (2, 3))


def test_hash_references_imply_edges_and_extra_text_is_ignored():
    text = "Sure! Here it is:\n<q>Who directed Titanic?</q> <q>#1 >> spouse</q><dep></dep> Done."
    graph = parse_decomposition(text)
    assert graph.edges == ((1, 2),)
    assert graph[2].text == "#1 >> spouse"


def test_duplicate_edges_collapse():
    graph = parse_decomposition("<q>a</q><q>b #1</q><dep>1->2, 1->2</dep>")
    assert graph[2].parents == (1,)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<q>What is water", "never closed"),  # cut off: the tail could run on, so no guess
        ("<q>a</q><q>What is wat", "never closed"),  # and the closed ones are not kept silently
        ("<q></q><q>x</q>", "sub-query 1 is empty"),  # dropping it would renumber #k references
        ("1.  \n2. What is x?", "sub-query 1 is empty"),
        ("1. What is a?\n2.   \n", "sub-query 2 is empty"),
        ("<q>" + "x" * 501 + "</q>", "501 characters long"),
    ],
)
def test_unclosed_empty_and_runaway_sub_queries_are_refused(text: str, problem: str) -> None:
    with pytest.raises(DecompositionError, match=problem):
        parse_decomposition(text)


def test_the_sub_query_limit_grows_with_the_query():
    assert sub_query_char_limit("short?") == MAX_SUB_QUERY_CHARS
    long_query = "y" * 900
    assert sub_query_char_limit(long_query) == 900 + REWORDING_CHARS
    text = "<q>" + "x" * 700 + "</q>"
    assert parse_decomposition(text, max_chars=sub_query_char_limit(long_query))[1].text
    with pytest.raises(DecompositionError, match="700 characters long"):
        parse_decomposition(text)


def test_a_tag_left_open_before_the_next_one_still_ends_there():
    assert [sq.text for sq in parse_decomposition("<q>a<q>b</q><dep></dep>")] == ["a", "b"]


def test_to_text_round_trips():
    graph = parse_decomposition(PAPER_TAGGED)
    assert parse_decomposition(graph.to_text()) == graph


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I cannot decompose this.", "no sub-query"),
        ("<q>a</q><q>b</q><dep>1->2, 2->1</dep>", "cycle"),
        ("<q>a</q><q>b</q><dep>1->3</dep>", "names sub-query 3"),
        ("<q>a</q><q>b #4</q>", "names sub-query 4"),
        ("<q>a</q><q>b</q><dep>2->2</dep>", "depends on itself"),
        ("<q>a</q><q>b</q><dep>one->two</dep>", "cannot read the dependency"),
        ("1. a\n3. b", "numbered 1, 2, 3"),
    ],
)
def test_rejections_name_the_problem(text, message):
    with pytest.raises(DecompositionError, match=message):
        parse_decomposition(text)


def test_too_many_sub_queries():
    text = "".join(f"<q>q{i}</q>" for i in range(5))
    assert len(parse_decomposition(text, max_sub_queries=5)) == 5
    with pytest.raises(DecompositionError, match="exceed the maximum of 4"):
        parse_decomposition(text, max_sub_queries=4)


def test_query_graph_validates_direct_construction():
    with pytest.raises(DecompositionError, match="cycle"):
        QueryGraph((SubQuery(1, "a", (2,)), SubQuery(2, "b", (1,))))
    with pytest.raises(DecompositionError, match="no sub-query"):
        QueryGraph(())
    assert QueryGraph.single("q").leaves == (1,)
