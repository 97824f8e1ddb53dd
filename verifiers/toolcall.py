"""Rule-level tool-call comparison: same kind, same tool, same arguments after schema defaults.

Decides at the rule level, without executing anything:

1. A malformed candidate scores 0 (``BAD_FORMAT`` / ``BAD_JSON``).
2. Kind must agree: a tool call is never equivalent to a message to the user (``WRONG_KIND``).
3. Parallel calls are matched as a multiset by maximum bipartite matching (:func:`max_matching`): every
   expected call needs its own equivalent candidate, whatever the order.
4. Per call: same tool name after alias normalisation (:func:`canonical_tool_name`: ``functions.``
   prefixes, case, ``-``/``.`` separators, camelCase), else ``WRONG_TOOL`` (or ``UNKNOWN_TOOL`` when the
   name is not a tool at all); omitted optional parameters take their schema ``default``; keys must
   agree (``ARG_MISSING`` / ``ARG_EXTRA``: unknown parameters fail); JSON types must agree
   (``ARG_TYPE``; ints are numbers, so ``2`` equals ``2.0``); values are compared by type
   (:func:`values_equal`), lists as multisets where the schema says ``uniqueItems`` or the parameter is
   named in ``unordered_params``.
5. Messages: the candidate must cover the demonstration's words (Dice overlap of normalised tokens at
   least ``message_threshold``). Never "any text gets reward 1": that rule is exploitable.

Schemas are read the way people write them (:mod:`verifiers.values`): a default stated only in the
description ("Defaults to 10.") counts; ``"5"``, ``5`` and ``5.0`` are one number where the schema says
number; ``"true"`` is ``true`` where it says boolean; dates and times in common formats are compared as
ISO values; enum values, emails and ids/codes compare case-insensitively (passwords, paths and free text
never); lists are sets where the schema says ``uniqueItems``, the description says "in any order", or the
verifier was told (``unordered_params``). Every relaxation an acceptance used is named in
``details["relaxations"]`` (``["default_from_description:limit", "case_folded:status"]``), and
``details["certain"]`` says whether all of them are certain (see :func:`verifiers.values.is_certain`).

Three outcomes: accept; reject; and **uncertain** (a reject, score 0, with ``details["uncertain"]``
saying why: free text of moderate word overlap, a possible alias such as ``"NYC"`` / ``"New York City"``,
an ambiguous date such as ``03/05/2024``). Rules never accept what they are unsure of; in a cascade the
uncertain verdict is tentative and execution, then the judge, decide (:attr:`Verdict.uncertain`).

>>> from pivot_envs.actions import Action
>>> tools = [{"type": "function", "function": {"name": "forecast", "parameters": {"type": "object",
...     "properties": {"city": {"type": "string"}, "days": {"type": "integer",
...     "description": "Number of days (optional, default 3)."}}, "required": ["city"]}}}]
>>> gold = Action.parse('<tool_call>{"name": "forecast", "arguments": {"city": "Oslo"}}</tool_call>')
>>> v = ToolCallRules().verify(gold, Action.parse(
...     '<tool_call>{"name": "forecast", "arguments": {"city": "Oslo", "days": "3"}}</tool_call>'),
...     VerifyContext(tools=tools))
>>> v.equivalent, v.details["relaxations"]
(True, ['default_from_description:days', 'number_from_string:days'])
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pivot_envs.actions import Action, ToolCall
from verifiers.core import DEGENERATE_ERRORS, Category, Verdict, Verifier, VerifyContext
from verifiers.values import (
    DIFFERENT,
    SAME,
    UNSURE,
    ParamSpec,
    coercible,
    compare,
    dice,
    fill_defaults,
    is_certain,
    json_type,
    param_spec,
    tokens,
    tool_spec,
)

__all__ = ["CallMatch", "ToolCallRules", "canonical_call", "canonical_tool_name", "dice", "max_matching", "tokens",
           "values_equal", "with_defaults"]

_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NAMESPACES = ("functions.", "function.", "tools.", "tool.")


def canonical_tool_name(name: str, known: Collection[str] = (), aliases: Mapping[str, str] | None = None) -> str:
    """The tool a (possibly decorated) name refers to.

    Explicit ``aliases`` first; then, when ``known`` names are given, the known name that equals ``name``
    after dropping a ``functions.`` style namespace, splitting camelCase, lower-casing and treating
    ``-``, ``.`` and spaces as ``_``. Unknown names come back stripped but otherwise unchanged.

    >>> canonical_tool_name("functions.getOrderDetails", ["get_order_details"])
    'get_order_details'
    >>> canonical_tool_name("rm_rf", ["get_order_details"])
    'rm_rf'
    """
    name = name.strip()
    if aliases and name in aliases:
        return aliases[name]
    if not known or name in known:
        return name
    bare = name
    for prefix in _NAMESPACES:
        if bare.startswith(prefix):
            bare = bare[len(prefix):]
            break
    key = _name_key(bare)
    for k in known:
        if _name_key(k) == key:
            return k
    return name


def _name_key(name: str) -> str:
    return re.sub(r"[-. ]+", "_", _CAMEL_RE.sub("_", name)).lower()


def max_matching(n_left: int, n_right: int, edge: Callable[[int, int], bool]) -> dict[int, int]:
    """Maximum bipartite matching (Kuhn's augmenting paths): ``{left index: right index}``.

    Greedy pairing can strand a later call whose only partner an earlier call took; augmenting paths
    undo such pairings. ``edge(i, j)`` is evaluated at most once per pair.
    """
    adj = [[j for j in range(n_right) if edge(i, j)] for i in range(n_left)]
    owner: dict[int, int] = {}  # right -> left

    def augment(i: int, seen: set[int]) -> bool:
        for j in adj[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in sorted(range(n_left), key=lambda i: len(adj[i])):  # most constrained first
        augment(i, set())
    return {i: j for j, i in owner.items()}


def values_equal(a: Any, b: Any, schema: dict[str, Any] | None = None, *, text_threshold: float = 0.8,
                 rel_tol: float = 1e-6) -> bool:
    """Whether two JSON values of a parameter with JSON schema ``schema`` surely or likely mean the same
    (:func:`verifiers.values.compare` answers SAME). ``2 == 2.0``; ``"Pending"`` equals ``"pending"`` where
    the schema has an enum; lists compare as multisets where the schema says ``uniqueItems``.

    >>> values_equal(["b", "a"], ["a", "b"], {"type": "array", "uniqueItems": True})
    True
    """
    return compare(a, b, param_spec("value", schema), "value", [], text_threshold=text_threshold,
                   rel_tol=rel_tol) == SAME


def with_defaults(arguments: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """Fill omitted optional parameters with their schema ``default`` key (and drop explicit nulls of
    optional parameters without one), so "omitted" and "given as the default" compare equal. Defaults
    stated only in descriptions are left to the rules (:class:`ToolCallRules`), which name them."""
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


#: Rule rejections no later stage may overrule: the *shape* of the action is wrong (another kind, tool,
#: key set or JSON type). An ``ARG_VALUE`` difference is not among them: two values that differ as text
#: may still act the same (an id that resolves to the same order), so execution decides those.
DECISIVE_REJECTIONS = frozenset({
    Category.BAD_FORMAT, Category.BAD_JSON, Category.EMPTY, Category.WRONG_KIND, Category.CALL_COUNT,
    Category.WRONG_TOOL, Category.UNKNOWN_TOOL, Category.ARG_MISSING, Category.ARG_EXTRA, Category.ARG_TYPE,
    Category.DEGENERATE,
})


@dataclass(frozen=True)
class CallMatch:
    """The rule-level comparison of two lists of parallel calls.

    Attributes:
        verdict: Acceptance, or the most telling rejection.
        pairing: expected index -> candidate index. Complete whenever the calls agree in shape (same
            tools, keys and types), so an execution stage can run them pairwise; empty otherwise.
    """

    verdict: Verdict
    pairing: dict[int, int]

    @property
    def decisive(self) -> bool:
        """True when the verdict is a rejection no execution can overturn (an optional parameter given on
        one side only is not: it may change nothing, e.g. a filter that keeps every row)."""
        return (not self.verdict.equivalent and self.verdict.category in DECISIVE_REJECTIONS
                and not self.verdict.details.get("optional"))

    @property
    def certain(self) -> bool:
        """True for a decisive rejection, or an acceptance whose relaxations are all certain (a schema
        default, ``5`` vs ``5.0``, a ``uniqueItems`` list reordered): nothing a later stage could refute."""
        return self.decisive or (self.verdict.equivalent and bool(self.verdict.details.get("certain", True)))


class ToolCallRules(Verifier):
    """Rule-level functional equivalence of tool calls and messages (see the module docstring).

    Args:
        text_threshold: Dice overlap at which a free-text argument (four words or more) is accepted.
        unsure_threshold: Dice overlap from which a free-text difference is uncertain rather than rejected.
        message_threshold: Dice overlap needed between the candidate's and the demonstration's message.
        unordered_params: Parameter names whose list values compare as sets whatever the schema says (the
            domain knows that order does not matter there).
        aliases: Explicit tool-name aliases (``{"lookup_order": "get_order_details"}``).
    """

    name = "toolcall"

    def __init__(self, text_threshold: float = 0.8, message_threshold: float = 0.5,
                 unordered_params: Iterable[str] = (), aliases: Mapping[str, str] | None = None,
                 unsure_threshold: float = 0.5):
        if not 0 < text_threshold <= 1 or not 0 < message_threshold <= 1:
            raise ValueError(f"thresholds must be in (0, 1], got text_threshold={text_threshold}, "
                             f"message_threshold={message_threshold}")
        if not 0 < unsure_threshold <= text_threshold:
            raise ValueError(f"unsure_threshold must be in (0, text_threshold={text_threshold}], "
                             f"got {unsure_threshold}")
        self.text_threshold = text_threshold
        self.unsure_threshold = unsure_threshold
        self.message_threshold = message_threshold
        self.unordered_params = frozenset(unordered_params)
        self.aliases = dict(aliases or {})

    def verify(self, expected: Action, candidate: Action, context: VerifyContext | None = None) -> Verdict:
        try:
            return self._verify(expected, candidate, context or VerifyContext())
        except DEGENERATE_ERRORS as exc:  # 1,500-deep nesting, a 5,000-digit number: data, not a crash
            return Verdict.degenerate("toolcall rules", exc)

    def _verify(self, expected: Action, candidate: Action, ctx: VerifyContext) -> Verdict:
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
        return self.match_calls(expected.tool_calls, candidate.tool_calls, ctx).verdict

    def _compare_messages(self, expected: Action, candidate: Action) -> Verdict:
        if not candidate.content.strip():
            return Verdict.reject("rule", Category.EMPTY)
        overlap = dice(expected.content, candidate.content)
        if overlap >= self.message_threshold:
            return Verdict.accept("rule", overlap=round(overlap, 4))
        return Verdict.reject("rule", Category.MESSAGE_DIFFERS, overlap=round(overlap, 4),
                              threshold=self.message_threshold)

    def match_calls(self, expected: Sequence[ToolCall], candidates: Sequence[ToolCall], ctx: VerifyContext) -> CallMatch:
        """Multiset-match parallel calls: a perfect matching of equivalent pairs accepts; otherwise the
        verdict names the closest failure, and ``pairing`` pairs the calls if they agree in shape."""
        n = len(expected)
        if n != len(candidates):
            return CallMatch(Verdict.reject("rule", Category.CALL_COUNT, expected=n, got=len(candidates)), {})
        if n == 1:
            verdict = self.compare_call(expected[0], candidates[0], ctx)
            return CallMatch(verdict, {0: 0} if _shaped(verdict) else {})
        cache: dict[tuple[int, int], Verdict] = {}

        def pair(i: int, j: int) -> Verdict:
            if (i, j) not in cache:
                cache[i, j] = self.compare_call(expected[i], candidates[j], ctx)
            return cache[i, j]

        full = max_matching(n, n, lambda i, j: pair(i, j).equivalent)
        if len(full) == n:
            relaxed = [r for i in range(n) for r in pair(i, full[i]).details.get("relaxations", ())]
            relaxed = list(dict.fromkeys(relaxed))
            return CallMatch(Verdict.accept("rule", calls=n, **_relaxation_details(relaxed)), full)
        shaped = _closest_pairing(n, pair, expected, candidates)
        if shaped is not None:
            first = next(pair(i, shaped[i]) for i in range(n) if not pair(i, shaped[i]).equivalent)
            return CallMatch(first, shaped)
        # No complete pairing of calls alike in shape: report an expected call left out of a maximum
        # such pairing against the candidates also left out (necessarily a shape rejection).
        partial = max_matching(n, n, lambda i, j: _shaped(pair(i, j)))
        i = next(i for i in range(n) if i not in partial)
        used = set(partial.values())
        tries = [pair(i, j) for j in range(n) if j not in used]
        same_tool = [v for v in tries if v.category not in (Category.WRONG_TOOL, Category.UNKNOWN_TOOL)]
        return CallMatch((same_tool or tries)[0], {})

    def compare_call(self, expected: ToolCall, candidate: ToolCall, ctx: VerifyContext) -> Verdict:
        """Compare one call with another (names, keys after defaults, values by type). A key-set
        difference that only involves optional schema parameters says so in ``details["optional"]``."""
        known = ctx.tool_names()
        name = canonical_tool_name(candidate.name, known, self.aliases)
        if name != canonical_tool_name(expected.name, known, self.aliases):
            if known and name not in known:
                return Verdict.reject("rule", Category.UNKNOWN_TOOL, expected=expected.name, got=candidate.name)
            return Verdict.reject("rule", Category.WRONG_TOOL, expected=expected.name, got=candidate.name)
        schema = ctx.tool_schema(name)
        spec = tool_spec(schema)
        exp_args, exp_filled = fill_defaults(expected.arguments or {}, spec)
        cand_args, cand_filled = fill_defaults(candidate.arguments or {}, spec)
        missing = sorted(set(exp_args) - set(cand_args))
        if missing:
            optional = bool(schema) and all(k in spec.children and k not in spec.required for k in missing)
            return Verdict.reject("rule", Category.ARG_MISSING, tool=expected.name, keys=missing,
                                  **({"optional": True} if optional else {}))
        extra = sorted(set(cand_args) - set(exp_args))
        if extra:
            optional = bool(schema) and all(k in spec.children and k not in spec.required for k in extra)
            return Verdict.reject("rule", Category.ARG_EXTRA, tool=expected.name, keys=extra,
                                  **({"optional": True} if optional else {}))
        # A default filled in on one side only is a relaxation worth naming; on both sides it is nothing.
        notes = [f"{_FILLED[src]}:{k}" for k, src in {**exp_filled, **cand_filled}.items()
                 if (k in exp_filled) != (k in cand_filled) and k in exp_args]
        unsure: list[str] = []
        for key in sorted(exp_args):
            a, b = exp_args[key], cand_args[key]
            prop = spec.children.get(key) or ParamSpec(key, {})
            if key in self.unordered_params and prop.unordered is None:
                prop = dataclasses.replace(prop, unordered="option")
            if json_type(a) != json_type(b) and not coercible(a, b, prop):
                return Verdict.reject("rule", Category.ARG_TYPE, tool=expected.name, key=key,
                                      expected=json_type(a), got=json_type(b))
            result = compare(a, b, prop, key, notes, text_threshold=self.text_threshold,
                             unsure_threshold=self.unsure_threshold)
            if result == DIFFERENT:
                return Verdict.reject("rule", Category.ARG_VALUE, tool=expected.name, key=key, expected=_clip(a),
                                      got=_clip(b))
            if result == UNSURE:
                unsure.append(key)
        if unsure:
            key = unsure[0]
            return Verdict.reject("rule", Category.ARG_VALUE, tool=expected.name, key=key,
                                  expected=_clip(exp_args[key]), got=_clip(cand_args[key]),
                                  uncertain=f"the rules cannot tell whether {', '.join(unsure)} mean(s) the same")
        return Verdict.accept("rule", tool=expected.name, **_relaxation_details(list(dict.fromkeys(notes))))


_FILLED = {"schema": "default_filled", "description": "default_from_description", "null": "null_as_omitted"}


def _relaxation_details(relaxations: list[str]) -> dict[str, Any]:
    if not relaxations:
        return {}
    return {"relaxations": relaxations, "certain": is_certain(relaxations)}


def _clip(value: Any, n: int = 200) -> Any:
    """Values as evidence, cut short: a verdict's details must not carry a 40 kB argument around."""
    if isinstance(value, str) and len(value) > n:
        return value[:n] + "..."
    return value


def _shaped(v: Verdict) -> bool:
    """Same tool, keys and types: what an execution stage can compare by running both calls."""
    return v.equivalent or v.category == Category.ARG_VALUE or (
        v.category in (Category.ARG_MISSING, Category.ARG_EXTRA) and bool(v.details.get("optional")))


def _closest_pairing(n: int, pair: Callable[[int, int], Verdict], expected: Sequence[ToolCall],
                     candidates: Sequence[ToolCall]) -> dict[int, int] | None:
    """A complete pairing of shape-compatible calls that keeps as many rule-equivalent pairs as possible,
    then the most similar arguments (exhaustive up to 6 calls, else any maximum matching); None if none."""
    if n > 6:
        shaped = max_matching(n, n, lambda i, j: _shaped(pair(i, j)))
        return shaped if len(shaped) == n else None
    import itertools  # noqa: PLC0415 - only for the rare multi-call turn

    def closeness(i: int, j: int) -> float:
        a, b = expected[i].arguments or {}, candidates[j].arguments or {}
        same = sum(1 for k in a if k in b and a[k] == b[k])
        return same / max(len(a), len(b), 1) + dice(str(a), str(b)) * 1e-3

    best, best_score = None, None
    for perm in itertools.permutations(range(n)):
        if not all(_shaped(pair(i, perm[i])) for i in range(n)):
            continue
        score = (sum(pair(i, perm[i]).equivalent for i in range(n)), sum(closeness(i, perm[i]) for i in range(n)))
        if best_score is None or score > best_score:
            best, best_score = dict(enumerate(perm)), score
    return best


def canonical_call(call: ToolCall, ctx: VerifyContext, aliases: Mapping[str, str] | None = None) -> ToolCall:
    """``call`` with its tool name resolved (:func:`canonical_tool_name`), ready for an executor."""
    name = canonical_tool_name(call.name, ctx.tool_names(), aliases)
    return call if name == call.name else dataclasses.replace(call, name=name)
