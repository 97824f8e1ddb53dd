"""Labelled equivalence suites (tests/data/*_pairs.jsonl) and precision/recall over them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivot_envs.actions import Action, ToolCall
from pivot_envs.domain import GENERIC
from verifiers import Verdict, Verifier, VerifyContext, make_verifier

DATA = Path(__file__).resolve().parents[1] / "data"
BASH_TOOLS = [{"type": "function", "function": {"name": "bash", "description": "Run a shell command.", "parameters": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]


def load_rows(name: str) -> list[dict[str, Any]]:
    with open(DATA / name) as f:
        return [json.loads(line) for line in f if line.strip()]


def bash(command: str) -> Action:
    return Action(tool_calls=(ToolCall.from_parts("bash", {"command": command}),))


def terminal_verdicts(verifier: Verifier | str, rows: Sequence[dict[str, Any]], *, sandbox: bool = True,
                      sandbox_factory: Any = None) -> list[Verdict]:
    """Score terminal pairs: one sandbox per (env, prefix, gold) group (local unless ``sandbox_factory``,
    e.g. ``DockerSandbox``, is given), candidates in one batch."""
    from sandboxes.local import LocalSandbox

    factory = sandbox_factory or LocalSandbox

    v = make_verifier(verifier) if isinstance(verifier, str) else verifier
    envs = json.loads((DATA / "terminal_envs.json").read_text())
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r["env"], tuple(r["prefix_commands"]), r["gold"]), []).append(i)
    out: list[Verdict | None] = [None] * len(rows)
    for (env_name, prefix, gold), members in groups.items():
        spec = envs[env_name]
        ctx = VerifyContext(tools=BASH_TOOLS, executor=GENERIC.execute)
        sb = None
        if sandbox:
            sb = factory(files=spec["files"], setup=spec.get("setup", ()), timeout=spec.get("timeout", 10))
            for command in prefix:
                assert sb.exec(command).ok, command
            ctx.sandbox = sb
        try:
            verdicts = v.verify_batch(bash(gold), [bash(rows[i]["candidate"]) for i in members], ctx)
        finally:
            if sb is not None:
                sb.close()
        for i, verdict in zip(members, verdicts, strict=True):
            out[i] = verdict
    return [v for v in out if v is not None]


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def row(self, name: str) -> str:
        return (f"{name:28} P={self.precision:.3f} R={self.recall:.3f} F1={self.f1:.3f} "
                f"(tp={self.tp} fp={self.fp} fn={self.fn} tn={self.tn})")


def score(labels: Sequence[bool], predictions: Sequence[bool]) -> Scores:
    s = Scores()
    for label, pred in zip(labels, predictions, strict=True):
        if pred and label:
            s.tp += 1
        elif pred:
            s.fp += 1
        elif label:
            s.fn += 1
        else:
            s.tn += 1
    return s


def toolcall_suite(name: str = "toolcall_pairs.jsonl", tools: str = "toolcall_tools.json") -> list[dict[str, Any]]:
    """The rule-level tool-call suite: API-style schemas whose descriptions state defaults in prose, and
    pairs of every relaxation class and its negative. Rows gain ``expected_action``, ``candidate_action``
    and ``context`` (no sandbox: these records carry no world, as with plain chat datasets)."""
    ctx = VerifyContext(tools=json.loads((DATA / tools).read_text()))
    rows = load_rows(name)
    for r in rows:
        r["expected_action"] = Action(tool_calls=(ToolCall.from_parts(r["tool"], r["expected"]),))
        r["candidate_action"] = Action(tool_calls=(ToolCall.from_parts(r.get("candidate_tool", r["tool"]),
                                                                       r["candidate"]),))
        r["context"] = ctx
    return rows


def suite_verdicts(verifier: Verifier | str, rows: Sequence[dict[str, Any]]) -> list[Verdict]:
    v = make_verifier(verifier) if isinstance(verifier, str) else verifier
    return [v.verify(r["expected_action"], r["candidate_action"], r["context"]) for r in rows]
