"""NeMo-Gym-compatible argument comparator (``make_verifier("nemo")``): the released PivotRL rule.

A re-implementation of the ``verify()`` of NeMo Gym's ``single_step_tool_use_with_argument_comparison``
resources server (``ActionComparator`` plus ``extract_action``, nemo-gym 0.7.0), so results can be
compared with NVIDIA's recipe. Its rules, kept as they are, quirks included:

* a message is expected: **any** message scores 1, a blank one too (NeMo's rule; exploitable, see
  :mod:`verifiers.messages`), a tool call scores 0; a call is expected: a message scores 0; a response
  with neither (only reasoning) scores 0 (``NO_ACTION_FOUND``; see :func:`action_from_response`);
* tool names must be equal as written (no alias normalisation, no schema defaults);
* the candidate's arguments are decoded with ``json.loads`` as written: ``""`` (even for a call without
  parameters), or anything else that is not JSON, is ``ARGUMENTS_DECODE_ERROR``;
* ``isinstance(actual, type(expected))`` type check: ``2.0`` for an expected ``2`` fails, ``True`` for an
  expected ``1`` passes (bool is an int in Python);
* objects need identical key sets; lists equal length, compared **in order**;
* expected floats match within ``floating_point_comparison_threshold`` (absolute, 1e-6);
* strings: when either side has fewer than two whitespace words, exact equality (case and spaces count);
  else lower-cased word-count overlap ``|A & B| / (|A| + |B|)`` (at most 0.5) >= the
  ``word_count_similarity_threshold`` (0.1 by default; NeMo's SWE and Droid pivot configs use 0.0, its
  search config 0.3);
* parallel calls: maximum bipartite matching, ignoring order. With ``parallel_tool_call_rewarding`` off
  (NeMo's default) every expected call needs a distinct matching call and extra calls cost nothing. On,
  ``allow_subset`` / ``allow_superset`` decide which call counts are admissible and
  ``parallel_tool_call_reward_mode`` how they score: ``binary_strict`` (all or nothing), ``fractional``
  (matched share) or ``f1`` (``2 * matched / (expected + actual)``), so a verdict's score can lie
  between 0 and 1 (``equivalent`` only at 1).

Settings are NeMo's ``tool_call_comparator_config`` keys. A record converted from NeMo Gym carries its
dataset's settings in ``metadata["verifier_settings"]["nemo"]`` (``pivotrl data convert --from nemo_gym
--nemo-preset swe``); the verifier reads them from ``context.trajectory``. Settings given to the
constructor win over the record's; NeMo's defaults fill the rest.

Categories are mapped to ours (``details["nemo_category"]`` keeps NeMo's name). A test runs NeMo's own
``verify()`` as the oracle on every shipped pivot example and on a probe suite when nemo-gym is installed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from pivot_envs.actions import Action, ToolCall
from verifiers.core import DEGENERATE_ERRORS, Category, Verdict, Verifier, VerifierError, VerifyContext
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
REWARD_MODES = ("binary_strict", "fractional", "f1")
#: What :func:`action_from_response` sets as ``parse_error`` when a response holds no call and no text.
NO_ACTION = "no tool call or chat message was found in the response"


@dataclass(frozen=True)
class NemoSettings:
    """NeMo's ``ToolCallComparatorConfig``, field for field (its defaults, and 0.1 for the threshold that
    NeMo requires and every conversational config sets)."""

    word_count_similarity_threshold: float = 0.1
    floating_point_comparison_threshold: float = 1e-6
    parallel_tool_call_rewarding: bool = False
    allow_subset: bool = False
    allow_superset: bool = False
    parallel_tool_call_reward_mode: str = "binary_strict"

    @classmethod
    def merged(cls, base: NemoSettings, values: Mapping[str, Any], where: str) -> NemoSettings:
        """``base`` with ``values`` applied; unknown keys or wrong types raise :class:`VerifierError`."""
        known = {f.name: f.type for f in fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise VerifierError(f"{where}: unknown NeMo comparator setting {key!r}; known: {', '.join(known)}")
            want_bool = known[key] == "bool"
            ok = isinstance(value, bool) if want_bool else (
                isinstance(value, str) if known[key] == "str" else isinstance(value, (int, float)) and not isinstance(value, bool))
            if not ok:
                raise VerifierError(f"{where}: setting {key!r} expects a {known[key]}, got {value!r}")
            if key == "parallel_tool_call_reward_mode" and value not in REWARD_MODES:
                raise VerifierError(f"{where}: unknown reward mode {value!r}; expected one of {', '.join(REWARD_MODES)}")
        return replace(base, **values)


class NemoComparator(Verifier):
    """NeMo Gym's single-step argument comparison (see the module docstring).

    Args:
        word_threshold: ``word_count_similarity_threshold``.
        float_tolerance: ``floating_point_comparison_threshold``.
        strict_count: Require as many calls as expected (``parallel_tool_call_rewarding`` with neither
            subset nor superset allowed, ``binary_strict``).
        use_record_settings: Apply ``metadata["verifier_settings"]["nemo"]`` of the judged record.
        **settings: Any other ``tool_call_comparator_config`` key by NeMo's name.

    Every argument left as None comes from the record's settings, else NeMo's defaults.
    """

    name = "nemo"

    def __init__(self, word_threshold: float | None = None, float_tolerance: float | None = None,
                 strict_count: bool | None = None, *, use_record_settings: bool = True, **settings: Any):
        explicit = dict(settings)
        if word_threshold is not None:
            explicit["word_count_similarity_threshold"] = word_threshold
        if float_tolerance is not None:
            explicit["floating_point_comparison_threshold"] = float_tolerance
        if strict_count is not None:
            explicit.update(parallel_tool_call_rewarding=bool(strict_count), allow_subset=False,
                            allow_superset=False, parallel_tool_call_reward_mode="binary_strict")
        self.explicit = explicit
        self.use_record_settings = use_record_settings
        # checked now: a typo fails at construction, not mid-run
        self.settings = NemoSettings.merged(NemoSettings(), explicit, "nemo verifier")
        self._by_record: dict[str, NemoSettings] = {}

    @property
    def word_threshold(self) -> float:
        return self.settings.word_count_similarity_threshold

    def settings_for(self, context: VerifyContext | None) -> NemoSettings:
        """The settings that judge at ``context``: the record's (if any) under the constructor's."""
        traj = context.trajectory if context is not None else None
        if not self.use_record_settings or traj is None:
            return self.settings
        own = (traj.metadata or {}).get("verifier_settings")
        own = own.get("nemo") if isinstance(own, dict) else None
        if not own:
            return self.settings
        key = json.dumps(own, sort_keys=True, default=str)
        if key not in self._by_record:
            if not isinstance(own, dict):
                raise VerifierError(f"record {traj.id!r}: metadata.verifier_settings.nemo must be an object, got "
                                    f"{type(own).__name__}")
            base = NemoSettings.merged(NemoSettings(), own, f"record {traj.id!r} metadata.verifier_settings.nemo")
            self._by_record[key] = NemoSettings.merged(base, self.explicit, "nemo verifier")
        return self._by_record[key]

    def verify(self, expected: Action, candidate: Action, context: VerifyContext | None = None) -> Verdict:
        settings = self.settings_for(context)
        try:
            return _Judge(settings).verify(expected, candidate)
        except DEGENERATE_ERRORS as exc:  # deep nesting, huge numbers: data, not a crash (NeMo would raise)
            return Verdict.degenerate("nemo comparator", exc)

    def compare_call(self, expected: ToolCall, actual: ToolCall) -> tuple[bool, str]:
        """(match, NeMo category) for one call, under the constructor's settings."""
        return _Judge(self.settings).compare_call(expected, actual)


