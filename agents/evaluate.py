"""Benchmark a policy against environments: per-turn functional accuracy and whole-episode task success.

    pivotrl eval --policy hf:runs/demo/pivotrl/final --env pivot/ToolUse-v0 --mode turn --out runs/eval/tu
    pivotrl eval compare runs/eval/base runs/eval/sft runs/eval/pivotrl

* **Turn mode** (pivot mode envs): every turn of the held-out trajectories (or only given states, e.g.
  pivots) is restored, the policy acts once, and the domain's verifier scores the action against the
  demonstration. States are restored and verified in batches, and the policy samples a whole batch in one
  call, so a model policy runs batched generation.
* **Episode mode**: each task is played from turn 0 until the agent ends it (or runs out of turns); tool
  calls run in the sandbox and recorded user turns are replayed; the reward is the task's outcome.
  Episodes run in lockstep on ``parallel`` environments, and each step samples the next turn of every
  running episode in one policy call.

Reports: ``report.json`` (every figure), ``report.md`` and ``report.png`` in the output directory.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.core import Policy
from agents.distributed import LocalVerifierPool, StatePool, VerifyRequest
from pivot_envs.core import TrajectoryEnv
from pivot_envs.trajectory import Trajectory

Progress = Callable[[int], None]
"""Called with the number of turns (or episodes) just finished."""


@dataclass
class TurnEvalResult:
    """What one policy scored on a set of restored states (pivot mode)."""

    policy: str
    turns: int = 0
    reward_sum: float = 0.0
    invalid: int = 0
    generated_tokens: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    per_trajectory: dict[str, list[float]] = field(default_factory=dict)
    """Each scored turn's reward, per trajectory id, in turn order (the clusters of a bootstrap interval)."""

    @property
    def accuracy(self) -> float:
        return self.reward_sum / self.turns if self.turns else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "turns": self.turns, "accuracy": self.accuracy, "invalid": self.invalid,
                "generated_tokens": self.generated_tokens, "categories": dict(self.categories.most_common()),
                "methods": dict(self.methods.most_common()), "seconds": self.seconds,
                "per_trajectory": self.per_trajectory}


@dataclass
class EpisodeEvalResult:
    """What one policy achieved on whole tasks (episode mode)."""

    policy: str
    episodes: int = 0
    successes: int = 0
    truncated: int = 0
    turns: int = 0
    generated_tokens: int = 0
    per_task: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "episodes": self.episodes, "success_rate": self.success_rate,
                "successes": self.successes, "truncated": self.truncated,
                "turns_per_episode": self.turns / self.episodes if self.episodes else 0.0,
                "generated_tokens": self.generated_tokens, "per_task": self.per_task, "seconds": self.seconds}


