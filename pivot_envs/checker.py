"""``check_trajectory_env``: Gymnasium's ``check_env`` plus what a trajectory env must also guarantee.

1. Gymnasium's own API checks (spaces, reset/step signatures, seeding, returned data not reused).
2. Restore determinism: resetting to turn k twice gives identical observations and state digests, and a
   snapshot-cached restore equals a replay from turn 0 with caching off.
3. Replay fidelity: restoring every turn reproduces every recorded tool output (no divergence), and
   the demonstration played in ``mode="episode"`` gets back every recorded tool output and user turn
   and, where the record defines an outcome, succeeds.
4. The demonstrated action scores 1 in ``mode="pivot"`` at every turn.
5. Nothing is left behind: the env's sandboxes and forks are closed after ``close()``.
6. The world honours its own contract, on a seeded sample of turns (``world_turns`` per trajectory):
   - restores in random and repeated order equal a replay from turn 0 (a snapshot that shares live
     objects with the world drifts once a later turn is restored on top of it);
   - the digest an env reports after a restore is the digest of the world it is in;
   - snapshot immutability: acting on the restored world, then restoring the same turn, gives the
     digest of before;
   - fork isolation: a write in one fork leaves its siblings and the parent untouched;
   - verifier discrimination: a perturbed demonstration whose effect on the world differs from the
     demonstration's is rejected (this exercises the execution stage, which the demonstration itself,
     accepted as exact, never reaches);
   - digest sensitivity: a digest that is one value over differing worlds is reported.

One parametrized test runs it over every registered env, so a new domain needs no new test code.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

from pivot_envs.actions import Action, ToolCall
from pivot_envs.core import TrajectoryEnv, outputs_match
from pivot_envs.trajectory import content_text
from sandboxes.core import canonical_json


@dataclass
class CheckReport:
    trajectories: int = 0
    turns: int = 0
    problems: list[str] = field(default_factory=list)
    #: Turns whose demonstrated action changed the world in a fork (the world checks ran there).
    write_turns: int = 0
    #: Perturbed demonstrations with another effect than the demonstration's, all of which must be rejected.
    perturbations: int = 0

    def fail(self, message: str) -> None:
        self.problems.append(message)


def check_trajectory_env(env: gym.Env, *, max_trajectories: int | None = None, gym_checks: bool = True,
                         world_turns: int = 2, random_restores: int = 6, seed: int = 0) -> CheckReport:
    """Run every check over ``env``'s trajectories (the first ``max_trajectories`` when given).

    Args:
        env: A :class:`TrajectoryEnv`, possibly wrapped (``gym.make`` output).
        max_trajectories: Check only the first N trajectories.
        gym_checks: Also run Gymnasium's ``check_env``.
        world_turns: Per trajectory, how many turns whose demonstration writes get the world checks
            (forks, snapshot immutability, discrimination); 0 skips them. Each costs a few forks.
        random_restores: Per trajectory, how many turns are restored again in random order (and about
            half of them twice more); 0 skips it. Each costs a restore.
        seed: Seeds the random restore order.

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
    rng = random.Random(seed)
    replayed: dict[tuple[str, int], tuple[dict, str]] = {}
    try:
        for traj_id in ids:
            traj = base.trajectories[traj_id]
            report.trajectories += 1
            for turn in range(traj.num_turns):
                report.turns += 1
                replayed[traj_id, turn] = _check_turn(base, replayer, traj_id, turn, report)
            _check_random_order(base, traj_id, replayed, rng, random_restores, report)
            if world_turns > 0 and traj.sandbox != "none":
                _check_world(base, traj_id, world_turns, report)
            _check_episode(episode, traj_id, report)
        _check_digest_sensitivity(base, ids, replayed, report)
        _check_cleanup(base, ids[0], report)
    finally:
        replayer.close()
        episode.close()
    if report.problems:
        shown = "\n  ".join(report.problems[:20])
        more = f"\n  ... and {len(report.problems) - 20} more" if len(report.problems) > 20 else ""
        raise AssertionError(f"check_trajectory_env found {len(report.problems)} problem(s):\n  {shown}{more}")
    return report


def _check_turn(env: TrajectoryEnv, replayer: TrajectoryEnv, traj_id: str, turn: int,
                report: CheckReport) -> tuple[dict, str]:
    where = f"{traj_id} turn {turn}"
    opts = {"trajectory": traj_id, "turn": turn}
    obs1, info1 = env.reset(options=opts)
    obs2, info2 = env.reset(options=opts)
    _check_reported_digest(env, info2, where, report)
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
    return obs3, info3["state_digest"]


def _check_reported_digest(env: TrajectoryEnv, info: dict, where: str, report: CheckReport) -> None:
    live = env.state_digest()
    if info["state_digest"] != live:
        report.fail(f"{where}: reset reported state_digest {info['state_digest'][:12]} ({info['restored_from']}) "
                    f"but the world's digest is {live[:12]}: the snapshot does not describe the restored world")