class _Judge:
    """One comparison under fixed settings (NeMo's ``ActionComparator``)."""

    def __init__(self, settings: NemoSettings):
        self.s = settings

    def verify(self, expected: Action, candidate: Action) -> Verdict:
        if candidate.parse_error:
            nemo = "NO_ACTION_FOUND"
            return Verdict.error(Category.BAD_FORMAT, candidate.parse_error, nemo_category=nemo)
        if expected.kind == "message":
            if candidate.kind == "message":  # blank included: NeMo's MessageAction("") is a message
                return Verdict.accept("rule", nemo_category="EXPECTED_CHAT_MESSAGE_FOUND")
            return Verdict.reject("rule", Category.WRONG_KIND, nemo_category="NO_EXPECTED_CHAT_MESSAGE")
        if candidate.kind == "message":
            return Verdict.reject("rule", Category.WRONG_KIND, nemo_category="NO_EXPECTED_TOOL_CALL")
        exp, got = expected.tool_calls, candidate.tool_calls
        if len(exp) == 1 and len(got) == 1:
            ok, category = self.compare_call(exp[0], got[0])
            return _result(1.0 if ok else 0.0, category)
        if not self._admissible(len(exp), len(got)):
            return _result(0.0, "FUNCTION_CALL_BATCH_LENGTH_DIFFERENT")
        results = [[self.compare_call(e, g) for g in got] for e in exp]
        matching = max_matching(len(exp), len(got), lambda i, j: results[i][j][0])
        score = self._score(len(matching), len(exp), len(got))
        if score == 1.0:
            return _result(1.0, "EXPECTED_TOOL_CALL" if len(exp) == 1 else "EXPECTED_TOOL_CALL_BATCH")
        unmatched = [i for i in range(len(exp)) if i not in matching]
        if not unmatched or len(matching) == len(got):
            return _result(score, "FUNCTION_CALL_BATCH_LENGTH_DIFFERENT")
        i = unmatched[0]
        # NeMo keeps the first reason that got past the tool name: the closest near miss
        reason = next((c for ok, c in results[i] if not ok and c != "UNEXPECTED_TOOL"), "UNEXPECTED_TOOL")
        return _result(score, reason)

    def _admissible(self, n_expected: int, n_actual: int) -> bool:
        if n_actual == n_expected or not self.s.parallel_tool_call_rewarding:
            return True
        return self.s.allow_subset if n_actual < n_expected else self.s.allow_superset

    def _score(self, matched: int, n_expected: int, n_actual: int) -> float:
        if not self.s.parallel_tool_call_rewarding:
            return 1.0 if matched == n_expected else 0.0
        if self.s.parallel_tool_call_reward_mode == "f1":
            total = n_expected + n_actual
            return 2 * matched / total if total else 0.0
        required = min(n_expected, n_actual) if self.s.allow_subset else n_expected
        if self.s.parallel_tool_call_reward_mode == "fractional":
            return matched / required if required else 0.0
        return 1.0 if matched == required else 0.0

    def compare_call(self, expected: ToolCall, actual: ToolCall) -> tuple[bool, str]:
        if expected.name != actual.name:
            return False, "UNEXPECTED_TOOL"
        want = json.loads(expected.raw_arguments) if expected.arguments is None else expected.arguments
        try:
            # as written: NeMo decodes the candidate's string, so "" (a call without parameters) fails
            got = json.loads(actual.raw_arguments)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
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
            return (abs(actual - expected) < self.s.floating_point_comparison_threshold), "ARGUMENT_VALUE_DIFFERENT"
        if isinstance(expected, str):
            a, b = Counter(expected.strip().lower().split()), Counter(actual.strip().lower().split())
            na, nb = a.total(), b.total()
            if na < 2 or nb < 2:
                return expected == actual, "ARGUMENT_VALUE_DIFFERENT"
            similarity = (a & b).total() / (na + nb)
            return similarity >= self.s.word_count_similarity_threshold, "ARGUMENT_VALUE_DIFFERENT"
        return expected == actual, "ARGUMENT_VALUE_DIFFERENT"


