"""Labelled equivalence suites: our cascades vs the exact-match and NeMo baselines.

Bar, per domain: the cascade's precision >= 0.95 (a false "equivalent" is a reward for a wrong action,
which GRPO then reinforces; a missed equivalence only wastes a sample), and its F1 at least that of
each baseline. ``pytest -s`` prints the table.
"""

from __future__ import annotations

from collections import Counter

import pytest
from labelled import load_rows, score, suite_verdicts, terminal_verdicts, toolcall_suite

from pivot_envs import get_domain, verify_file
from verifiers import Verdict
from verifiers.judge import CallableBackend

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


def test_toolcall_suite_reads_schemas_as_people_write_them():
    rows = toolcall_suite()
    labels = [r["label"] for r in rows]
    assert len(rows) >= 60 and 0.3 < sum(labels) / len(labels) < 0.7
    results = {name: (labels, [v.to_dict() for v in suite_verdicts(name, rows)])
               for name in ("toolcall", "tool_use", "exact", "nemo")}
    check("toolcall", results)
    verdicts = results["toolcall"][1]
    # every failure class of the suite with its negative: defaults stated only in prose are all found
    prose = [i for i, r in enumerate(rows) if r["class"] == "description_default"]
    assert len(prose) >= 10 and all(verdicts[i]["equivalent"] for i in prose)
    assert not any(verdicts[i]["equivalent"] for i, r in enumerate(rows) if r["class"] == "default_differs")
    # every acceptance of two different spellings names the relaxations it used
    for r, v in zip(rows, verdicts, strict=True):
        if v["equivalent"] and r["expected"] != r["candidate"]:
            assert v["details"]["relaxations"], r["note"]
            assert any(x.startswith("default_from_description:") for x in v["details"]["relaxations"]) \
                or r["class"] != "description_default"


def test_a_judge_only_decides_what_the_rules_were_unsure_of():
    """With a judge that says yes to everything, only verdicts the rules marked uncertain can change."""
    rows = toolcall_suite()
    plain = suite_verdicts("tool_use", rows)
    from verifiers import make_verifier

    yes = make_verifier("tool_use", judge=CallableBackend(lambda prompt: "[[A=B]]", "always-yes"))
    judged = suite_verdicts(yes, rows)
    changed = [(r, a, b) for r, a, b in zip(rows, plain, judged, strict=True) if a.equivalent != b.equivalent]
    assert changed, "the suite has uncertain pairs a judge should settle"
    for r, before, after in changed:
        assert Verdict.uncertain.fget(before) and after.method == "judge", r["note"]
    assert yes.judge.stats["questions"] == len(changed) + sum(
        1 for a, b in zip(plain, judged, strict=True) if a.uncertain and a.equivalent == b.equivalent)
