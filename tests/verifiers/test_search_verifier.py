"""The search cascade: canonical queries and URLs, results compared against a local index."""

from __future__ import annotations

import json

import pytest

from pivot_envs.actions import Action, ToolCall
from sandboxes import InProcessSandbox
from verifiers import Category, VerifyContext, make_verifier
from verifiers.search import canonical_query, canonical_url, parse_result_ids

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
    assert parse_result_ids('[{"id": "d1"}, {"url": "https://www.x.org/p/"}, "d3"]') == ["d1", "http://x.org/p", "d3"]


def test_results_overlap_decides_with_an_index():
    v = make_verifier("search", index=toy_index, k=3, threshold=0.5)
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


def test_open_and_answers():
    v = make_verifier("search")
    gold = call("open", url="https://en.wikipedia.org/wiki/Dune_(novel)")
    assert v.verify(gold, call("browse", url="http://www.en.wikipedia.org/wiki/Dune_(novel)/"), VerifyContext()).equivalent
    assert v.verify(gold, call("open", url="https://en.wikipedia.org/wiki/Dune_(film)"), VerifyContext()).category == Category.TARGET_DIFFERS
    ans = call("answer", answer="Frank Herbert wrote Dune in 1965.")
    assert v.verify(ans, call("answer", answer="Dune was written by Frank Herbert in 1965."), VerifyContext()).equivalent
    assert not v.verify(ans, call("answer", answer="Dune was written by Frank Herbert in 1966."), VerifyContext()).equivalent
    assert v.verify(gold, call("search", query="dune"), VerifyContext()).category == Category.WRONG_TOOL


def test_bm25_index_when_installed():
    pytest.importorskip("bm25s")
    from verifiers.search import bm25_index

    index = bm25_index(DOCS)
    assert index("who wrote dune", 2)[0] == "d1"
    v = make_verifier("search", index=index, k=2)
    assert v.verify(call("search", query="who wrote Dune"), call("search", query="Dune novel writer"), VerifyContext()).equivalent
