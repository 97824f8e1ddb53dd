"""check_verifier over every registered domain with bundled data (new domains are covered for free)."""

from __future__ import annotations

import pytest

import pivot_envs
from pivot_envs import TrajectoryEnv
from verifiers import check_verifier

DOMAINS = [d for d in pivot_envs.list_domains() if d.data_path() is not None]


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_the_demonstration_scores_one_everywhere(domain, local_shell_worlds):
    env = TrajectoryEnv(domain=domain.name)
    report = check_verifier(env)
    assert report.turns > 0
    env.close()


@pytest.mark.parametrize("verifier", ["tool_use", "toolcall", "exact", "nemo"])
def test_tool_use_verifiers(verifier):
    env = TrajectoryEnv(domain="tool_use")
    report = check_verifier(env, verifier=verifier)
    assert report.trajectories == 200 and report.turns > 1000
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
