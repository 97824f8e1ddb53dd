"""Per-turn functional accuracy of a policy on a TrajectoryEnv (pivot mode), with verdict categories."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.core import Policy
from pivot_envs.core import TrajectoryEnv


@dataclass
class TurnEvalResult:
    """What one policy scored on every turn of a set of trajectories."""

    policy: str
    turns: int = 0
    reward_sum: float = 0.0
    categories: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.reward_sum / self.turns if self.turns else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "turns": self.turns, "accuracy": self.accuracy,
                "categories": dict(self.categories), "methods": dict(self.methods), "seconds": self.seconds}


def evaluate_turns(
    env: TrajectoryEnv,
    policy: Policy,
    *,
    trajectory_ids: list[str] | None = None,
    on_turn: Callable[[], None] | None = None,
) -> TurnEvalResult:
    """Reset to every turn of the given trajectories, let ``policy`` act once, and record the verdict."""
    result = TurnEvalResult(policy.name)
    start = time.perf_counter()
    for traj_id in trajectory_ids or env.ids:
        for turn in range(env.trajectories[traj_id].num_turns):
            obs, info = env.reset(options={"trajectory": traj_id, "turn": turn})
            _, reward, _, _, info = env.step(policy.act(obs, info))
            verdict = info["verdict"]
            result.turns += 1
            result.reward_sum += float(reward)
            result.categories[verdict.category] += 1
            result.methods[verdict.method] += 1
            if on_turn is not None:
                on_turn()
    result.seconds = time.perf_counter() - start
    return result