def all_states(env: TrajectoryEnv, trajectory_ids: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """Every (trajectory id, turn) of the given trajectories (default: all of ``env``), without the turns their
    records flag ``"pivotrl": {"skip": true}``."""
    return [(tid, turn) for tid in (trajectory_ids or env.ids) for turn in env.trajectories[tid].scored_turns]


def evaluate_turns(
    env: TrajectoryEnv,
    policy: Policy,
    *,
    trajectory_ids: Sequence[str] | None = None,
    states: Sequence[tuple[str, int]] | None = None,
    batch_size: int = 16,
    pool: StatePool | None = None,
    on_progress: Progress | None = None,
) -> TurnEvalResult:
    """Restore each state, let ``policy`` act once, and score the action with the env's verifier.

    Args:
        env: A pivot-mode env holding the trajectories.
        policy: Any policy; model policies should be greedy (temperature 0) for a reproducible score.
        trajectory_ids: Evaluate every turn of these (default: every trajectory of ``env``).
        states: Or exactly these ``(trajectory_id, turn)`` states (e.g. the pivots).
        batch_size: States restored, sampled and verified together.
        pool: Where states are restored and verified (default: in-process on ``env``).
        on_progress: Called with the number of states finished after each batch.
    """
    states = list(states) if states is not None else all_states(env, trajectory_ids)
    pool = pool or LocalVerifierPool(env)
    result = TurnEvalResult(policy.name)
    start = time.perf_counter()
    for i in range(0, len(states), batch_size):
        batch = states[i : i + batch_size]
        pairs = pool.observe(batch)
        samples = policy.sample([obs for obs, _ in pairs], n=1, infos=[info for _, info in pairs])
        verdicts = pool.verify_states([VerifyRequest(tid, turn, [group[0].text])
                                       for (tid, turn), group in zip(batch, samples, strict=True)])
        for (tid, _), group, (verdict,) in zip(batch, samples, verdicts, strict=True):
            result.turns += 1
            result.reward_sum += float(verdict.score)
            result.per_trajectory.setdefault(tid, []).append(float(verdict.score))
            result.invalid += verdict.method == "error"
            result.generated_tokens += len(group[0].token_ids or ())
            result.categories[verdict.category] += 1
            result.methods[verdict.method] += 1
        if on_progress is not None:
            on_progress(len(batch))
    result.seconds = time.perf_counter() - start
    return result


def evaluate_episodes(
    trajectories: Sequence[Trajectory],
    policy: Policy,
    *,
    domain: Any = None,
    parallel: int = 8,
    max_turns: int | None = None,
    on_progress: Progress | None = None,
) -> EpisodeEvalResult:
    """Play every task from turn 0 to its end and record the task outcome.

    ``parallel`` episode-mode environments run in lockstep; each round samples the next turn of every
    running episode in one policy call. An episode that runs out of turns (``max_turns``, default twice
    the demonstration's length plus 2), or whose prompt outgrows the model's context (the policy raises
    an error carrying the prompt's ``index``, as ``PromptTooLongError`` does), counts as a failure.
    """
    trajectories = list(trajectories)
    result = EpisodeEvalResult(policy.name)
    start = time.perf_counter()
    envs = [TrajectoryEnv(trajectories, domain=domain, mode="episode", max_turns=max_turns)
            for _ in range(max(1, min(parallel, len(trajectories))))]
    queue = [t.id for t in trajectories]
    running: dict[int, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    try:
        while queue or running:
            for slot, env in enumerate(envs):
                if slot not in running and queue:
                    tid = queue.pop(0)
                    obs, info = env.reset(options={"trajectory": tid, "turn": 0})
                    running[slot] = (tid, obs, info)
            slots = sorted(running)
            try:
                samples = policy.sample([running[s][1] for s in slots], n=1, infos=[running[s][2] for s in slots])
            except Exception as exc:  # a prompt outgrew the model's context: that episode fails, the rest go on
                index = getattr(exc, "index", None)
                if index is None:
                    raise
                tid = running.pop(slots[index])[0]
                result.episodes += 1
                result.truncated += 1
                result.per_task[tid] = False
                if on_progress is not None:
                    on_progress(1)
                continue
            for slot, group in zip(slots, samples, strict=True):
                tid = running[slot][0]
                obs, _, terminated, truncated, info = envs[slot].step(group[0].text)
                result.turns += 1
                result.generated_tokens += len(group[0].token_ids or ())
                if terminated or truncated:
                    success = bool(terminated and info.get("success"))
                    result.episodes += 1
                    result.successes += success
                    result.truncated += bool(truncated)
                    result.per_task[tid] = success
                    del running[slot]
                    if on_progress is not None:
                        on_progress(1)
                else:
                    running[slot] = (tid, obs, info)
    finally:
        for env in envs:
            env.close()
    result.seconds = time.perf_counter() - start
    return result


# ---------------------------------------------------------------------------------------------------
# Reports


def write_report(out_dir: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report.json``, ``report.md`` and ``report.png`` for one ``pivotrl eval`` run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out / "report.json")
    lines = [f"# Evaluation of `{report['policy']}` on `{report['env_id']}`", "",
             f"{report['trajectories']} trajectories, mode `{report['mode']}`, {report['seconds']:.1f} s.", ""]
    if "turn" in report:
        t = report["turn"]
        lines += ["## Per-turn functional accuracy", "",
                  f"**{t['accuracy']:.1%}** over {t['turns']} turns ({t['invalid']} malformed actions).", "",
                  "| verdict category | count |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in t["categories"].items()]
        lines.append("")
    if "episode" in report:
        e = report["episode"]
        lines += ["## Episode task success", "",
                  f"**{e['success_rate']:.1%}** of {e['episodes']} tasks ({e['truncated']} ran out of turns; "
                  f"{e['turns_per_episode']:.1f} turns per episode).", ""]
    (out / "report.md").write_text("\n".join(lines))
    _plot_one(out / "report.png", report)
    return out


def _plot_one(path: Path, report: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional; the JSON and Markdown carry every figure
        return
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if "turn" in report:
        cats = report["turn"]["categories"]
        ax.barh(list(cats), list(cats.values()), color="#4878a8")
        ax.set_xlabel("turns")
        ax.set_title(f"{report['policy']}: verdicts on {report['env_id']} "
                     f"(accuracy {report['turn']['accuracy']:.1%})", fontsize=9)
    else:
        e = report["episode"]
        ax.bar(["success", "failure"], [e["successes"], e["episodes"] - e["successes"]], color=["#5a9a5a", "#b05050"])
        ax.set_title(f"{report['policy']}: tasks on {report['env_id']} ({e['success_rate']:.1%})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_eval(
    policy: Policy,
    env_id: str,
    *,
    mode: str = "turn",
    trajectories: str | Path | Sequence[Trajectory] | None = None,
    limit: int = 0,
    out_dir: str | Path | None = None,
    batch_size: int = 16,
    parallel: int = 8,
    on_progress: Progress | None = None,
    on_start: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``policy`` on a registered env; ``mode`` is ``turn``, ``episode`` or ``both``.

    ``trajectories``: a JSONL path or records (default: the domain's bundled data); ``limit`` keeps the
    first N. ``on_start(what, total)`` announces each phase (for progress bars).
    """
    if mode not in ("turn", "episode", "both"):
        raise ValueError(f"mode={mode!r}: use 'turn', 'episode' or 'both'")
    from pivot_envs.registration import get_domain

    domain = get_domain(env_id)
    env = TrajectoryEnv(trajectories, domain=domain)
    records = [env.trajectories[i] for i in env.ids[: limit or None]]
    report: dict[str, Any] = {"policy": policy.name, "env_id": domain.env_id, "mode": mode,
                              "trajectories": len(records)}
    start = time.perf_counter()
    try:
        if mode in ("turn", "both"):
            states = all_states(env, [t.id for t in records])
            if on_start is not None:
                on_start("turns", len(states))
            report["turn"] = evaluate_turns(env, policy, states=states, batch_size=batch_size,
                                            on_progress=on_progress).to_dict()
    finally:
        env.close()
    if mode in ("episode", "both"):
        if on_start is not None:
            on_start("episodes", len(records))
        report["episode"] = evaluate_episodes(records, policy, domain=domain, parallel=parallel,
                                              on_progress=on_progress).to_dict()
    report["seconds"] = time.perf_counter() - start
    if out_dir is not None:
        write_report(out_dir, report)
    return report


def compare(dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per ``pivotrl eval`` output directory: policy, env, accuracy, success, tokens, seconds."""
    rows = []
    for d in dirs:
        path = Path(d) / "report.json"
        if not path.exists():
            raise FileNotFoundError(f"{d}: no report.json (is it a `pivotrl eval --out` directory?)")
        r = json.loads(path.read_text())
        rows.append({"run": str(d), "policy": r["policy"], "env_id": r["env_id"],
                     "accuracy": r.get("turn", {}).get("accuracy"), "turns": r.get("turn", {}).get("turns"),
                     "success_rate": r.get("episode", {}).get("success_rate"),
                     "episodes": r.get("episode", {}).get("episodes"), "seconds": r["seconds"]})
    return rows
