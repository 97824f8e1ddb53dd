"""ReplayAgent: plays back the demonstration (the upper bound every env must score 100% on)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from agents.core import Policy, Sample
from pivot_envs.trajectory import Trajectory
from sandboxes.core import canonical_json


def _prefix_key(messages: Sequence[dict[str, Any]]) -> str:
    # Only what identifies a state: roles, text and calls; ids and reasoning may differ between renders.
    slim = [
        [m.get("role"), m.get("content") or "",
         [[c["function"]["name"], c["function"]["arguments"]] for c in m.get("tool_calls") or []]]
        for m in messages
    ]
    return hashlib.sha256(canonical_json(slim).encode()).hexdigest()


class ReplayAgent(Policy):
    """Answers each state with the demonstrated action, found by the state's message prefix.

    Raises ``KeyError`` for a state that is not a prefix of any of its trajectories.
    """

    name = "replay"

    def __init__(self, trajectories: Iterable[Trajectory]):
        self._next: dict[str, str] = {}
        for traj in trajectories:
            for turn in range(traj.num_turns):
                self._next[_prefix_key(traj.prefix(turn))] = traj.action(turn).to_text()
        if not self._next:
            raise ValueError("ReplayAgent needs trajectories to replay")

    def sample(self, observations: Sequence[dict[str, Any]], n: int = 1) -> list[list[Sample]]:
        out = []
        for obs in observations:
            key = _prefix_key(obs["messages"])
            if key not in self._next:
                raise KeyError("state is not a prefix of any demonstration this ReplayAgent knows")
            out.append([Sample(self._next[key])] * n)
        return out
