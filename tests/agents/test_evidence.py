"""agents.evidence: cluster-bootstrap intervals, paired differences, and the claims' decision rules as written."""

from __future__ import annotations

import numpy as np
import pytest

from agents import evidence as ev
from agents.evidence import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    CurvePoint,
    Estimate,
    accuracy,
    claims,
    combine,
    cost_verdict,
    difference,
    equal_accuracy,
    noninferiority_verdict,
    sign_verdict,
)


def _sample(rng, n_clusters, p, turns=(3, 9)):
    """Clusters with a cluster-level accuracy drawn around p (turns of one cluster are correlated)."""
    out = {}
    for c in range(n_clusters):
        q = float(np.clip(rng.normal(p, 0.2), 0, 1))
        out[f"t{c:03d}"] = list((rng.random(int(rng.integers(*turns))) < q).astype(float))
    return out


def test_point_estimate_is_the_pooled_accuracy_and_lies_in_its_interval():
    sample = {"a": [1, 1, 0], "b": [0], "c": [1, 0, 0, 0]}
    est = accuracy(sample, resamples=500)
    assert est.value == pytest.approx(3 / 8)  # pooled over turns, not the mean of cluster means
    assert est.lo <= est.value <= est.hi
    assert (est.units, est.clusters) == (8, 3)


def test_intervals_are_seeded_and_shrink_with_more_clusters():
    rng = np.random.default_rng(0)
    small, large = _sample(rng, 20, 0.5), _sample(rng, 400, 0.5)
    assert accuracy(small, seed=3) == accuracy(small, seed=3)
    assert accuracy(large).half_width < accuracy(small).half_width / 2


def test_resampling_clusters_is_wider_than_resampling_turns_when_turns_correlate():
    """Whole trajectories right or wrong: the cluster bootstrap must not pretend the turns are independent."""
    rng = np.random.default_rng(1)
    clustered = {f"t{c}": [float(rng.random() < 0.5)] * 8 for c in range(60)}
    as_turns = {f"{c}-{i}": [v] for c, vs in clustered.items() for i, v in enumerate(vs)}
    assert accuracy(clustered).value == pytest.approx(accuracy(as_turns).value)
    assert accuracy(clustered).half_width > 2 * accuracy(as_turns).half_width


def test_strata_average_domains_with_equal_weight():
    big = {f"x{i}": [1.0] * 5 for i in range(50)}
    small = {"y0": [0.0], "y1": [0.0]}
    est = accuracy([big, small], resamples=200)
    assert est.value == pytest.approx(0.5)
    assert est.lo == pytest.approx(0.5) and est.hi == pytest.approx(0.5)  # no variance in either stratum


def test_a_paired_difference_sees_what_unpaired_intervals_hide():
    """Both methods vary a lot across tasks, but b is right on every turn a is, and on a few more."""
    rng = np.random.default_rng(2)
    a = _sample(rng, 150, 0.5)
    b = {c: list(v) for c, v in a.items()}
    for c in list(b)[::4]:
        b[c][0] = 1.0
    est_a, est_b, diff = accuracy(a), accuracy(b), difference(b, a)
    assert est_b.lo < est_a.hi  # the two intervals overlap ...
    assert diff.lo > 0 and diff.excludes_zero()  # ... yet the paired difference is significant
    assert diff.value == pytest.approx(est_b.value - est_a.value)


def test_paired_samples_must_match():
    with pytest.raises(ValueError, match="same clusters"):
        difference({"a": [1.0]}, {"b": [1.0]})
    with pytest.raises(ValueError, match="same units"):
        difference({"a": [1.0, 0.0]}, {"a": [1.0]})
    with pytest.raises(ValueError, match="without clusters"):
        accuracy({})


def test_mean_over_seeds_is_unit_wise():
    assert ev.mean_over([{"a": [1, 0]}, {"a": [0, 0]}]) == {"a": [0.5, 0.0]}


def test_planning_half_width_is_five_points_at_400_turns():
    assert ev.half_width_at(0.5, 400) == pytest.approx(0.049, abs=1e-3)
    assert ev.half_width_at(0.5, 400, design_effect=2) > ev.half_width_at(0.5, 400)


def _est(value, lo, hi):
    return Estimate(value, lo, hi, units=100, clusters=10)


@pytest.mark.parametrize(("interval", "verdict"), [
    ((0.04, 0.01, 0.07), REPRODUCED),
    ((-0.04, -0.07, -0.01), NOT_REPRODUCED),
    ((0.02, -0.01, 0.05), INCONCLUSIVE),
    ((0.0, 0.0, 0.05), INCONCLUSIVE),  # an end at 0 does not exclude 0
])
def test_sign_rule(interval, verdict):
    assert sign_verdict(_est(*interval)) == verdict


def test_sign_rule_without_data_is_inconclusive():
    assert sign_verdict(None) == INCONCLUSIVE
    assert noninferiority_verdict(None) == INCONCLUSIVE


