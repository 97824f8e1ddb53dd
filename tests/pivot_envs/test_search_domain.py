"""pivot/Search-v0: the corpus, the tools, the bundled questions, episode outcomes, corpus versions."""

from __future__ import annotations

import copy
import json

import gymnasium as gym
import pytest

pytest.importorskip("bm25s")

import pivot_envs  # noqa: E402
from pivot_envs.domains.search import DOMAIN, final_answer  # noqa: E402
from pivot_envs.domains.search.corpus import (  # noqa: E402
    SNAPSHOT,
    Corpus,
    CorpusMismatchError,
    chunk_text,
    freeze,
    interpreter_documents,
    load_corpus,
    read_snapshot,
)
from pivot_envs.domains.search.expert import question_of_record, verify_question  # noqa: E402
from pivot_envs.domains.search.tools import MAX_K  # noqa: E402
from pivot_envs.trajectory import record_from_dict  # noqa: E402
from sandboxes.inprocess import InProcessSandbox  # noqa: E402


@pytest.fixture(scope="module")
def records():
    with open(DOMAIN.data_path(), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def env():
    e = gym.make("pivot/Search-v0", mode="episode").unwrapped
    yield e
    e.close()


def world():
    return InProcessSandbox({"opened": None, "visited": []}, tools=DOMAIN.tools)


def test_corpus_is_the_interpreters_documentation_with_stable_ids():
    corpus = load_corpus()
    kinds = {d.kind for d in corpus.docs.values()}
    assert kinds == {"topic", "module", "api"}
    assert "topic:assignment#0" in corpus.docs and "module:json#0" in corpus.docs and "api:json.dumps#0" in corpus.docs
    assert corpus.docs["api:json.dumps#0"].text.startswith("json.dumps(obj, *, skipkeys=False")
    assert "0x" not in "".join(d.text.splitlines()[0] for d in corpus.docs.values() if d.kind == "api")
    # Rebuilt from the same documents in another order: the same ids, the same version.
    again = Corpus(reversed(list(corpus.docs.values())), python=corpus.version["python"])
    assert again.ids == corpus.ids and again.version == corpus.version
    assert corpus.version["python"].count(".") == 1 and len(corpus.version["sha256"]) == 64


def test_the_shipped_corpus_is_frozen_so_records_hold_on_any_python(tmp_path):
    # The bundled records name the shipped snapshot's corpus, whatever interpreter runs them.
    meta, docs = read_snapshot(SNAPSHOT)
    assert meta["name"] == "python-docs" and meta["documents"] == len(docs)
    assert load_corpus().version == Corpus(docs, python=meta["python"]).version
    # Freezing this interpreter's documents and reading them back keeps every id, title and text.
    fresh = freeze(tmp_path / "corpus.jsonl.gz")
    meta2, docs2 = read_snapshot(tmp_path / "corpus.jsonl.gz")
    assert meta2 == fresh and docs2 == interpreter_documents()
    freeze(tmp_path / "again.jsonl.gz")  # byte-reproducible: a regenerated snapshot diffs only when texts do
    assert (tmp_path / "again.jsonl.gz").read_bytes() == (tmp_path / "corpus.jsonl.gz").read_bytes()


def test_chunks_are_paragraph_aligned_and_bounded():
    text = "\n\n".join(f"paragraph {i} " + "word " * 100 for i in range(10))
    chunks = chunk_text(text, size=1200)
    assert len(chunks) > 1 and all(len(c) <= 2400 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_search_ranks_the_right_document_and_resolves_names():
    corpus = load_corpus()
    assert corpus.search("Serialize obj to a JSON formatted str", 3)[0] == "api:json.dumps#0"
    assert corpus.search("the of and", 5) == []  # stop words only: nothing to rank by
    assert corpus.resolve("module:json") == corpus.resolve("json") == "module:json#0"
    assert corpus.resolve("types") is None  # both a topic and a module: ambiguous


def test_tools_read_and_write_what_they_say():
    sb = world()
    before = sb.state_digest()
    out = sb.call_tool("search", {"query": "json dumps indent"})
    assert out.exit_code == 0 and sb.state_digest() == before  # search is a read
    assert sb.call_tool("find", {"pattern": "indent"}).stderr.startswith("Error: no document is open")
    opened = json.loads(sb.call_tool("open", {"doc_id": "api:json.dumps"}).stdout)
    assert opened["doc_id"] == "api:json.dumps#0" and sb.state["opened"] == "api:json.dumps#0"
    after_open = sb.state_digest()
    assert after_open != before  # open writes
    found = json.loads(sb.call_tool("find", {"pattern": "INDENT="}).stdout)
    assert found["matches"][0]["line"] == 1 and sb.state_digest() == after_open


@pytest.mark.parametrize(("tool", "args", "message"), [
    ("search", {"query": ""}, "non-empty string 'query'"),
    ("search", {"query": "json", "k": 1000}, f"from 1 to {MAX_K}, got 1000"),
    ("search", {"query": "json", "k": True}, "got True"),
    ("search", {"query": " ".join(["json"] * 40)}, "at most 32 words"),
    ("open", {"doc_id": "module:nosuch#0"}, "no document 'module:nosuch#0'"),
    ("find", {"pattern": ""}, "non-empty string 'pattern'"),
    ("search", {"query": "json", "limit": 3}, "bad arguments for search"),
])
def test_bad_arguments_are_error_results_that_say_what_is_allowed(tool, args, message):
    out = world().call_tool(tool, args)
    assert out.exit_code == 1 and message in out.stderr, out.stderr


def test_records_carry_the_corpus_version_not_the_corpus(records):
    version = load_corpus().version
    assert 100 <= len(records) <= 200
    for r in records:
        assert r["env"] == {"sandbox": "inprocess", "state": {"opened": None, "visited": []}, "corpus": version}


def test_every_bundled_answer_holds_in_the_documents_it_was_built_from(records):
    corpus = load_corpus()
    families = {}
    for r in records:
        q = question_of_record(r)
        assert verify_question(corpus, q) == [], r["id"]
        families[q.family] = families.get(q.family, 0) + 1
        # Multi-hop: the demonstration searches at least twice and reaches both evidence documents.
        calls = [m["tool_calls"][0]["function"] for m in r["messages"] if m.get("tool_calls")]
        assert sum(c["name"] == "search" for c in calls) >= 2, r["id"]
        seen = " ".join(m["content"] for m in r["messages"] if m["role"] == "tool")
        assert all(doc in seen for doc in q.evidence), r["id"]
    assert set(families) == {"default", "arity", "which"} and min(families.values()) >= 30


def test_a_broken_answer_is_caught_by_verification(records):
    corpus = load_corpus()
    rec = next(r for r in records if r["task"]["family"] == "default")
    q = question_of_record(rec)
    q.answer = "12345"
    assert any("does not give" in p for p in verify_question(corpus, q))
    q = question_of_record(next(r for r in records if r["task"]["family"] == "which"))
    q.module_doc = "module:json#0"
    assert any("occurs in" in p for p in verify_question(corpus, q))


def test_the_expert_takes_several_equivalent_paths(records):
    first_queries, open_forms, finals = set(), set(), set()
    for r in records:
        assistant = [m for m in r["messages"] if m["role"] == "assistant"]
        first = json.loads(assistant[0]["tool_calls"][0]["function"]["arguments"])
        first_queries.add(("k" in first, first["query"] == r["task"]["phrase"]))
        for m in assistant:
            if m.get("tool_calls") and m["tool_calls"][0]["function"]["name"] == "open":
                open_forms.add("#" in json.loads(m["tool_calls"][0]["function"]["arguments"])["doc_id"])
        finals.add(assistant[-1]["content"].startswith("Answer:"))
    assert len(first_queries) == 4 and open_forms == {True, False} and finals == {True, False}
    lengths = {sum(m["role"] == "assistant" for m in r["messages"]) for r in records}
    assert len(lengths) >= 3  # module opened or not, find or not


def _play(env, traj_id, final=None):
    traj = env.trajectories[traj_id]
    env.reset(options={"trajectory": traj_id, "turn": 0})
    for t in range(traj.num_turns):
        action = traj.action(t)
        if final is not None and not action.tool_calls:
            action = final
        _, reward, terminated, _, info = env.step(action)
    assert terminated
    return reward, info


def test_episode_success_is_the_verified_answer(env, records):
    rec = next(r for r in records if r["task"]["family"] == "which")
    assert _play(env, rec["id"])[0] == 1.0
    task = rec["task"]
    assert _play(env, rec["id"], f"The answer is `{task['aliases'][0]}`.")[0] == 1.0
    assert _play(env, rec["id"], f"Answer: {task['answer'].upper()}")[0] == 1.0
    assert _play(env, rec["id"], "Answer: json.loads")[0] == 0.0
    assert _play(env, rec["id"], f"Answer: {task['answer']} or json.loads")[0] == 0.0
    assert _play(env, rec["id"], rec["messages"][1]["content"])[0] == 0.0
    assert final_answer([{"role": "assistant", "content": None, "tool_calls": [{}]}]) is None


def test_a_record_from_another_corpus_refuses_to_start(records):
    rec = copy.deepcopy(records[0])
    rec["env"]["corpus"] = {**rec["env"]["corpus"], "python": "3.99", "sha256": "0" * 64}
    traj = record_from_dict(rec)
    env = pivot_envs.TrajectoryEnv([traj], domain="search")
    with pytest.raises(CorpusMismatchError, match=r"Python 3.99.*Regenerate the records"):
        env.reset(options={"trajectory": rec["id"], "turn": 1})
    env.close()
