"""Cascades: normalise -> exact -> rules -> execution -> judge; the first decisive stage wins.

Every domain verifier of the project is a :class:`Cascade`: an ordered list of :class:`Stage` objects.
A stage looks at the expected and the candidate action (and the state, through the
:class:`~verifiers.core.VerifyContext`) and answers one of three things:

* ``decide(verdict)``: decisive; the cascade stops and returns this verdict;
* ``tentative(verdict)``: an opinion a later stage may overrule (a rule-level acceptance that execution
  should confirm, or an argument-value difference whose effect may still be the same);
* ``None``: nothing to say (the stage does not apply: no sandbox, no judge, another action kind).

When no stage decides, the last tentative verdict is the answer. A verdict that overrules a tentative
one names it in ``details["overrules"]`` so audits can count how often execution disagreed with rules.

The invariant, enforced here for every cascade: **no later stage overrules an earlier certain verdict**
(a certain verdict is a decisive one, so the cascade has already stopped), and **the judge never
overrules an acceptance** by exact match, rules or execution, tentative or not: a judge verdict that
would turn such an acceptance into a rejection is dropped and ``details["judge_ignored"]`` records it.
(A judge decides what rules and execution left open: uncertain or tentative rejections, messages.)
A tentative rule verdict marked uncertain (:attr:`~verifiers.core.Verdict.uncertain`) is a rejection
until a later stage says otherwise.

A degenerate candidate (1,500-deep nesting, a 5,000-digit number, undecodable text) that makes a stage
raise one of :data:`~verifiers.core.DEGENERATE_ERRORS` ends the cascade with a zero-reward
``DEGENERATE`` error verdict naming the stage: one such sample never crashes a profiling or training run.

Work shared by the samples of one state lives in a per-state memo dict: :meth:`Cascade.verify_batch`
hands the same memo to every candidate, so the expected action is executed once per state (not once per
sample), and candidates that are identical as text are judged once. ``memo["candidate"]`` is a
scratch dict renewed for every candidate, where a stage leaves what a later stage needs.

When the state's sandbox says its forks are cheap independent leases (``sandbox.parallel_forks``: Docker
world mode, :mod:`sandboxes.worlds`), the first distinct candidate runs alone (it fills the memo: the
expected action's effect, the state's digest) and the others run in up to :data:`VERIFY_THREADS` threads,
each in its own fork; ``memo["candidate"]`` is then each thread's own. A cascade with a stage that must
run serially (``serial = True``, e.g. a judge backed by an in-process model) never does this.

Infrastructure faults of a stage (:class:`~sandboxes.errors.SandboxError`) never become a reward: the
stage is skipped, ``details["execution_error"]`` records the fault, and the cascade goes on (usually
to the rules' tentative verdict). Bad model output never raises: stages return error verdicts for it.

>>> from pivot_envs.actions import Action
>>> from verifiers.cascade import Cascade, ExactStage
>>> c = Cascade([ExactStage(lambda a, ctx: a.content.lower())])
>>> c.verify(Action(content="Hi"), Action(content="hi")).method
'exact'
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pivot_envs.actions import Action
from sandboxes.errors import SandboxError
from verifiers.core import DEGENERATE_ERRORS, Category, Verdict, Verifier, VerifyContext

#: Per-state scratch space shared by the candidates of one state (see :meth:`Cascade.verify_batch`).
Memo = dict[str, Any]
#: Threads for the candidates of one state when its sandbox has parallel forks (``PIVOTRL_VERIFY_THREADS``).
VERIFY_THREADS = int(os.environ.get("PIVOTRL_VERIFY_THREADS", "4") or 4)


class _SharedMemo(dict):
    """A per-state memo for candidates judged in parallel threads: state-level entries are shared (a race
    computes one twice, never wrongly), ``memo["candidate"]`` is each thread's own."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def __getitem__(self, key: str) -> Any:
        return self._local.candidate if key == "candidate" else super().__getitem__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "candidate":
            self._local.candidate = value
        else:
            super().__setitem__(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self._local, "candidate", default) if key == "candidate" else super().get(key, default)

    def __contains__(self, key: object) -> bool:
        return hasattr(self._local, "candidate") if key == "candidate" else super().__contains__(key)


@dataclass(frozen=True)
class Step:
    """A stage's answer: a verdict, and whether it ends the cascade."""

    verdict: Verdict
    final: bool


def decide(verdict: Verdict) -> Step:
    return Step(verdict, True)


def tentative(verdict: Verdict) -> Step:
    return Step(verdict, False)


class Stage:
    """One step of a cascade. Subclasses set ``name`` and implement :meth:`check`."""

    name: ClassVar[str] = "stage"

    def check(self, expected: Action, candidate: Action, ctx: VerifyContext, memo: Memo,
              prior: Verdict | None) -> Step | None:
        """Judge ``candidate`` against ``expected``; ``prior`` is the tentative verdict so far (or None)."""
        raise NotImplementedError


class ExactStage(Stage):
    """Accept when the two actions normalise to the same key (``key(action, ctx)``); else say nothing."""

    name = "exact"

    def __init__(self, key: Callable[[Action, VerifyContext], Hashable]):
        self.key = key

    def check(self, expected, candidate, ctx, memo, prior):
        if memo.get("exact_key") is None:
            memo["exact_key"] = self.key(expected, ctx)
        if self.key(candidate, ctx) == memo["exact_key"]:
            return decide(Verdict.accept("exact"))
        return None


