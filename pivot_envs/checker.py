"""``check_trajectory_env``: Gymnasium's ``check_env`` plus what a trajectory env must also guarantee.

1. Gymnasium's own API checks (spaces, reset/step signatures, seeding, returned data not reused).
2. Restore determinism: resetting to turn k twice gives identical observations and state digests, and a
   snapshot-cached restore equals a replay from turn 0 with caching off.
3. Replay fidelity: restoring every turn reproduces every recorded tool output (no divergence), and
   the demonstration played in ``mode="episode"`` gets back every recorded tool output and user turn
   and, where the record defines an outcome, succeeds.
4. The demonstrated action scores 1 in ``mode="pivot"`` at every turn.
5. Nothing is left behind: the env's sandboxes and forks are closed after ``close()``.

One parametrized test runs it over every registered env, so a new domain needs no new test code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

from pivot_envs.core import TrajectoryEnv, outputs_match
from pivot_envs.trajectory import content_text


@dataclass
class CheckReport:
    trajectories: int = 0
    turns: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)


def check_trajectory_env(env: gym.Env, *, max_trajectories: int | None = None, gym_checks: bool = True) -> CheckReport:
    """Run every check over ``env``'s trajectories (the first ``max_trajectories`` when given).

    Raises ``AssertionError`` listing every problem found; returns the report when all pass.
    """
    base = env.unwrapped
    if not isinstance(base, TrajectoryEnv):
        raise TypeError(f"expected a TrajectoryEnv (possibly wrapped), got {type(base).__name__}")
    report = CheckReport()
    if gym_checks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # check_env warns about render-mode probing; not a failure
            check_env(base, skip_render_check=True)
    ids = base.ids[:max_trajectories] if max_trajectories else base.ids
    kwargs = {"domain": base.domain, "verifier": base._verifier_spec}
    records = [base.trajectories[i] for i in ids]
    replayer = TrajectoryEnv(records, mode="pivot", cache_size=0, **kwargs)
    episode = TrajectoryEnv(records, mode="episode", **kwargs)
    try:
        for traj_id in ids:
            traj = base.trajectories[traj_id]
            report.trajectories += 1
            for turn in range(traj.num_turns):
                report.turns += 1
                _check_turn(base, replayer, traj_id, turn, report)
            _check_episode(episode, traj_id, report)
        _check_cleanup(base, ids[0], report)
    finally:
        replayer.close()
        episode.close()
    if report.problems:
        shown = "\n  ".join(report.problems[:20])
        more = f"\n  ... and {len(report.problems) - 20} more" if len(report.problems) > 20 else ""
        raise AssertionError(f"check_trajectory_env found {len(report.problems)} problem(s):\n  {shown}{more}")
    return report


def _check_turn(env: TrajectoryEnv, replayer: TrajectoryEnv, traj_id: str, turn: int, report: CheckReport) -> None:
    where = f"{traj_id} turn {turn}"
    opts = {"trajectory": traj_id, "turn": turn}
    obs1, info1 = env.reset(options=opts)
    obs2, info2 = env.reset(options=opts)
    obs3, info3 = replayer.reset(options=opts)
    if obs1 != obs2 or info1["state_digest"] != info2["state_digest"]:
        report.fail(f"{where}: two resets gave different observations or state digests")
    if obs1 != obs3 or info1["state_digest"] != info3["state_digest"]:
        report.fail(f"{where}: cached restore ({info1['restored_from']}) differs from a replay from turn 0")
    if info3["divergence"]:
        d = info3["divergence"][0]
        report.fail(f"{where}: replay diverged at turn {d['turn']}: got {d['got']!r}, recorded {d['expected']!r}")
    verdict = env.verify(env.expected_action())
    if not verdict.equivalent:
        report.fail(f"{where}: the demonstrated action scored {verdict.score} ({verdict.category}) against itself")
    _, reward, terminated, truncated, _ = env.step(env.expected_action())
    if reward != 1.0 or not terminated or truncated:
        report.fail(f"{where}: pivot step with the demonstration gave reward={reward}, terminated={terminated}")


def _check_episode(env: TrajectoryEnv, traj_id: str, report: CheckReport) -> None:
    traj = env.trajectories[traj_id]
    obs, _ = env.reset(options={"trajectory": traj_id, "turn": 0})
    done, info, terminated = False, {}, False
    for turn in range(traj.num_turns):
        if done:
            report.fail(f"{traj_id}: episode ended after {turn} of {traj.num_turns} demonstrated turns")
            return
        obs, _, terminated, truncated, info = env.step(traj.action(turn))
        done = terminated or truncated
        recorded = list(traj.tool_outputs(turn).values())
        for i, (want, got) in enumerate(zip(recorded, info["tool_outputs"], strict=False)):
            if not outputs_match(want, got):
                report.fail(f"{traj_id} turn {turn} call {i}: episode gave {got!r}, recorded {want!r}")
        if not done and info.get("user") == "replayed":
            nxt = traj.assistant_indices[turn + 1] if turn + 1 < traj.num_turns else len(traj.messages)
            want_users = [m for m in traj.messages[traj.assistant_indices[turn] + 1 : nxt] if m["role"] == "user"]
            if want_users and content_text(obs["messages"][-1].get("content")) != content_text(want_users[0].get("content")):
                report.fail(f"{traj_id} turn {turn}: replayed user turn differs from the record")
    if terminated and info.get("success") is False:
        report.fail(f"{traj_id}: the demonstration played as an episode did not succeed (task outcome false)")


def _check_cleanup(env: TrajectoryEnv, traj_id: str, report: CheckReport) -> None:
    env.reset(options={"trajectory": traj_id, "turn": 0})
    held = [env.sandbox] if env.sandbox is not None else []
    forks = env.fork(2)
    held += [f.sandbox for f in forks if f.sandbox is not None]
    if len(forks) == 2 and forks[0].sandbox is not None and forks[0].sandbox is forks[1].sandbox:
        report.fail(f"{traj_id}: fork(2) returned envs sharing one sandbox")
    for f in forks:
        f.close()
    env.close()
    for sb in held:
        if not sb.closed:
            report.fail(f"{traj_id}: a {sb.backend} sandbox was left open after close()")