def _result(score: float, nemo_category: str) -> Verdict:
    if score == 1.0:
        return Verdict.accept("rule", nemo_category=nemo_category)
    category = _NEMO_TO_OURS.get(nemo_category, Category.ARG_VALUE)
    if category == Category.BAD_JSON:
        return Verdict.error(category, "arguments are not valid JSON", nemo_category=nemo_category)
    return Verdict(score, False, "rule", category, {"nemo_category": nemo_category})


def action_from_response(response: Mapping[str, Any] | list[Any]) -> Action:
    """A NeMo Gym response (or its ``output`` items) as the action NeMo's ``extract_action`` sees.

    Every ``function_call`` item is a call (arguments kept as written); without calls, the first
    ``output_text`` part of the first assistant message is the message (blank text included). A response
    with neither has ``parse_error`` :data:`NO_ACTION` (NeMo's ``NO_ACTION_FOUND``, reward 0).

    >>> action_from_response({"output": [{"type": "function_call", "name": "f", "arguments": ""}]}).tool_calls[0].raw_arguments
    ''
    """
    items = response.get("output") if isinstance(response, Mapping) else response
    calls: list[ToolCall] = []
    text: str | None = None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "function_call":
            calls.append(ToolCall.from_parts(item.get("name"), item.get("arguments"), item.get("call_id")))
        elif item.get("type") == "message" and item.get("role") == "assistant" and text is None:
            for part in item.get("content") or []:
                if isinstance(part, Mapping) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    text = part["text"]
                    break
    if calls:
        return Action(tool_calls=tuple(calls))
    if text is not None:
        return Action(content=text)
    return Action(parse_error=NO_ACTION)