def malformed_verdict(candidate: Action) -> Verdict | None:
    """The error verdict for a candidate that could not be parsed or has a broken call, else None."""
    if candidate.parse_error:
        return Verdict.error(Category.BAD_FORMAT, candidate.parse_error)
    for call in candidate.tool_calls:
        if call.error:
            category = Category.BAD_JSON if call.name else Category.BAD_FORMAT
            return Verdict.error(category, call.error, tool=call.name)
    if not candidate.tool_calls and not candidate.content.strip():
        return Verdict.reject("rule", Category.EMPTY)
    return None


class WellFormedStage(Stage):
    """Malformed candidates (and empty turns) score 0 with the reason; kinds must agree."""

    name = "form"

    def check(self, expected, candidate, ctx, memo, prior):
        bad = malformed_verdict(candidate)
        if bad is not None:
            return decide(bad)
        if expected.kind != candidate.kind:
            return decide(Verdict.reject("rule", Category.WRONG_KIND, expected=expected.kind, got=candidate.kind))
        return None


class Cascade(Verifier):
    """A verifier made of stages; the first decisive stage wins (see the module docstring).

    Args:
        stages: The stages, in cost order.
        dedupe_key: Normalised key of a candidate; candidates of one batch with equal keys share a
            verdict. None disables sharing.
    """

    name = "cascade"

    def __init__(self, stages: Sequence[Stage], *, dedupe_key: Callable[[Action], Hashable] | None = None):
        self.stages = list(stages)
        self.dedupe_key = dedupe_key if dedupe_key is not None else _text_key

    def verify(self, expected: Action, candidate: Action, context: VerifyContext | None = None) -> Verdict:
        return self.run(expected, candidate, context or VerifyContext(), {})

    def verify_batch(self, expected: Action, candidates: Sequence[Action],
                     context: VerifyContext | None = None) -> list[Verdict]:
        """Judge the G samples of one state with one memo: the expected action runs once, and
        candidates identical after normalisation are judged once."""
        ctx = context or VerifyContext()
        # Distinct candidates in first-seen order; the others share the verdict of their first copy.
        first: dict[Hashable, int] = {}
        owner: list[int] = []
        for i, candidate in enumerate(candidates):
            try:
                key = self.dedupe_key(candidate) if self.dedupe_key else None
            except DEGENERATE_ERRORS:
                key = None  # no key for a candidate too deep to repr; run() gives it its verdict
            owner.append(first.setdefault(key, i) if key is not None else i)
        todo = sorted(set(owner))
        threads = min(self.threads_for(ctx), len(todo))
        verdicts: dict[int, Verdict] = {}
        if threads <= 1:
            memo: Memo = {}
            for i in todo:
                verdicts[i] = self.run(expected, candidates[i], ctx, memo)
        else:
            shared = _SharedMemo()
            verdicts[todo[0]] = self.run(expected, candidates[todo[0]], ctx, shared)  # fills the state's memo
            with concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pivotrl-verify") as pool:
                rest = todo[1:]
                for i, verdict in zip(rest, pool.map(lambda j: self.run(expected, candidates[j], ctx, shared), rest),
                                      strict=True):
                    verdicts[i] = verdict
        return [verdicts[owner[i]] for i in range(len(candidates))]

    def threads_for(self, ctx: VerifyContext) -> int:
        """How many candidates of one state may run at once: :data:`VERIFY_THREADS` when the sandbox has
        parallel forks and no stage must run serially, else 1."""
        if ctx.sandbox is None or any(getattr(stage, "serial", False) for stage in self.stages):
            return 1
        try:
            parallel = bool(getattr(ctx.sandbox, "parallel_forks", False))
        except SandboxError:
            parallel = False
        return max(1, VERIFY_THREADS) if parallel else 1

    def run(self, expected: Action, candidate: Action, ctx: VerifyContext, memo: Memo) -> Verdict:
        """Run the stages in order with a given per-state memo."""
        prior: Verdict | None = None
        notes: dict[str, Any] = {}
        memo["candidate"] = {}  # per-candidate scratch (e.g. the rules' pairing of parallel calls)
        for stage in self.stages:
            try:
                step = stage.check(expected, candidate, ctx, memo, prior)
            except SandboxError as exc:
                notes["execution_error"] = f"{stage.name}: {type(exc).__name__}: {exc}"
                continue
            except DEGENERATE_ERRORS as exc:
                return _with(Verdict.degenerate(f"stage {stage.name!r}", exc), notes)
            if step is None:
                continue
            verdict = step.verdict
            if verdict.method == "judge" and prior is not None and prior.equivalent and not verdict.equivalent:
                notes["judge_ignored"] = verdict.category  # the judge never overrules an acceptance
                continue
            if prior is not None and step.final and (prior.equivalent != verdict.equivalent):
                notes["overrules"] = prior.category
            if step.final:
                return _with(verdict, notes)
            prior = verdict
        if prior is None:
            # Every cascade ends with a stage that always answers; reaching here is a configuration bug.
            return Verdict.reject("rule", Category.MESSAGE_DIFFERS if expected.kind == "message"
                                  else Category.ARG_VALUE, reason="no stage judged this pair")
        return _with(prior, notes)


def _with(verdict: Verdict, notes: dict[str, Any]) -> Verdict:
    if not notes:
        return verdict
    return dataclasses.replace(verdict, details={**verdict.details, **notes})


def _text_key(action: Action) -> Hashable:
    calls = tuple((c.name, c.raw_arguments if c.arguments is None else repr(sorted(c.arguments.items())))
                  for c in action.tool_calls)
    return (action.content.strip(), calls, action.parse_error)
