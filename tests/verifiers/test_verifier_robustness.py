"""Bad model output is data: no verifier raises on it, and none rewards it."""

from __future__ import annotations

import random

import pytest

from pivot_envs import TrajectoryEnv
from pivot_envs.actions import Action
from verifiers import METHODS, Verdict, list_verifiers, make_verifier
from verifiers.judge import CallableBackend

JUNK = [
    "", "   ", "<tool_call>", "<tool_call>{", "<tool_call>[]</tool_call>", "<tool_call>{}</tool_call>",
    '<tool_call>{"name": 3}</tool_call>', '<tool_call>{"name": "get_order_details", "arguments": 7}</tool_call>',
    '<tool_call>{"name": "get_order_details", "arguments": {"order_id": null}}</tool_call>',
    '<tool_call>{"name": "get_order_details", "arguments": {"order_id": ["W1"]}}</tool_call>',
    '<tool_call>{"name": "cancel_pending_order", "arguments": {"order_id": {"$ne": 1}, "reason": 1e308}}</tool_call>',
    '<tool_call>{"name": "bash", "arguments": {"command": "\\u0000"}}</tool_call>',
    '<tool_call>{"name": "str_replace_editor", "arguments": {"command": "str_replace", "path": "../../etc/passwd"}}</tool_call>',
    '<tool_call>{"name": "search", "arguments": {"query": ""}}</tool_call>',
    "<think>unterminated", "\x00\x01\x02", "😀" * 50,
]


def verifiers():
    out = []
    for name in list_verifiers():
        kwargs = {"backend": CallableBackend(lambda p: "[[A!=B]]", "no")} if name == "judge" else {}
        out.append(make_verifier(name, **kwargs))
    return out


@pytest.mark.parametrize("verifier", verifiers(), ids=lambda v: v.name)
def test_junk_never_raises_nor_scores(verifier, tool_use_records):
    env = TrajectoryEnv(tool_use_records[:3], domain="tool_use")
    rng = random.Random(0)
    try:
        for traj in tool_use_records[:3]:
            for turn in range(traj.num_turns):
                env.reset(options={"trajectory": traj.id, "turn": turn})
                ctx = env.verify_context()
                cands = [Action.parse(j) for j in JUNK] + [Action.parse("".join(rng.sample(JUNK, 3)))]
                expected = env.expected_action()
                for cand, verdict in zip(cands, verifier.verify_batch(expected, cands, ctx), strict=True):
                    assert isinstance(verdict, Verdict) and verdict.method in METHODS
                    if verifier.name == "nemo" and expected.kind == "message" and cand.kind == "message":
                        continue  # NeMo's released rule rewards any non-empty message (reproduced on purpose)
                    assert verdict.score == 0.0, (verifier.name, verdict)
    finally:
        env.close()
