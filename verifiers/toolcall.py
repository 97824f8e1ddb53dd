"""Rule-level tool-call comparison: same kind, same tool, same arguments after schema defaults.

Decides at the rule level, without executing anything:

1. A malformed candidate scores 0 (``BAD_FORMAT`` / ``BAD_JSON``).
2. Kind must agree: a tool call is never equivalent to a message to the user (``WRONG_KIND``).
3. Parallel calls are matched as a multiset: every expected call needs its own equivalent candidate.
4. Per call: same tool name (``WRONG_TOOL``, or ``UNKNOWN_TOOL`` when the name is not a tool at all);
   omitted optional parameters take their schema ``default``; keys must agree (``ARG_MISSING`` /
   ``ARG_EXTRA``); values are compared by type (:func:`values_equal`).
5. Messages: the candidate must cover the demonstration's words (Dice overlap of normalised tokens at
   least ``message_threshold``). Never "any text gets reward 1": that rule is exploitable.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pivot_envs.actions import Action, ToolCall
from verifiers.core import Category, Verdict, Verifier, VerifyContext

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:[.'@-][a-z0-9]+)*")


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def dice(a: str, b: str) -> float:
    """Dice coefficient of the token multisets of two texts (1.0 for two empty texts)."""
    ta, tb = tokens(a), tokens(b)
    if not ta and not tb:
        return 1.0
    common = 0
    pool = list(tb)
    for t in ta:
        if t in pool:
            pool.remove(t)
            common += 1
    return 2 * common / (len(ta) + len(tb))


def values_equal(a: Any, b: Any, schema: dict[str, Any] | None = None, *, text_threshold: float = 0.8,
                 rel_tol: float = 1e-6) -> bool:
    """Type-aware equality of two JSON values, guided by the JSON schema of the parameter when known.

    * numbers: ints and floats compare numerically within ``rel_tol`` (``2 == 2.0``); bools are not numbers;
    * strings: equal after stripping and collapsing whitespace; ``format: email`` is case-insensitive;
      free text (four words or more, no ``enum``) by token Dice overlap >= ``text_threshold``;
    * lists: element-wise, or as a multiset when the schema says ``uniqueItems``;
    * objects: same keys, values compared recursively with the property schemas.
    """
    schema = schema or {}
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=rel_tol)
    if isinstance(a, str) and isinstance(b, str):
        sa, sb = " ".join(a.split()), " ".join(b.split())
        if sa == sb:
            return True
        if schema.get("format") == "email":
            return sa.lower() == sb.lower()
        if "enum" not in schema and max(len(sa.split()), len(sb.split())) >= 4:
            return dice(sa, sb) >= text_threshold
        return False
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        item_schema = schema.get("items") if isinstance(schema.get("items"), dict) else None
        if schema.get("uniqueItems"):
            pool = list(b)
            for x in a:
                match = next((i for i, y in enumerate(pool) if values_equal(x, y, item_schema)), None)
                if match is None:
                    return False
                pool.pop(match)
            return True
        return all(values_equal(x, y, item_schema) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return False
        props = schema.get("properties") or {}
        return all(values_equal(a[k], b[k], props.get(k)) for k in a)
    return a == b


def with_defaults(arguments: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """Fill omitted optional parameters with their schema ``default`` (and drop explicit nulls of
    optional parameters without one), so "omitted" and "given as the default" compare equal."""
    if not schema:
        return dict(arguments)
    out = dict(arguments)
    required = set(schema.get("required") or [])
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if "default" in prop and (key not in out or (out[key] is None and key not in required)):
            out[key] = prop["default"]
        elif key in out and out[key] is None and key not in required and "default" not in prop:
            del out[key]
    return out


class ToolCallRules(Verifier):
    """Rule-level functional equivalence of tool calls and messages (see the module docstring).

    Args:
        text_threshold: Dice overlap needed for free-text argument values.
        message_threshold: Dice overlap needed between the candidate's and the demonstration's message.
    """

    name = "toolcall"

    def __init__(self, text_threshold: float = 0.8, message_threshold: float = 0.5):
        if not 0 < text_threshold <= 1 or not 0 < message_threshold <= 1:
            raise ValueError("thresholds must be in (0, 1]")
        self.text_threshold = text_threshold
        self.message_threshold = message_threshold

    def verify(self, expected: Action, candidate: Action, context: VerifyContext | None = None) -> Verdict:
        ctx = context or VerifyContext()
        if candidate.parse_error:
            return Verdict.error(Category.BAD_FORMAT, candidate.parse_error)
        bad = next((c for c in candidate.tool_calls if c.error), None)
        if bad is not None:
            category = Category.BAD_JSON if bad.name else Category.BAD_FORMAT
            return Verdict.error(category, bad.error or "malformed tool call", tool=bad.name)
        if expected.kind != candidate.kind:
            return Verdict.reject("rule", Category.WRONG_KIND, expected=expected.kind, got=candidate.kind)
        if expected.kind == "message":
            return self._compare_messages(expected, candidate)
        if len(expected.tool_calls) != len(candidate.tool_calls):
            return Verdict.reject("rule", Category.CALL_COUNT, expected=len(expected.tool_calls),
                                  got=len(candidate.tool_calls))
        return self._match_calls(list(expected.tool_calls), list(candidate.tool_calls), ctx)

    def _compare_messages(self, expected: Action, candidate: Action) -> Verdict:
        if not candidate.content.strip():
            return Verdict.reject("rule", Category.EMPTY)
        overlap = dice(expected.content, candidate.content)
        if overlap >= self.message_threshold:
            return Verdict.accept("rule", overlap=round(overlap, 4))
        return Verdict.reject("rule", Category.MESSAGE_DIFFERS, overlap=round(overlap, 4),
                              threshold=self.message_threshold)

    def _match_calls(self, expected: list[ToolCall], candidates: list[ToolCall], ctx: VerifyContext) -> Verdict:
        # Multiset matching: each expected call takes the first equivalent unused candidate. For the
        # handful of parallel calls a turn has, greedy equals maximum matching unless two candidates are
        # equivalent to overlapping sets of expected calls, which equivalence (an equivalence relation)
        # rules out.
        unused = list(range(len(candidates)))
        for exp in expected:
            first_failure: Verdict | None = None
            for j in unused:
                verdict = self.compare_call(exp, candidates[j], ctx)
                if verdict.equivalent:
                    unused.remove(j)
                    break
                first_failure = first_failure or verdict
            else:
                assert first_failure is not None
                return first_failure
        return Verdict.accept("rule", calls=len(expected))

    def compare_call(self, expected: ToolCall, candidate: ToolCall, ctx: VerifyContext) -> Verdict:
        """Compare one call with another (names, keys after defaults, values by type)."""
        if candidate.name != expected.name:
            if ctx.tools and ctx.tool_schema(candidate.name) is None:
                return Verdict.reject("rule", Category.UNKNOWN_TOOL, expected=expected.name, got=candidate.name)
            return Verdict.reject("rule", Category.WRONG_TOOL, expected=expected.name, got=candidate.name)
        schema = ctx.tool_schema(expected.name)
        exp_args = with_defaults(expected.arguments or {}, schema)
        cand_args = with_defaults(candidate.arguments or {}, schema)
        missing = sorted(set(exp_args) - set(cand_args))
        if missing:
            return Verdict.reject("rule", Category.ARG_MISSING, tool=expected.name, keys=missing)
        extra = sorted(set(cand_args) - set(exp_args))
        if extra:
            return Verdict.reject("rule", Category.ARG_EXTRA, tool=expected.name, keys=extra)
        props = (schema or {}).get("properties") or {}
        for key in sorted(exp_args):
            a, b = exp_args[key], cand_args[key]
            if _json_type(a) != _json_type(b):
                return Verdict.reject("rule", Category.ARG_TYPE, tool=expected.name, key=key,
                                      expected=_json_type(a), got=_json_type(b))
            if not values_equal(a, b, props.get(key), text_threshold=self.text_threshold):
                return Verdict.reject("rule", Category.ARG_VALUE, tool=expected.name, key=key, expected=a, got=b)
        return Verdict.accept("rule", tool=expected.name)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
