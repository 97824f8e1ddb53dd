"""``pivot/MyDomain-v0``: an office assistant over a calendar and a mailbox, as a pivotrl plugin.

What a plugin writes, all of it here:

* data: ``convert.py`` turns the benchmark's task file into records (``data/my_domain.jsonl``);
* world: ``world.py``, plain Python classes; ``world=`` below builds them per record and the toolkit's
  ``ObjectSandbox`` makes their public methods the tools, with snapshots, forks and a digest;
* verifier: the shipped ``tool_use`` cascade with a stricter text threshold (a ``(name, kwargs)`` spec);
* outcome: the world after each user turn and at the end equals the demonstration's (digests the
  converter stored in ``task``).

``pyproject.toml`` registers ``DOMAIN`` in the ``pivotrl.domains`` entry-point group, so after
``pip install -e examples/my_domain`` the id works everywhere: ``gymnasium.make("pivot/MyDomain-v0")``,
``pivotrl eval --env pivot/MyDomain-v0``, the contract tests.
"""

from __future__ import annotations

from typing import Any

from my_domain.tools import TOOLS
from my_domain.world import build_world
from pivot_envs import Domain, Trajectory
from sandboxes.core import Sandbox


def world(trajectory: Trajectory) -> dict[str, Any]:
    """A fresh world for a record: its ``env`` holds the events and contacts at turn 0."""
    return build_world(trajectory.env)


def turn_success(trajectory: Trajectory, sandbox: Sandbox | None, messages: list[dict[str, Any]],
                 user_turn: int) -> bool | None:
    """After each user turn the world is the one the demonstration left (None for turns not recorded)."""
    digests = (trajectory.task or {}).get("user_turn_digests") or []
    if sandbox is None or user_turn >= len(digests):
        return None
    return sandbox.state_digest() == digests[user_turn]


DOMAIN = Domain(
    name="my_domain",
    env_id="pivot/MyDomain-v0",
    description="Example plugin: calendar and mailbox objects, ground-truth calls per user turn.",
    data="my_domain:data/my_domain.jsonl",
    world=world,
    tool_schemas=TOOLS,
    verifier=("tool_use", {"text_threshold": 0.9}),
    turn_success=turn_success,
    # success=None: the record's task.success rule (final_state digest) scores the whole episode.
)

__all__ = ["DOMAIN", "TOOLS", "turn_success", "world"]
