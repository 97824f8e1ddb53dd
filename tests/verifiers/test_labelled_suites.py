"""Labelled equivalence suites: our cascades vs the exact-match and NeMo baselines.

Bar, per domain: the cascade's precision >= 0.95 (a false "equivalent" is a reward for a wrong action,
which GRPO then reinforces; a missed equivalence only wastes a sample), and its F1 at least that of
each baseline. ``pytest -s`` prints the table.
"""

from __future__ import annotations

from collections import Counter

import pytest
from labelled import load_rows, score, terminal_verdicts

from pivot_envs import get_domain
from verifiers import verify_file

PRECISION_BAR = 0.95


def report(domain, results):
    print(f"\n{domain}: {len(next(iter(results.values()))[0])} labelled pairs")
    for name, (labels, verdicts) in results.items():
        print("  " + score(labels, [v["equivalent"] for v in verdicts]).row(name))
    labels, verdicts = results[domain]
    by_method = Counter()
    correct = Counter()
    for label, v in zip(labels, verdicts, strict=True):
        by_method[(v["method"], v["equivalent"])] += 1
        correct[(v["method"], v["equivalent"])] += label == v["equivalent"]
    for (method, eq), n in sorted(by_method.items()):
        print(f"    {domain} {'accepts' if eq else 'rejects'} by {method:9}: {n:3} (correct {correct[(method, eq)]})")


def check(domain, results):
    report(domain, results)
    labels, verdicts = results[domain]
    ours = score(labels, [v["equivalent"] for v in verdicts])
    assert ours.precision >= PRECISION_BAR, ours.row(domain)
    for name, (lab, vs) in results.items():
        assert ours.f1 >= score(lab, [v["equivalent"] for v in vs]).f1, (domain, name)


def test_tool_use_suite():
    rows = load_rows("tool_use_pairs.jsonl")
    assert len(rows) >= 60
    labels = [r["label"] for r in rows]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    data = get_domain("tool_use").data_path()
    path = load_rows.__globals__["DATA"] / "tool_use_pairs.jsonl"
    results = {}
    for name in ("tool_use", "exact", "nemo", "toolcall"):
        out = verify_file(data, path, verifier=name)["rows"]
        assert not any(r["category"] in ("BAD_ROW", "UNKNOWN_TRAJECTORY", "TURN_OUT_OF_RANGE") for r in out)
        results[name] = (labels, out)
    check("tool_use", results)


@pytest.mark.slow
def test_terminal_suite():
    rows = load_rows("terminal_pairs.jsonl")
    assert len(rows) >= 60
    labels = [r["label"] for r in rows]
    results = {}
    for name, sandbox in (("terminal", True), ("exact", True), ("nemo", True), ("terminal (no sandbox)", False)):
        verifier = "terminal" if name.startswith("terminal") else name
        results[name] = (labels, [v.to_dict() for v in terminal_verdicts(verifier, rows, sandbox=sandbox)])
    check("terminal", results)
