"""Conversational tool use: customer service for an online shop (tau2-bench-like).

Each record is one support conversation over its own small shop database (users, orders, products,
policies) held by an in-process sandbox. The agent authenticates the user, reads orders and products,
and makes policy-checked changes (cancel, new address, item swaps, returns, exchanges) after the user
confirms, or refuses and transfers to a human. Tools live in :mod:`.tools`; the programmatic expert that
generated the bundled ``data/tool_use.jsonl`` (200 records, seed 0) lives in :mod:`.expert`::

    python -m pivot_envs.domains.tool_use.expert --out pivot_envs/domains/tool_use/data/tool_use.jsonl

An episode succeeds when the shop database ends in the demonstration's final state (the record's
``task.success`` digest) *and* the agent's messages to the user state every fact the demonstration's
messages state (ids, emails, numbers, status words; :func:`verifiers.messages.extract_facts`), or, when
those messages state no such fact (policy answers), shares half of their content words.
The second half matters: four task types in ten only read (order status, product info, policy
questions, refusals), so their final state equals the initial one and an agent that says nothing
useful would otherwise succeed.
"""

from __future__ import annotations

from typing import Any

from pivot_envs.domain import Domain
from pivot_envs.domains.tool_use.tools import FUNCTIONS, TOOLS
from pivot_envs.trajectory import Trajectory
from sandboxes.core import Sandbox


def _status_words() -> frozenset[str]:
    from verifiers.core import VerifyContext  # noqa: PLC0415
    from verifiers.messages import status_vocabulary  # noqa: PLC0415

    return status_vocabulary(VerifyContext(tools=TOOLS))


def _told_user(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages
                     if m.get("role") == "assistant" and not m.get("tool_calls"))


def success(trajectory: Trajectory, sandbox: Sandbox | None, messages: list[dict[str, Any]]) -> bool | None:
    """Final database state as demonstrated, and the agent told the user every fact the demonstration did."""
    from verifiers.messages import extract_facts, overlap  # noqa: PLC0415

    rule = (trajectory.task or {}).get("success") or {}
    if rule.get("kind") != "final_state":
        return DOMAIN.episode_success_by_record(trajectory, sandbox, messages)
    if sandbox is None or sandbox.state_digest() != rule.get("expected_state_sha256"):
        return False
    words = _status_words()
    demo_text, agent_text = _told_user(trajectory.messages), _told_user(messages)
    expected = extract_facts(demo_text, words).required()
    said = extract_facts(agent_text, words)
    if not expected:  # policy answers state rules, not ids: ask for the same content words instead
        return overlap(demo_text, agent_text) >= 0.5
    return expected <= said.required() | set(said.amounts)

DOMAIN = Domain(
    name="tool_use",
    env_id="pivot/ToolUse-v0",
    description="Online-shop customer service: 15 database tools, policy-checked writes, generated conversations.",
    data="pivot_envs.domains.tool_use:data/tool_use.jsonl",
    tools=FUNCTIONS,
    verifier="tool_use",
    success=success,
)

__all__ = ["DOMAIN", "FUNCTIONS", "TOOLS"]
