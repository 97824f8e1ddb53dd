"""Statistics of the demo's report: bootstrap intervals, paired differences, and the claims' decision rules.

Pure functions on plain data (numpy only, seeded), so the report's verdicts follow from the numbers by
rules fixed here, in code, before any run.

**Units and clusters.** A score is one unit's result in [0, 1]: a held-out turn's functional reward, a
task's success, an OOD item's exact match. Units are grouped in **clusters** that are resampled whole:
the turns of one held-out trajectory depend on each other (same task, same world), so a per-turn
accuracy is bootstrapped by resampling trajectories, never single turns. A task or an OOD item is its
own cluster. A sample is ``{cluster id: [unit scores]}``.

**Strata.** A figure averaged over domains (or over OOD families) is the unweighted mean of one pooled
accuracy per stratum; each stratum's clusters are resampled separately, so every replicate keeps each
domain's size.

**Paired differences.** ``difference(a, b)`` resamples the same clusters for both arms (the two methods
were scored on the same held-out trajectories), which removes the between-task variance both share.
A difference is called significant only when its interval excludes 0.

**Decision rules** (:func:`sign_verdict`, :func:`noninferiority_verdict`, :func:`combine`, and the
per-claim functions below). The wording of each rule is :data:`RULES`, printed in the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RESAMPLES = 2000
"""Bootstrap replicates per interval."""
CONFIDENCE = 0.95
NONINFERIORITY_MARGIN = 0.05
"""How much worse (5 points of accuracy) still counts as "keeps" or "competitive"."""

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

Sample = Mapping[str, Sequence[float]]
"""Unit scores per cluster id (a trajectory's turns, a task, an OOD item)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval (fractions; ``value`` is the statistic on the data)."""

    value: float
    lo: float
    hi: float
    units: int
    clusters: int
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pct(self, signed: bool = False) -> str:
        """``61.2 [55.0, 67.1]`` in points (signed: ``+4.0 [+0.5, +7.6]``)."""
        f = "{:+.1f}" if signed else "{:.1f}"
        return f"{f.format(100 * self.value)} [{f.format(100 * self.lo)}, {f.format(100 * self.hi)}]"


def _stratum(arms: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-cluster sums (clusters x arms) and unit counts; every arm must hold the same clusters and units."""
    ids = sorted(arms[0])
    for arm in arms[1:]:
        if sorted(arm) != ids:
            raise ValueError("paired samples must hold the same clusters (the same held-out trajectories)")
    if not ids:
        raise ValueError("a stratum without clusters has no accuracy")
    counts = np.array([len(arms[0][c]) for c in ids], dtype=float)
    for arm in arms[1:]:
        if any(len(arm[c]) != n for c, n in zip(ids, counts, strict=True)):
            raise ValueError("paired samples must score the same units in every cluster")
    if counts.min() < 1:
        raise ValueError("every cluster needs at least one unit")
    sums = np.array([[float(np.sum(arm[c])) for arm in arms] for c in ids])
    return sums, counts, int(counts.sum())


def _estimate(strata: Sequence[Sequence[Sample]], weights: Sequence[float], *, resamples: int, seed: int,
              confidence: float) -> Estimate:
    """The contrast ``sum_k weights[k] * arm_k`` of stratum-averaged pooled accuracies, with its interval.

    ``strata[s][k]`` is arm k's sample in stratum s. Every replicate draws each stratum's clusters with
    replacement (the same draw for every arm) and recomputes the contrast; the interval is the percentile
    interval of the replicates.
    """
    if not strata:
        raise ValueError("no data to estimate from")
    w = np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    point = 0.0
    reps = np.zeros(resamples)
    units = clusters = 0
    for arms in strata:
        if len(arms) != len(w):
            raise ValueError(f"{len(arms)} arms for {len(w)} weights")
        sums, counts, n = _stratum(arms)
        units += n
        clusters += len(counts)
        point += float(w @ (sums.sum(axis=0) / counts.sum()))
        draws = rng.integers(0, len(counts), size=(resamples, len(counts)))
        rep_sums = sums[draws].sum(axis=1)  # (resamples, arms)
        rep_counts = counts[draws].sum(axis=1)
        reps += (rep_sums / rep_counts[:, None]) @ w
    k = len(strata)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(reps / k, [alpha, 1 - alpha])
    return Estimate(point / k, float(lo), float(hi), units, clusters, confidence, resamples)


def accuracy(strata: Sequence[Sample] | Sample, *, resamples: int = RESAMPLES, seed: int = 0,
             confidence: float = CONFIDENCE) -> Estimate:
    """Pooled accuracy (units right / units) with a cluster-bootstrap interval; several strata: their mean."""
    strata = [strata] if isinstance(strata, Mapping) else list(strata)
    return _estimate([[s] for s in strata], [1.0], resamples=resamples, seed=seed, confidence=confidence)


def difference(a: Sequence[Sample] | Sample, b: Sequence[Sample] | Sample, *, resamples: int = RESAMPLES,
               seed: int = 0, confidence: float = CONFIDENCE) -> Estimate:
    """``a - b`` of two methods scored on the same clusters, with a paired cluster-bootstrap interval."""
    a = [a] if isinstance(a, Mapping) else list(a)
    b = [b] if isinstance(b, Mapping) else list(b)
    if len(a) != len(b):
        raise ValueError("both arms need the same strata")
    return _estimate([[x, y] for x, y in zip(a, b, strict=True)], [1.0, -1.0], resamples=resamples, seed=seed,
                     confidence=confidence)


def half_width_at(p: float, units: int, design_effect: float = 1.0) -> float:
    """Normal-approximation half-width of a 95% interval on an accuracy near ``p`` over ``units`` units
    (times the square root of the clustering's design effect): the planning figure for held-out sizes."""
    return 1.96 * math.sqrt(max(p * (1 - p), 0.0) * design_effect / max(units, 1))


def mean_over(samples: Sequence[Sample]) -> dict[str, list[float]]:
    """Unit-wise mean of several samples of the same units (seeds, or the per-domain models' OOD answers)."""
    if not samples:
        raise ValueError("nothing to average")
    ids = sorted(samples[0])
    if any(sorted(s) != ids for s in samples[1:]):
        raise ValueError("samples to average must hold the same clusters")
    return {c: list(np.mean([np.asarray(s[c], dtype=float) for s in samples], axis=0)) for c in ids}


# ---------------------------------------------------------------------------------------------------
# Decision rules


RULES = {
    "sign": "reproduced if the 95% interval of the paired difference lies above 0, not reproduced if it lies "
            "below 0, inconclusive if it contains 0.",
    "noninferior": f"reproduced if the interval's lower end is above -{100 * NONINFERIORITY_MARGIN:.0f} points, "
                   f"not reproduced if its upper end is below -{100 * NONINFERIORITY_MARGIN:.0f} points, "
                   "inconclusive otherwise.",
    "combine": "a claim with several parts is reproduced if every part is, not reproduced if any part is not, "
               "inconclusive otherwise; a part that was not run is inconclusive.",
    "a": "(a) PivotRL - SFT, per-turn accuracy on held-out trajectories averaged over the domains: sign rule.",
    "b": "(b) two parts: PivotRL - SFT OOD accuracy (sign rule), and PivotRL - base OOD accuracy "
         "(non-inferiority rule: PivotRL keeps the base's OOD ability).",
    "c": "(c) two parts, on tool-use per-turn accuracy: PivotRL - PivotRL on random turns (sign rule), and "
         "PivotRL - PivotRL with an exact-match reward (sign rule).",
    "d": "(d) two parts, on the curve domain's checkpoint evaluations: accuracy, PivotRL's final - E2E RL's "
         "best checkpoint (non-inferiority rule); cost, the rollout turns and the wall-clock each method "
         "spent (profiling included) until its first checkpoint after step 0 at or above E2E RL's best "
         "accuracy: reproduced if PivotRL gets there and both ratios E2E/PivotRL are above 1, not reproduced "
         "if both are below 1, or if PivotRL never gets there and the accuracy difference's interval lies "
         "below 0; inconclusive otherwise.",
}


def sign_verdict(diff: Estimate | None) -> str:
    """The paper says ``diff > 0``: see ``RULES["sign"]``; None (not run) is inconclusive."""
    if diff is None:
        return INCONCLUSIVE
    if diff.lo > 0:
        return REPRODUCED
    if diff.hi < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def noninferiority_verdict(diff: Estimate | None, margin: float = NONINFERIORITY_MARGIN) -> str:
    """The paper says ``diff >= 0`` up to noise ("keeps", "competitive"): see ``RULES["noninferior"]``."""
    if diff is None:
        return INCONCLUSIVE
    if diff.lo > -margin:
        return REPRODUCED
    if diff.hi < -margin:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine(*verdicts: str) -> str:
    """See ``RULES["combine"]``."""
    if not verdicts:
        return INCONCLUSIVE
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE


@dataclass(frozen=True)
class CurvePoint:
    """One checkpoint evaluation: its training step, the cumulative rollout turns and wall-clock seconds
    spent training up to it (profiling included, evaluation excluded), and its held-out accuracy."""

    step: int
    rollout_turns: float
    wall_clock_s: float
    accuracy: float


def first_reaching(curve: Sequence[CurvePoint], target: float) -> CurvePoint | None:
    """The first checkpoint after step 0 with accuracy >= ``target`` (step 0 is the untrained model)."""
    return next((p for p in curve if p.step > 0 and p.accuracy >= target), None)


def equal_accuracy(pivotrl: Sequence[CurvePoint], e2e: Sequence[CurvePoint]) -> dict[str, Any]:
    """The paper's comparison: what each method spent to reach the accuracy E2E RL reaches (its best
    checkpoint after step 0). Returns the target, both methods' first checkpoints at it, and the ratios
    E2E/PivotRL of rollout turns and wall-clock (None where PivotRL never gets there)."""
    trained = [p for p in e2e if p.step > 0]
    if not trained or not any(p.step > 0 for p in pivotrl):
        return {"target": None, "e2e": None, "pivotrl": None, "turn_ratio": None, "time_ratio": None}
    target = max(p.accuracy for p in trained)
    at_e = first_reaching(e2e, target)
    at_p = first_reaching(pivotrl, target)
    out: dict[str, Any] = {"target": target, "e2e": asdict(at_e) if at_e else None,
                           "pivotrl": asdict(at_p) if at_p else None, "turn_ratio": None, "time_ratio": None,
                           "pivotrl_best": max(p.accuracy for p in pivotrl if p.step > 0)}
    if at_p is not None and at_e is not None:
        out["turn_ratio"] = at_e.rollout_turns / at_p.rollout_turns if at_p.rollout_turns > 0 else None
        out["time_ratio"] = at_e.wall_clock_s / at_p.wall_clock_s if at_p.wall_clock_s > 0 else None
    return out


def cost_verdict(comparison: Mapping[str, Any] | None, accuracy_diff: Estimate | None) -> str:
    """Claim (d)'s cost part: see ``RULES["d"]``."""
    if not comparison or comparison.get("target") is None:
        return INCONCLUSIVE
    if comparison.get("pivotrl") is None:  # PivotRL never reached E2E RL's best accuracy
        return NOT_REPRODUCED if accuracy_diff is not None and accuracy_diff.hi < 0 else INCONCLUSIVE
    turns, time = comparison["turn_ratio"], comparison["time_ratio"]
    if turns is None or time is None:
        return INCONCLUSIVE
    if turns > 1 and time > 1:
        return REPRODUCED
    if turns < 1 and time < 1:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def claims(*, pivotrl_vs_sft: Estimate | None, ood_pivotrl_vs_sft: Estimate | None,
           ood_pivotrl_vs_base: Estimate | None, pivotrl_vs_random_turns: Estimate | None,
           pivotrl_vs_exact_match: Estimate | None, pivotrl_vs_e2e: Estimate | None,
           equal_accuracy_comparison: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every claim's parts and verdict, by the rules of :data:`RULES` (None: that part was not run)."""
    parts = {
        "a": {"PivotRL - SFT (in-domain)": (pivotrl_vs_sft, sign_verdict(pivotrl_vs_sft))},
        "b": {"PivotRL - SFT (OOD)": (ood_pivotrl_vs_sft, sign_verdict(ood_pivotrl_vs_sft)),
              "PivotRL - base (OOD)": (ood_pivotrl_vs_base, noninferiority_verdict(ood_pivotrl_vs_base))},
        "c": {"PivotRL - random turns": (pivotrl_vs_random_turns, sign_verdict(pivotrl_vs_random_turns)),
              "PivotRL - exact-match reward": (pivotrl_vs_exact_match, sign_verdict(pivotrl_vs_exact_match))},
        "d": {"PivotRL final - E2E RL best": (pivotrl_vs_e2e, noninferiority_verdict(pivotrl_vs_e2e)),
              "cost to E2E RL's best accuracy": (None, cost_verdict(equal_accuracy_comparison, pivotrl_vs_e2e))},
    }
    out = {}
    for claim, ps in parts.items():
        out[claim] = {"rule": RULES[claim],
                      "parts": {name: {"estimate": est.to_dict() if est else None, "verdict": v}
                                for name, (est, v) in ps.items()},
                      "verdict": combine(*(v for _, v in ps.values()))}
    out["d"]["comparison"] = dict(equal_accuracy_comparison) if equal_accuracy_comparison else None
    return out
