"""The tool-use cascade (``make_verifier("tool_use")``): rules for the shape, execution for the effect.

Stages, in order; the first decisive one wins and the verdict's ``method`` says which:

1. **form** (``error`` / ``rule``): an unparsable turn, a call with broken JSON arguments or an empty
   turn scores 0 (``BAD_FORMAT`` / ``BAD_JSON`` / ``EMPTY``); a tool call never equals a message
   (``WRONG_KIND``). Decisive.
2. **exact** (``exact``): equal after normalisation (tool names resolved, schema defaults filled in,
   arguments as canonical JSON, parallel calls as a multiset; messages with whitespace collapsed).
   Decisive acceptance: identical actions need no execution.
3. **rules** (``rule``, :class:`~verifiers.toolcall.ToolCallRules`): kind, call count, tool name, key set
   and JSON types are **decisive rejections** (``CALL_COUNT``, ``WRONG_TOOL``, ``UNKNOWN_TOOL``,
   ``ARG_MISSING``, ``ARG_EXTRA``, ``ARG_TYPE``): no execution can make another tool or another key set
   the demonstrated action. An acceptance whose relaxations are all certain (a schema ``default`` filled
   in, ``2 == 2.0``, a ``uniqueItems`` list reordered) is **decisive** too. Heuristic acceptances (a
   default read from the description, ``"5"`` for a number, case folded, a date in another format, free
   text by Dice), ``ARG_VALUE`` rejections (an id spelled differently, another search query) and
   **uncertain** verdicts (a possible alias, free text of moderate overlap) are **tentative**: execution
   confirms or overturns them. Every relaxation is named in ``details["relaxations"]``. Messages are judged
   by :class:`~verifiers.messages.MessageRules` (facts mode by default): an acceptance is decisive, a
   rejection is decisive unless a judge is configured.
4. **execution** (``execution``, :class:`~verifiers.execution.ToolExecutionStage`): when the context
   has a sandbox, both actions run in twin forks of the turn-k world; writes are equivalent iff the
   state digests are equal and both succeeded (or failed alike), reads iff the normalised outputs are
   equal. Decisive in both directions: it confirms rule acceptances (``STATE_DIFFERS`` catches a free
   text the tool stores) and overturns value rejections whose effect is the same (``ARG_VALUE`` ->
   ``EQUIVALENT``, recorded in ``details["overrules"]``).
5. **judge** (``judge``, optional): decides messages the rules rejected, tool calls the rules were
   uncertain about and nothing executed (and, with ``judge_calls=True``, every tentative tool-call
   rejection). It never overrules an acceptance (see :mod:`verifiers.cascade`).

Without a sandbox (text-only records) the rules' tentative verdict is the answer.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pivot_envs.actions import Action
from sandboxes.core import canonical_json
from verifiers.cascade import Cascade, ExactStage, Stage, Step, WellFormedStage, decide, tentative
from verifiers.core import VerifyContext
from verifiers.execution import ToolExecutionStage
from verifiers.judge import JudgeBackend, JudgeStage, LLMJudge
from verifiers.messages import MessageRules
from verifiers.toolcall import ToolCallRules, canonical_tool_name, with_defaults


def tool_use_key(action: Action, ctx: VerifyContext, aliases: Mapping[str, str] | None = None) -> Hashable:
    """The normalised form two actions must share to be an exact match."""
    if not action.tool_calls:
        return ("message", " ".join(action.content.split()))
    calls = []
    for c in action.tool_calls:
        name = canonical_tool_name(c.name, ctx.tool_names(), aliases)
        args = with_defaults(c.arguments or {}, ctx.tool_schema(name))
        calls.append(name + canonical_json(_strip_strings(args)))
    return ("calls", tuple(sorted(calls)))


def _strip_strings(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {k: _strip_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_strings(v) for v in value]
    return value


class ToolRulesStage(Stage):
    """Rule-level comparison: decisive for shape rejections, tentative for value verdicts."""

    name = "rules"

    def __init__(self, rules: ToolCallRules, messages: MessageRules, *, messages_final: bool = True):
        self.rules, self.messages, self.messages_final = rules, messages, messages_final

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if expected.kind == "message":
            verdict = self.messages.compare(expected.content, candidate.content, ctx)
            # A message the rules accept is accepted: a judge may rescue a rejected paraphrase, never
            # take away an accepted one (that cost recall and bought nothing).
            return decide(verdict) if self.messages_final or verdict.equivalent else tentative(verdict)
        match = self.rules.match_calls(expected.tool_calls, candidate.tool_calls, ctx)
        memo["candidate"]["pairing"] = match.pairing
        return decide(match.verdict) if match.certain else tentative(match.verdict)


class ToolUseCascade(Cascade):
    """The tool-use domain's verifier (see the module docstring for the policy).

    Args:
        text_threshold: Dice overlap for free-text argument values.
        message_mode: ``"facts"`` (default), ``"overlap"`` or ``"nemo_any"`` (NeMo-compatible, exploitable).
        message_threshold: Token Dice a message needs with the demonstration.
        unordered_params: Parameters whose lists compare as multisets whatever the schema says.
        aliases: Explicit tool-name aliases.
        execute: Run actions in twin forks when the context has a sandbox (default True).
        judge: An :class:`~verifiers.judge.LLMJudge`, a backend, or a backend spec; None = no judge.
        judge_calls: Let the judge also decide tentative tool-call rejections that execution could not
            (no sandbox); without it the judge decides only the calls the rules were uncertain about.
        judge_cache_dir: On-disk judge cache (when ``judge`` is a backend or spec).
    """

    name = "tool_use"

    def __init__(self, *, text_threshold: float = 0.8, message_mode: str = "facts", message_threshold: float = 0.4,
                 unordered_params: Iterable[str] = (), aliases: Mapping[str, str] | None = None,
                 execute: bool = True, judge: LLMJudge | JudgeBackend | str | None = None, judge_calls: bool = False,
                 judge_cache_dir: str | Path | None = None):
        self.aliases = dict(aliases or {})
        self.rules = ToolCallRules(text_threshold=text_threshold, unordered_params=unordered_params,
                                   aliases=self.aliases)
        self.messages = MessageRules(message_mode, message_threshold)
        if judge is not None and not isinstance(judge, LLMJudge):
            judge = LLMJudge(judge, cache_dir=judge_cache_dir)
        self.judge = judge
        kinds = ("message", "tool_call") if judge_calls else ("message",)
        stages: list[Stage] = [
            WellFormedStage(),
            ExactStage(lambda a, ctx: tool_use_key(a, ctx, self.aliases)),
            ToolRulesStage(self.rules, self.messages, messages_final=judge is None),
        ]
        if execute:
            stages.append(ToolExecutionStage(self.aliases))
        stages.append(JudgeStage(judge, kinds=kinds, rules=(
            "A message must give the same facts (ids, amounts, statuses) and ask or tell the same thing; "
            "a tool call must have the same effect on the database.")))
        super().__init__(stages)
