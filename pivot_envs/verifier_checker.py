"""The verifier contract, checked over an environment's trajectories: ``check_verifier(env)``.

A verifier is valid for a domain iff it accepts the ground truth: at every turn of every trajectory the
demonstrated action (and its text rendering, parsed back) scores 1. Besides that the checker asks that
verdicts are well formed and deterministic, that ``verify_batch`` agrees with ``verify``, and that junk
candidates (an empty turn, an unterminated tool call, arguments that are not JSON, a tool that does not
exist) score 0 without raising. One test runs it over every registered domain with bundled data, so a
new domain or verifier needs no new test code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pivot_envs.actions import Action
from pivot_envs.core import TrajectoryEnv
from verifiers.core import METHODS, Verdict, Verifier, make_verifier

#: Candidates every verifier must score 0 at every turn, without raising.
JUNK = (
    "",
    "<tool_call>{",
    '<tool_call>{"name": "no_such_tool_zz", "arguments": "{not json"}</tool_call>',
    '<tool_call>{"name": "no_such_tool_zz", "arguments": {}}</tool_call>',
)


@dataclass
class VerifierCheckReport:
    verifier: str = ""
    trajectories: int = 0
    turns: int = 0
    problems: list[str] = field(default_factory=list)


def check_verifier(env: Any, *, verifier: str | Verifier | None = None, max_trajectories: int | None = None,
                   junk: bool = True) -> VerifierCheckReport:
    """Check ``verifier`` (default: each record's domain verifier) on ``env``'s trajectories.

    Raises ``AssertionError`` listing every problem; returns the report when all pass.
    """
    base = env.unwrapped
    if not isinstance(base, TrajectoryEnv):
        raise TypeError(f"expected a TrajectoryEnv (possibly wrapped), got {type(base).__name__}")
    if isinstance(verifier, str):
        verifier = make_verifier(verifier)
    report = VerifierCheckReport()
    ids = base.ids[:max_trajectories] if max_trajectories else base.ids
    names = set()
    for traj_id in ids:
        traj = base.trajectories[traj_id]
        v = verifier or base.verifier_for(traj)
        names.add(v.name)
        report.trajectories += 1
        for turn in range(traj.num_turns):
            report.turns += 1
            base.reset(options={"trajectory": traj_id, "turn": turn})
            _check_turn(v, base, f"{traj_id} turn {turn}", junk, report)
    report.verifier = ",".join(sorted(names))
    if report.problems:
        shown = "\n  ".join(report.problems[:20])
        more = f"\n  ... and {len(report.problems) - 20} more" if len(report.problems) > 20 else ""
        raise AssertionError(f"check_verifier({report.verifier}) found {len(report.problems)} problem(s):\n  {shown}{more}")
    return report


def _check_turn(v: Verifier, env: Any, where: str, junk: bool, report: VerifierCheckReport) -> None:
    expected: Action = env.expected_action()
    ctx = env.verify_context()
    fmt = env.domain_of(env.trajectory).action_format
    candidates = [expected, Action.parse(expected.to_text(), format=fmt)]
    if junk:
        candidates += [Action.parse(text, format=fmt) for text in JUNK]
    try:
        single = [v.verify(expected, c, ctx) for c in candidates]
        again = v.verify(expected, expected, ctx)
        batch = v.verify_batch(expected, candidates, ctx)
    except Exception as exc:  # noqa: BLE001 - report, do not stop at the first failing turn
        report.problems.append(f"{where}: {v.name} raised {type(exc).__name__}: {exc}")
        return
    for label, verdict in zip(["demonstration", "demonstration as text", *[f"junk {t!r}" for t in JUNK]], single,
                              strict=False):
        if not isinstance(verdict, Verdict) or verdict.method not in METHODS or not isinstance(verdict.category, str):
            report.problems.append(f"{where}: {label}: not a well-formed Verdict: {verdict!r}")
            return
        want = label.startswith("demonstration")
        if want and (verdict.score != 1.0 or not verdict.equivalent):
            report.problems.append(f"{where}: {label} scored {verdict.score} ({verdict.method}/{verdict.category})")
        if not want and (verdict.score != 0.0 or verdict.equivalent):
            report.problems.append(f"{where}: {label} scored {verdict.score} ({verdict.method}/{verdict.category})")
    if again != single[0]:
        report.problems.append(f"{where}: verdicts are not deterministic: {single[0]} then {again}")
    if [(b.score, b.category) for b in batch] != [(s.score, s.category) for s in single]:
        report.problems.append(f"{where}: verify_batch disagrees with verify: {batch} vs {single}")
