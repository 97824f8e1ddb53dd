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
    """Answers each state with the demonstrated action.

    With the env's info dict (``trajectory_id`` and ``turn``) the lookup is exact. Without it, the state
    is found by its message prefix; two demonstrations can share a prefix and continue differently, in
    which case the first one loaded wins. Raises ``KeyError`` for a state it does not know.
    """

    name = "replay"

    def __init__(self, trajectories: Iterable[Trajectory]):
        self._by_turn: dict[tuple[str, int], str] = {}
        self._by_prefix: dict[str, str] = {}
        for traj in trajectories:
            for turn in range(traj.num_turns):
                text = traj.action(turn).to_text()
                self._by_turn[(traj.id, turn)] = text
                self._by_prefix.setdefault(_prefix_key(traj.prefix(turn)), text)
        if not self._by_turn:
            raise ValueError("ReplayAgent needs trajectories to replay")

    def _lookup(self, obs: dict[str, Any], info: dict[str, Any] | None) -> str:
        if info and (info.get("trajectory_id"), info.get("turn")) in self._by_turn:
            return self._by_turn[(info["trajectory_id"], info["turn"])]
        key = _prefix_key(obs["messages"])
        if key not in self._by_prefix:
            raise KeyError("state is not a prefix of any demonstration this ReplayAgent knows")
        return self._by_prefix[key]

    def sample(
        self, observations: Sequence[dict[str, Any]], n: int = 1, infos: Sequence[dict[str, Any]] | None = None
    ) -> list[list[Sample]]:
        infos = infos if infos is not None else [None] * len(observations)
        return [[Sample(self._lookup(obs, info))] * n for obs, info in zip(observations, infos, strict=True)]
