"""check_verifier over every registered domain with bundled data (new domains are covered for free)."""

from __future__ import annotations

import pytest

import pivot_envs
from pivot_envs import TrajectoryEnv, check_verifier

DOMAINS = [d for d in pivot_envs.list_domains() if d.data_path() is not None]


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_the_demonstration_scores_one_everywhere(domain, local_shell_worlds):
    env = TrajectoryEnv(domain=domain.name)
    report = check_verifier(env)
    assert report.turns > 0
    env.close()


@pytest.mark.parametrize("verifier", ["tool_use", "toolcall", "exact"])
def test_tool_use_verifiers(verifier):
    env = TrajectoryEnv(domain="tool_use")
    report = check_verifier(env, verifier=verifier)
    assert report.trajectories == 200 and report.turns > 1000
    env.close()


def test_the_nemo_baseline_keeps_nemo_gyms_any_message_hole_and_the_checker_sees_it():
    # NeMo Gym's released comparator accepts any message where a message was expected, the empty one
    # included; `nemo` must agree with NeMo's verify(), so it keeps that hole, and the checker reports it.
    env = TrajectoryEnv(domain="tool_use")
    report = check_verifier(env, verifier="nemo", junk=False)
    assert report.trajectories == 200 and report.turns > 1000
    with pytest.raises(AssertionError, match="junk '' scored 1.0") as info:
        check_verifier(env, verifier="nemo", max_trajectories=5)
    assert "junk '<tool_call>" not in str(info.value)  # malformed calls still score 0
    env.close()


def test_a_broken_verifier_is_caught():
    from verifiers.exact import ExactMatch

    class AlwaysYes(ExactMatch):
        name = "yes"

        def verify(self, expected, candidate, context=None):
            from verifiers import Verdict

            return Verdict.accept("rule")

    env = TrajectoryEnv(domain="tool_use")
    with pytest.raises(AssertionError, match="junk"):
        check_verifier(env, verifier=AlwaysYes(), max_trajectories=1)
    env.close()
