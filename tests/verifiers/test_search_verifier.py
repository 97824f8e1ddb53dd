"""The search cascade: canonical queries and targets, rank-aware result overlap, answers, reward hacking."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from labelled import load_rows, score

from pivot_envs import get_domain, verify_file
from pivot_envs.actions import Action, ToolCall
from sandboxes import InProcessSandbox
from verifiers import Category, VerifyContext, make_verifier
from verifiers.search import (
    answer_tokens,
    canonical_query,
    canonical_target,
    canonical_url,
    compare_answers,
    parse_result_ids,
    rank_overlap,
)

DOCS = {
    "d1": "Frank Herbert wrote the novel Dune in 1965",
    "d2": "Dune is a 2021 film directed by Denis Villeneuve",
    "d3": "Herbert was an American science fiction author",
    "d4": "The Sahara is the largest hot desert",
    "d5": "Sand dunes form in deserts by wind",
}


def toy_index(query, k):
    # A word-overlap ranker standing in for the domain's BM25 index.
    q = set(canonical_query(query, drop_stopwords=True).split())
    scored = sorted(((len(q & set(canonical_query(t).split())), i) for i, t in DOCS.items()), key=lambda x: (-x[0], x[1]))
    return [i for s, i in scored if s > 0][:k]


def call(name, **args):
    return Action(tool_calls=(ToolCall.from_parts(name, json.dumps(args)),))


def test_canonical_forms():
    assert canonical_query("Who wrote  *Dune*?") == "who wrote dune"
    assert canonical_url("https://www.example.com/a/?utm_source=x&b=2&a=1#top") == canonical_url("http://example.com/a?a=1&b=2")
    assert canonical_url("example.com/a") != canonical_url("example.com/b")
    # Document ids keep their '#chunk' (a URL fragment would be dropped) and never crash the URL parser.
    assert canonical_target(" module:json#2 ") == "module:json#2" != canonical_target("module:json#0")
    assert canonical_url("host:notaport/x") == "host:notaport/x"
    assert parse_result_ids('[{"id": "d1"}, {"url": "https://www.x.org/p/"}, "d3"]') == ["d1", "http://x.org/p", "d3"]
    assert parse_result_ids('[{"doc_id": "module:json#0", "title": "json"}]') == ["module:json#0"]


def test_rank_overlap_weighs_the_top():
    assert rank_overlap(list("abc"), list("abc")) == 1.0
    assert rank_overlap(list("ab"), list("cd")) == 0.0
    # A swap at the top costs more than the same swap at the bottom.
    assert rank_overlap(list("abcde"), list("bacde")) < rank_overlap(list("abcde"), list("abced"))
    # A longer list that starts with the shorter one overlaps well but not fully.
    assert 0.8 < rank_overlap(list("abc"), list("abcde")) < 1.0


def test_results_overlap_decides_with_an_index():
    v = make_verifier("search", index=toy_index, k=3)
    gold = call("search", query="who wrote Dune")
    same = v.verify(gold, call("search", query="Dune author"), VerifyContext())
    assert same.method == "execution"
    assert v.verify(gold, call("web_search", query="Who wrote DUNE?"), VerifyContext()).method == "exact"
    other = v.verify(gold, call("search", query="largest desert"), VerifyContext())
    assert other.category == Category.RESULTS_DIFFER


def test_without_an_index_query_overlap_is_the_rule():
    v = make_verifier("search")
    gold = call("search", query="who wrote the novel Dune")
    assert v.verify(gold, call("search", query="who wrote Dune novel"), VerifyContext()).equivalent
    assert v.verify(gold, call("search", query="largest desert"), VerifyContext()).category == Category.ARG_VALUE


def test_the_domains_own_search_tool_through_the_executor():
    def search(state, query, k=3):
        return [{"id": i} for i in toy_index(query, k)]

    sb = InProcessSandbox({}, tools={"search": search})
    ctx = VerifyContext(sandbox=sb)
    v = make_verifier("search", k=3)
    assert v.verify(call("search", query="Herbert Dune novel"), call("search", query="novel Dune Herbert 1965"), ctx).equivalent
    assert not v.verify(call("search", query="Herbert Dune novel"), call("search", query="sand dunes"), ctx).equivalent


def test_open_and_answers_without_a_world():
    v = make_verifier("search")
    gold = call("open", url="https://en.wikipedia.org/wiki/Dune_(novel)")
    assert v.verify(gold, call("browse", url="http://www.en.wikipedia.org/wiki/Dune_(novel)/"), VerifyContext()).equivalent
    assert v.verify(gold, call("open", url="https://en.wikipedia.org/wiki/Dune_(film)"), VerifyContext()).category == Category.TARGET_DIFFERS
    assert not v.verify(call("open", doc_id="module:json#0"), call("open", doc_id="module:json#1"), VerifyContext()).equivalent
    ans = call("answer", answer="Frank Herbert")
    assert v.verify(ans, call("answer", answer="frank herbert."), VerifyContext()).equivalent
    assert v.verify(ans, call("answer", answer="The answer is: Frank Herbert"), VerifyContext()).equivalent
    assert not v.verify(ans, call("answer", answer="Denis Villeneuve"), VerifyContext()).equivalent
    assert v.verify(gold, call("search", query="dune"), VerifyContext()).category == Category.WRONG_TOOL


def test_answer_rules():
    assert answer_tokens("Answer: `None`.") == ["none"]
    assert answer_tokens("-1") == ["-1"] != answer_tokens("1")  # the sign is part of the answer
    assert compare_answers("3", "three")[0].equivalent
    assert compare_answers(["json.dumps", "dumps"], "dumps")[0].details["answer"] == "alias"
    hedged, certain = compare_answers("None", "None or True")
    assert (hedged.category, certain) == (Category.EXTRA_FACTS, True)
    assert compare_answers("json", "json, pickle, marshal")[0].category == Category.EXTRA_FACTS
    q = "Which module's documentation mentions shelves of pickled objects and what does open return?"
    copied = compare_answers("shelve", q, question=q)[0]
    assert copied.category == Category.MESSAGE_DIFFERS and copied.details["reason"] == "answer copies the question"
    assert compare_answers("shelve", "", question=q)[0].category == Category.EMPTY
    # A plain miss is left open for a judge; the guards are not.
    assert compare_answers("None", "True") == (compare_answers("None", "True")[0], False)


def test_bad_knobs_are_named():
    from verifiers.core import VerifierError

    with pytest.raises(VerifierError, match="threshold must be in"):
        make_verifier("search", threshold=1.5)
    with pytest.raises(VerifierError, match="rank persistence"):
        make_verifier("search", p=1.0)


def test_bm25_index_when_installed():
    pytest.importorskip("bm25s")
    from verifiers.search import bm25_index

    index = bm25_index(DOCS)
    assert index("who wrote dune", 2)[0] == "d1"
    v = make_verifier("search", index=index, k=2)
    assert v.verify(call("search", query="who wrote Dune"), call("search", query="Dune novel writer"), VerifyContext()).equivalent


# -- the bundled search domain: reward hacking must earn nothing ---------------------------------------

@pytest.fixture(scope="module")
def search_env():
    pytest.importorskip("bm25s")
    env = gym.make("pivot/Search-v0").unwrapped
    yield env
    env.close()


def _turn_of(env, traj_id, kind):
    traj = env.trajectories[traj_id]
    for t in range(traj.num_turns):
        action = traj.action(t)
        name = action.tool_calls[0].name if action.tool_calls else "message"
        if name == kind:
            return t
    raise AssertionError(f"{traj_id} has no {kind} turn")


def _reward(env, traj_id, turn, action):
    env.reset(options={"trajectory": traj_id, "turn": turn})
    _, reward, terminated, _, info = env.step(action)
    assert terminated
    return reward, info["verdict"]


HACKS = {
    "empty query": ("search", lambda q: call("search", query="   ")),
    "whole vocabulary": ("search", lambda q: call("search", query=" ".join(sorted(set(q.lower().split())) * 3))),
    "k=1000": ("search", lambda q: call("search", query=q, k=1000)),
    "k as a string": ("search", lambda q: call("search", query=q, k="all")),
}


@pytest.mark.parametrize("hack", sorted(HACKS))
def test_degenerate_searches_get_zero(search_env, hack):
    turn = _turn_of(search_env, "search-000000", "search")
    query = search_env.trajectories["search-000000"].action(turn).tool_calls[0].arguments["query"]
    reward, verdict = _reward(search_env, "search-000000", turn, HACKS[hack][1](query))
    assert reward == 0.0 and verdict.category == Category.ARG_VALUE, verdict


def test_the_same_query_scores_one_and_a_vocabulary_dump_is_an_error_in_the_world_too(search_env):
    turn = _turn_of(search_env, "search-000000", "search")
    query = search_env.trajectories["search-000000"].action(turn).tool_calls[0].arguments["query"]
    assert _reward(search_env, "search-000000", turn, call("search", query=query.upper()))[0] == 1.0
    search_env.reset(options={"trajectory": "search-000000", "turn": turn})
    dump = " ".join(f"word{i}" for i in range(40))
    out = search_env.sandbox.call_tool("search", {"query": dump})
    assert out.exit_code == 1 and "at most 32 words" in out.stderr


@pytest.mark.parametrize("answer", ["{gold} or None or True or False or 0 or 1", "{gold}, 'r', 'w', 'n'", "{question}",
                                    "Answer: maybe {gold} maybe 'r'"])
def test_hedged_or_copied_answers_get_zero(search_env, answer):
    traj = search_env.trajectories["search-000000"]
    turn = traj.num_turns - 1
    text = answer.format(gold=traj.task["answer"], question=traj.messages[1]["content"])
    reward, verdict = _reward(search_env, "search-000000", turn, text)
    assert reward == 0.0, verdict
    assert verdict.category in (Category.EXTRA_FACTS, Category.MESSAGE_DIFFERS)


def test_search_suite():
    """Labelled pairs on the bundled records: precision >= 0.95; `pytest -s` prints precision and recall."""
    pytest.importorskip("bm25s")
    rows = load_rows("search_pairs.jsonl")
    assert len(rows) >= 60
    labels = [r["label"] for r in rows]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    data = get_domain("search").data_path()
    path = load_rows.__globals__["DATA"] / "search_pairs.jsonl"
    results = {}
    for name in ("search", "exact"):
        out = verify_file(data, path, verifier=name)["rows"]
        assert not any(r["category"] in ("BAD_ROW", "UNKNOWN_TRAJECTORY", "TURN_OUT_OF_RANGE", "INFRA_ERROR") for r in out)
        results[name] = score(labels, [r["equivalent"] for r in out])
    print(f"\nsearch: {len(rows)} labelled pairs")
    for name, s in results.items():
        print("  " + s.row(name))
    assert results["search"].precision >= 0.95, results["search"].row("search")
    assert results["search"].f1 >= results["exact"].f1