def _check_random_order(env: TrajectoryEnv, traj_id: str, replayed: dict[tuple[str, int], tuple[dict, str]],
                        rng: random.Random, count: int, report: CheckReport) -> None:
    """Restore a seeded sample of turns in random order, some twice, and compare each with its replay.

    Sequential restores only ever extend the last snapshot; jumping back after a later turn was restored on
    top of an earlier snapshot is what exposes a snapshot that aliases the live world.
    """
    turns = list(range(env.trajectories[traj_id].num_turns))
    order = rng.sample(turns, min(len(turns), count))
    order += rng.sample(order, min(len(order), (count + 1) // 2))  # repeats
    for turn in order:
        where = f"{traj_id} turn {turn} (random order)"
        obs, info = env.reset(options={"trajectory": traj_id, "turn": turn})
        _check_reported_digest(env, info, where, report)
        want_obs, want_digest = replayed[traj_id, turn]
        if obs != want_obs or info["state_digest"] != want_digest:
            report.fail(f"{where}: restored after other turns ({info['restored_from']}), the world differs from a "
                        "replay from turn 0: snapshots share state with the live world, or restore is incomplete")


def _execute(env: TrajectoryEnv, target: TrajectoryEnv, action: Action) -> None:
    domain = env.domain_of(env.trajectory)
    for call in action.tool_calls:
        domain.execute(target.sandbox, call)


def _perturbed(action: Action) -> Action | None:
    """The demonstration with its first scalar argument changed, or None when it has none."""
    calls = list(action.tool_calls)
    for i, call in enumerate(calls):
        for key, value in (call.arguments or {}).items():
            new: Any
            if isinstance(value, bool):
                new = not value
            elif isinstance(value, (int, float)):
                new = value + 7
            elif isinstance(value, str) and call.name == "bash" and key == "command":
                new = value + " ; echo pivotrl-check > pivotrl-check.txt"
            elif isinstance(value, str):
                new = value + "-pivotrl-check"
            else:
                continue
            calls[i] = ToolCall.from_parts(call.name, {**call.arguments, key: new}, call.id)
            return Action(content=action.content, tool_calls=tuple(calls))
    return None


def _check_world(env: TrajectoryEnv, traj_id: str, limit: int, report: CheckReport) -> None:
    """Fork isolation, snapshot immutability and verifier discrimination at turns whose demonstration writes."""
    traj = env.trajectories[traj_id]
    checked = 0
    for turn in range(traj.num_turns):
        if checked >= limit:
            return
        action = traj.action(turn)
        if not action.tool_calls:
            continue
        where = f"{traj_id} turn {turn}"
        _, info = env.reset(options={"trajectory": traj_id, "turn": turn})
        before = env.state_digest()
        forks = env.fork(3)
        try:
            _execute(env, forks[0], action)
            after = forks[0].state_digest()
            if after == before:
                continue  # a read: nothing to isolate
            checked += 1
            report.write_turns += 1
            if forks[1].state_digest() != before or env.state_digest() != before:
                report.fail(f"{where}: a write in one fork changed its sibling or the parent: forks share state")
                continue
            _execute(env, forks[1], action)
            perturbed = _perturbed(action)
            if perturbed is not None and forks[1].state_digest() == after:  # the demonstration is deterministic
                _execute(env, forks[2], perturbed)
                if forks[2].state_digest() != after:
                    report.perturbations += 1
                    verdict = env.verify(perturbed)
                    if verdict.equivalent:
                        report.fail(f"{where}: a perturbed demonstration with another effect on the world was "
                                    f"accepted ({verdict.method}, {verdict.category}): the verifier cannot tell")
        finally:
            for f in forks:
                f.close()
        # Snapshot immutability: act on the restored world itself, then restore the same turn again.
        _execute(env, env, action)
        _, info = env.reset(options={"trajectory": traj_id, "turn": turn})
        if env.state_digest() != before or info["state_digest"] != before:
            report.fail(f"{where}: acting on a restored world changed its snapshot: restoring turn {turn} again gave "
                        f"digest {env.state_digest()[:12]} (reported {info['state_digest'][:12]}), not {before[:12]}")


def _check_digest_sensitivity(env: TrajectoryEnv, ids: list[str], replayed: dict[tuple[str, int], tuple[dict, str]],
                              report: CheckReport) -> None:
    """A digest that is one value over every state of worlds that differ is blind: report it."""
    worlds = [env.trajectories[i] for i in ids if env.trajectories[i].sandbox != "none"]
    specs = {canonical_json(t.env) for t in worlds}
    digests = {replayed[t.id, k][1] for t in worlds for k in range(t.num_turns)}
    if len(specs) > 1 and len(digests) == 1:
        report.fail(f"state_digest is {next(iter(digests))[:12]} for every state of {len(worlds)} trajectories "
                    f"with {len(specs)} different worlds: the digest does not see the world, so execution "
                    "verifiers and final-state outcomes cannot tell a write from a no-op")


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
