"""Conversational tool use: customer service for an online shop (tau2-bench-like).

Each record is one support conversation over its own small shop database (users, orders, products,
policies) held by an in-process sandbox. The agent authenticates the user, reads orders and products,
and makes policy-checked changes (cancel, new address, item swaps, returns, exchanges) after the user
confirms, or refuses and transfers to a human. Tools live in :mod:`.tools`; the programmatic expert that
generated the bundled ``data/tool_use.jsonl`` (200 records, seed 0) lives in :mod:`.expert`::

    python -m pivot_envs.domains.tool_use.expert --out pivot_envs/domains/tool_use/data/tool_use.jsonl
"""

from __future__ import annotations

from pivot_envs.domain import Domain
from pivot_envs.domains.tool_use.tools import FUNCTIONS, TOOLS

DOMAIN = Domain(
    name="tool_use",
    env_id="pivot/ToolUse-v0",
    description="Online-shop customer service: 15 database tools, policy-checked writes, generated conversations.",
    data="pivot_envs.domains.tool_use:data/tool_use.jsonl",
    tools=FUNCTIONS,
    verifier="tool_use",
)

__all__ = ["DOMAIN", "FUNCTIONS", "TOOLS"]
