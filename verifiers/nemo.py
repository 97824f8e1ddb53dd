"""NeMo-Gym-compatible argument comparator (``make_verifier("nemo")``): the released PivotRL rule.

A re-implementation of ``ActionComparator`` from NeMo Gym's
``single_step_tool_use_with_argument_comparison`` resources server (nemo-gym 0.7.0), so results can be
compared with NVIDIA's recipe. Its rules, kept as they are, quirks included:

* a message is expected: **any** message scores 1 (NeMo's rule; exploitable, see
  :mod:`verifiers.messages`), a tool call scores 0; a call is expected: a message scores 0;
* tool names must be equal as written (no alias normalisation, no schema defaults);
* ``isinstance(actual, type(expected))`` type check: ``2.0`` for an expected ``2`` fails, ``True`` for an
  expected ``1`` passes (bool is an int in Python);
* objects need identical key sets; lists equal length, compared **in order**;
* expected floats match within ``float_tolerance`` (absolute, 1e-6);
* strings: when either side has fewer than two whitespace words, exact equality (case and spaces count);
  else lower-cased word-count overlap ``|A & B| / (|A| + |B|)`` (at most 0.5) >= ``word_threshold``
  (0.1, the pivot datasets' setting);
* parallel calls: maximum bipartite matching; by default (``strict_count=False``, NeMo's
  ``parallel_tool_call_rewarding=False``) every expected call needs a distinct matching call and extra
  calls cost nothing; ``strict_count=True`` requires equal counts.

Categories are mapped to ours (``details["nemo_category"]`` keeps NeMo's name). A test checks agreement
with nemo-gym itself when it is installed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pivot_envs.actions import Action, ToolCall
from verifiers.core import DEGENERATE_ERRORS, Category, Verdict, Verifier, VerifyContext
from verifiers.toolcall import max_matching

_NEMO_TO_OURS = {
    "UNEXPECTED_TOOL": Category.WRONG_TOOL,
    "ARGUMENTS_DECODE_ERROR": Category.BAD_JSON,
    "ARGUMENT_VALUE_TYPE_DIFFERENT": Category.ARG_TYPE,
    "ARGUMENT_OBJECT_KEYS_DIFFERENT": Category.ARG_EXTRA,
    "ARGUMENT_LIST_LENGTH_DIFFERENT": Category.ARG_VALUE,
    "ARGUMENT_VALUE_DIFFERENT": Category.ARG_VALUE,
    "FUNCTION_CALL_BATCH_LENGTH_DIFFERENT": Category.CALL_COUNT,
}


class NemoComparator(Verifier):
    """NeMo Gym's single-step argument comparison (see the module docstring).

    Args:
        word_threshold: ``word_count_similarity_threshold``.
        float_tolerance: ``floating_point_comparison_threshold``.
        strict_count: Require as many calls as expected (NeMo's ``parallel_tool_call_rewarding`` with
            neither subset nor superset allowed, binary reward).
    """

    name = "nemo"

    def __init__(self, word_threshold: float = 0.1, float_tolerance: float = 1e-6, strict_count: bool = False):
        self.word_threshold, self.float_tolerance, self.strict_count = word_threshold, float_tolerance, strict_count

    def verify(self, expected: Action, candidate: Action, context: VerifyContext | None = None) -> Verdict:
        try:
            return self._verify(expected, candidate)
        except DEGENERATE_ERRORS as exc:  # deep nesting, huge numbers: data, not a crash (not in NeMo's rule)
            return Verdict.degenerate("nemo comparator", exc)

    def _verify(self, expected: Action, candidate: Action) -> Verdict:
        if candidate.parse_error:
            return Verdict.error(Category.BAD_FORMAT, candidate.parse_error)
        if candidate.kind == "message" and not candidate.content.strip():
            return Verdict.reject("rule", Category.EMPTY, nemo_category="NO_ACTION_FOUND")
        if expected.kind == "message":
            if candidate.kind == "message":
                return Verdict.accept("rule", nemo_category="EXPECTED_CHAT_MESSAGE_FOUND")
            return Verdict.reject("rule", Category.WRONG_KIND, nemo_category="NO_EXPECTED_CHAT_MESSAGE")
        if candidate.kind == "message":
            return Verdict.reject("rule", Category.WRONG_KIND, nemo_category="NO_EXPECTED_TOOL_CALL")
        exp, got = expected.tool_calls, candidate.tool_calls
        if len(exp) == 1 and len(got) == 1:
            return self._result(*self.compare_call(exp[0], got[0]))
        if self.strict_count and len(exp) != len(got):
            return self._result(False, "FUNCTION_CALL_BATCH_LENGTH_DIFFERENT")
        results = [[self.compare_call(e, g) for g in got] for e in exp]
        matching = max_matching(len(exp), len(got), lambda i, j: results[i][j][0])
        if len(matching) == len(exp):
            return self._result(True, "EXPECTED_TOOL_CALL_BATCH")
        if len(matching) == len(got):
            return self._result(False, "FUNCTION_CALL_BATCH_LENGTH_DIFFERENT")
        i = next(i for i in range(len(exp)) if i not in matching)
        reason = next((c for ok, c in results[i] if not ok and c != "UNEXPECTED_TOOL"), "UNEXPECTED_TOOL")
        return self._result(False, reason)

    @staticmethod
    def _result(ok: bool, nemo_category: str) -> Verdict:
        if ok:
            return Verdict.accept("rule", nemo_category=nemo_category)
        category = _NEMO_TO_OURS.get(nemo_category, Category.ARG_VALUE)
        if category == Category.BAD_JSON:
            return Verdict.error(category, "arguments are not valid JSON", nemo_category=nemo_category)
        return Verdict.reject("rule", category, nemo_category=nemo_category)

    def compare_call(self, expected: ToolCall, actual: ToolCall) -> tuple[bool, str]:
        """(match, NeMo category) for one call."""
        if expected.name != actual.name:
            return False, "UNEXPECTED_TOOL"
        try:
            want = json.loads(expected.raw_arguments) if expected.arguments is None else expected.arguments
            got = json.loads(actual.raw_arguments) if actual.arguments is None else actual.arguments
        except (json.JSONDecodeError, TypeError):
            return False, "ARGUMENTS_DECODE_ERROR"
        ok, category = self.compare_values(want, got)
        return ok, "EXPECTED_TOOL_CALL" if ok else (category or "ARGUMENT_VALUE_DIFFERENT")

    def compare_values(self, expected: Any, actual: Any) -> tuple[bool, str | None]:
        if not isinstance(actual, type(expected)):
            return False, "ARGUMENT_VALUE_TYPE_DIFFERENT"
        if isinstance(expected, dict):
            if set(expected) != set(actual):
                return False, "ARGUMENT_OBJECT_KEYS_DIFFERENT"
            for key, value in expected.items():
                ok, category = self.compare_values(value, actual[key])
                if not ok:
                    return ok, category
            return True, None
        if isinstance(expected, list):
            if len(expected) != len(actual):
                return False, "ARGUMENT_LIST_LENGTH_DIFFERENT"
            for a, b in zip(expected, actual, strict=True):
                ok, category = self.compare_values(a, b)
                if not ok:
                    return ok, category
            return True, None
        if isinstance(expected, float):
            return (abs(actual - expected) < self.float_tolerance), "ARGUMENT_VALUE_DIFFERENT"
        if isinstance(expected, str):
            a, b = Counter(expected.strip().lower().split()), Counter(actual.strip().lower().split())
            na, nb = a.total(), b.total()
            if na < 2 or nb < 2:
                return expected == actual, "ARGUMENT_VALUE_DIFFERENT"
            similarity = (a & b).total() / (na + nb)
            return similarity >= self.word_threshold, "ARGUMENT_VALUE_DIFFERENT"
        return expected == actual, "ARGUMENT_VALUE_DIFFERENT"
