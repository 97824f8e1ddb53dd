"""Exact match: the ablation baseline of the paper (reward 1 only for the demonstrated string).

Normalisation is minimal and stated: surrounding whitespace of the content is stripped and tool-call
arguments are compared as canonical JSON (so key order does not matter). Reasoning is never compared.
"""

from __future__ import annotations

import json

from pivot_envs.actions import Action
from verifiers.core import DEGENERATE_ERRORS, Category, Verdict, Verifier, VerifyContext


def _canonical(action: Action) -> str:
    calls = [
        [c.name, json.dumps(c.arguments, sort_keys=True, ensure_ascii=False) if c.arguments is not None else c.raw_arguments]
        for c in action.tool_calls
    ]
    return json.dumps([action.content.strip(), calls], ensure_ascii=False)


class ExactMatch(Verifier):
    """Reward 1 iff the candidate renders to the same canonical text as the demonstration."""

    name = "exact"

    def verify(self, expected: Action, candidate: Action, context: VerifyContext | None = None) -> Verdict:
        if candidate.malformed:
            return Verdict.error(Category.BAD_FORMAT, candidate.malformed)
        try:
            same = _canonical(expected) == _canonical(candidate)
        except DEGENERATE_ERRORS as exc:  # nesting too deep to serialise, lone surrogates
            return Verdict.degenerate("exact match", exc)
        if same:
            return Verdict.accept("exact")
        return Verdict.reject("exact", Category.NOT_EXACT)
