"""Search over the Python documentation (BrowseComp-like): multi-hop questions, search / open / find tools.

The corpus (:mod:`.corpus`) is the documentation shipped with the interpreter: the Language Reference
topics of ``pydoc_data`` and the docstrings of a fixed list of standard-library modules and their
functions and classes, chunked into documents with stable ids (``topic:assignment#2``,
``module:json#0``, ``api:json.dumps#0``) and indexed with ``bm25s``. Records do not embed it: they
carry its version (``env.corpus``: Python ``major.minor`` and a sha256 of every id and text), and a
world refuses to start on another corpus (:class:`.corpus.CorpusMismatchError`, with the command that
regenerates the records for this interpreter).

Tools (:mod:`.tools`): ``search(query, k=5)``, ``open(doc_id)``, ``find(pattern)``; the final answer is
a message to the user (``Answer: X``). The world is an in-process sandbox whose state is the opened
document and the list of visited ones; the index is shared read-only outside it.

Questions and the expert (:mod:`.expert`, 143 records, seed 0)::

    python -m pivot_envs.domains.search.expert --out pivot_envs/domains/search/data/search.jsonl

Turns are judged by the ``search`` cascade (:mod:`verifiers.search`): searches by the rank-biased
overlap of what they retrieve from this index, opens by the document they open, finds by the lines
they find, answers by normalised match or token F1 with the hedging and copying guards. An episode
succeeds when the agent's last message gives the verified answer (or an alias) by the same answer rule.
"""

from __future__ import annotations

from typing import Any

from pivot_envs.domain import Domain
from pivot_envs.domains.search.tools import FUNCTIONS, TOOLS
from pivot_envs.trajectory import Trajectory
from sandboxes.core import Sandbox
from sandboxes.inprocess import InProcessSandbox


def make_sandbox(trajectory: Trajectory) -> Sandbox:
    """The record's world, after checking that it was built from this interpreter's corpus."""
    from pivot_envs.domains.search.corpus import load_corpus  # noqa: PLC0415 - builds the index on first use

    env = trajectory.env or {}
    load_corpus().check_version(env.get("corpus"), where=f"record {trajectory.id!r}")
    return InProcessSandbox(env.get("state") or {"opened": None, "visited": []}, tools=FUNCTIONS)


def final_answer(messages: list[dict[str, Any]]) -> str | None:
    """The content of the last assistant message that calls no tool (None when there is none)."""
    for m in reversed(messages):
        if m.get("role") == "assistant" and not m.get("tool_calls"):
            return str(m.get("content") or "")
    return None


def success(trajectory: Trajectory, sandbox: Sandbox | None, messages: list[dict[str, Any]]) -> bool | None:
    """The agent's final message gives the verified answer (or an alias), and only one answer."""
    from verifiers.core import VerifyContext  # noqa: PLC0415
    from verifiers.search import compare_answers, question_of  # noqa: PLC0415

    task = trajectory.task or {}
    if not isinstance(task.get("answer"), str):
        return DOMAIN.episode_success_by_record(trajectory, sandbox, messages)
    said = final_answer(messages)
    if said is None:
        return False
    verdict, _ = compare_answers([task["answer"], *task.get("aliases", [])], said,
                                 question=question_of(VerifyContext(trajectory=trajectory)))
    return verdict.equivalent


DOMAIN = Domain(
    name="search",
    env_id="pivot/Search-v0",
    description="Multi-hop questions over the Python docs: BM25 search, open, find, answer (in-process).",
    data="pivot_envs.domains.search:data/search.jsonl",
    tools=FUNCTIONS,
    verifier="search",
    success=success,
    sandbox_factory=make_sandbox,
)

__all__ = ["DOMAIN", "FUNCTIONS", "TOOLS", "make_sandbox", "success"]