@pytest.mark.parametrize(("interval", "verdict"), [
    ((-0.01, -0.04, 0.02), REPRODUCED),  # within the 5-point margin
    ((-0.10, -0.14, -0.06), NOT_REPRODUCED),  # surely more than 5 points worse
    ((-0.05, -0.09, -0.01), INCONCLUSIVE),
])
def test_noninferiority_rule(interval, verdict):
    assert ev.NONINFERIORITY_MARGIN == 0.05
    assert noninferiority_verdict(_est(*interval)) == verdict


def test_combine_rule():
    assert combine(REPRODUCED, REPRODUCED) == REPRODUCED
    assert combine(REPRODUCED, INCONCLUSIVE) == INCONCLUSIVE
    assert combine(INCONCLUSIVE, NOT_REPRODUCED) == NOT_REPRODUCED
    assert combine() == INCONCLUSIVE


def _curve(points):
    return [CurvePoint(step, turns, secs, acc) for step, turns, secs, acc in points]


PIVOT = _curve([(0, 400, 40, 0.30), (5, 560, 60, 0.45), (10, 720, 80, 0.50)])


def test_equal_accuracy_costs_are_read_at_the_first_checkpoint_reaching_e2es_best():
    e2e = _curve([(0, 0, 5, 0.30), (2, 800, 100, 0.40), (4, 1600, 200, 0.44), (6, 2400, 300, 0.42)])
    cmp = equal_accuracy(PIVOT, e2e)
    assert cmp["target"] == 0.44
    assert cmp["e2e"]["step"] == 4 and cmp["pivotrl"]["step"] == 5
    assert cmp["turn_ratio"] == pytest.approx(1600 / 560) and cmp["time_ratio"] == pytest.approx(200 / 60)
    assert cost_verdict(cmp, None) == REPRODUCED


def test_step_zero_never_counts_as_reaching():
    e2e = _curve([(0, 0, 5, 0.30), (2, 100, 10, 0.20)])  # E2E got worse; its best trained checkpoint is 0.20
    cmp = equal_accuracy(PIVOT, e2e)
    assert cmp["pivotrl"]["step"] == 5  # not step 0, although the base already scores 0.30
    assert cost_verdict(cmp, None) == NOT_REPRODUCED  # E2E got there with fewer turns and less time


def test_cost_rule_each_outcome():
    e2e_cheap_turns = _curve([(0, 0, 0, 0.3), (2, 300, 500, 0.45)])  # fewer turns, more time: split
    assert cost_verdict(equal_accuracy(PIVOT, e2e_cheap_turns), None) == INCONCLUSIVE
    e2e_better = _curve([(0, 0, 0, 0.3), (2, 5000, 500, 0.70)])  # PivotRL never reaches 0.70
    cmp = equal_accuracy(PIVOT, e2e_better)
    assert cmp["pivotrl"] is None and cmp["turn_ratio"] is None
    assert cost_verdict(cmp, _est(-0.2, -0.3, -0.1)) == NOT_REPRODUCED  # and is significantly below
    assert cost_verdict(cmp, _est(-0.2, -0.4, 0.01)) == INCONCLUSIVE  # or not significantly
    assert cost_verdict(None, None) == INCONCLUSIVE  # not run


def test_claims_table_applies_each_rule_and_reaches_every_outcome():
    up, down, flat = _est(0.05, 0.02, 0.08), _est(-0.12, -0.2, -0.08), _est(0.0, -0.03, 0.03)
    e2e = _curve([(0, 0, 5, 0.30), (2, 800, 100, 0.44)])
    result = claims(pivotrl_vs_sft=up, ood_pivotrl_vs_sft=up, ood_pivotrl_vs_base=flat,
                    pivotrl_vs_random_turns=up, pivotrl_vs_exact_match=down, pivotrl_vs_e2e=flat,
                    equal_accuracy_comparison=equal_accuracy(PIVOT, e2e))
    assert result["a"]["verdict"] == REPRODUCED
    assert result["b"]["verdict"] == REPRODUCED  # better than SFT, and within the margin of the base
    assert result["c"]["verdict"] == NOT_REPRODUCED  # one part significantly the other way
    assert result["c"]["parts"]["PivotRL - random turns"]["verdict"] == REPRODUCED
    assert result["d"]["verdict"] == REPRODUCED
    assert {c["rule"] for c in result.values()} == {ev.RULES[k] for k in "abcd"}
    none = claims(pivotrl_vs_sft=flat, ood_pivotrl_vs_sft=None, ood_pivotrl_vs_base=None,
                  pivotrl_vs_random_turns=None, pivotrl_vs_exact_match=None, pivotrl_vs_e2e=None,
                  equal_accuracy_comparison=None)
    assert {c["verdict"] for c in none.values()} == {INCONCLUSIVE}  # not run, or not significant
    assert none["a"]["parts"]["PivotRL - SFT (in-domain)"]["estimate"]["value"] == 0.0
