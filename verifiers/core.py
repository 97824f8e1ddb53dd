"""The verifier contract: is a sampled action functionally equivalent to the demonstrated one?

A :class:`Verifier` compares a candidate :class:`~pivot_envs.actions.Action` with the expected
(demonstrated) one at a given state and returns a :class:`Verdict`: a score in [0, 1], a boolean, the
*method* that decided (exact / rule / ast / execution / judge / error) and a stable *category* code that
says why, so reward hacking can be audited by counting categories.

Verifiers never raise on bad model output: a malformed action is ``Verdict.error(...)`` with score 0.
They are deterministic: the same inputs give the same verdict.

>>> from pivot_envs.actions import Action
>>> from verifiers import make_verifier
>>> v = make_verifier("toolcall")
>>> gold = Action.parse('<tool_call>{"name": "get_order", "arguments": {"order_id": "W1"}}</tool_call>')
>>> v.verify(gold, Action.parse('<tool_call>{"name":"get_order","arguments":{"order_id":" W1"}}</tool_call>')).equivalent
True
>>> v.verify(gold, Action.parse("Let me check.")).category
'WRONG_KIND'
"""

from __future__ import annotations

import difflib
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, KeysView, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pivot_envs.actions import Action, ToolCall
    from pivot_envs.trajectory import Trajectory
    from sandboxes.core import ExecResult, Sandbox

METHODS = ("exact", "rule", "ast", "execution", "judge", "error")


class Category:
    """Stable reason codes carried by verdicts. New codes are added, never renamed."""

    EQUIVALENT = "EQUIVALENT"
    # the candidate itself is malformed (method "error")
    BAD_FORMAT = "BAD_FORMAT"  # the candidate could not be parsed
    BAD_JSON = "BAD_JSON"  # tool-call arguments are not a JSON object
    EMPTY = "EMPTY"  # an empty turn: no content and no calls
    # rules: shape of the action
    WRONG_KIND = "WRONG_KIND"  # tool call vs message to the user
    CALL_COUNT = "CALL_COUNT"  # different number of parallel calls
    WRONG_TOOL = "WRONG_TOOL"
    UNKNOWN_TOOL = "UNKNOWN_TOOL"  # the candidate called a tool that does not exist
    ARG_MISSING = "ARG_MISSING"
    ARG_EXTRA = "ARG_EXTRA"
    ARG_TYPE = "ARG_TYPE"
    ARG_VALUE = "ARG_VALUE"
    TARGET_DIFFERS = "TARGET_DIFFERS"  # another file, URL or path than the demonstration's
    RANGE_DISJOINT = "RANGE_DISJOINT"  # a view of lines that do not overlap the demonstrated view
    COMMAND_DIFFERS = "COMMAND_DIFFERS"  # shell commands differ as text and nothing could execute them
    # rules: messages to the user
    MESSAGE_DIFFERS = "MESSAGE_DIFFERS"
    MISSING_FACTS = "MISSING_FACTS"  # ids, amounts, statuses of the demonstrated message are absent
    EXTRA_FACTS = "EXTRA_FACTS"  # the message states ids, emails or amounts the demonstration does not
    # execution in twin forks of the turn-k world
    STATE_DIFFERS = "STATE_DIFFERS"  # the world (database) hashes differ after the two actions
    FS_EFFECT_DIFFERS = "FS_EFFECT_DIFFERS"  # changed files (paths or contents) differ
    OUTPUT_DIFFERS = "OUTPUT_DIFFERS"  # normalised outputs of read-only actions differ
    EXIT_DIFFERS = "EXIT_DIFFERS"  # one succeeded, the other failed (or failed differently)
    TIMEOUT = "TIMEOUT"  # the candidate ran past its deadline
    RESULTS_DIFFER = "RESULTS_DIFFER"  # search results overlap less than the threshold
    # the LLM judge
    JUDGE_NO = "JUDGE_NO"
    JUDGE_UNPARSABLE = "JUDGE_UNPARSABLE"  # no single [[A=B]] / [[A!=B]] label in the judge's answer
    JUDGE_SWAP_DISAGREES = "JUDGE_SWAP_DISAGREES"  # equivalent in one order, not in the swapped one
    JUDGE_INJECTION = "JUDGE_INJECTION"  # the candidate carries a judge label or orders the judge about
    # a candidate no stage could take apart (nesting too deep, a number too long, undecodable text)
    DEGENERATE = "DEGENERATE"
    # baselines
    NOT_EXACT = "NOT_EXACT"  # the exact-match baseline's only failure code
    # rows of a candidates file that could not be scored (``pivotrl verify``)
    BAD_ROW = "BAD_ROW"  # not JSON, or a field missing or of the wrong type
    UNKNOWN_TRAJECTORY = "UNKNOWN_TRAJECTORY"
    TURN_OUT_OF_RANGE = "TURN_OUT_OF_RANGE"
    INFRA_ERROR = "INFRA_ERROR"  # the state could not be restored (a sandbox fault, not the candidate)
    WALK_LIMIT = "WALK_LIMIT"  # the workspace could not be listed completely (entries/depth/time limit, cut listing)


class VerifierError(Exception):
    """A verifier is misconfigured or unknown (never raised for bad model output)."""


#: What a degenerate candidate (1,500-deep nesting, a 5,000-digit integer, lone surrogates) makes Python
#: raise inside a comparison. Verifiers turn these into :meth:`Verdict.degenerate`, never a crash.
DEGENERATE_ERRORS: tuple[type[BaseException], ...] = (RecursionError, ValueError, OverflowError, MemoryError,
                                                      UnicodeError)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison.

    Attributes:
        score: Reward in [0, 1] (1 = functionally equivalent).
        equivalent: ``score >= 1`` for binary verifiers; graded verifiers set it from their threshold.
        method: Which stage decided: one of ``METHODS``.
        category: Stable reason code (see :class:`Category`).
        details: Free-form evidence (which argument differed, the two values, similarity ...).
    """

    score: float
    equivalent: bool
    method: str
    category: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Verdict.method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Verdict.score must be in [0, 1], got {self.score}")

    @classmethod
    def accept(cls, method: str, **details: Any) -> Verdict:
        return cls(1.0, True, method, Category.EQUIVALENT, details)

    @classmethod
    def reject(cls, method: str, category: str, **details: Any) -> Verdict:
        return cls(0.0, False, method, category, details)

    @classmethod
    def error(cls, category: str, reason: str, **details: Any) -> Verdict:
        """A zero reward for a candidate that could not be judged (malformed output)."""
        return cls(0.0, False, "error", category, {"reason": reason, **details})

    @classmethod
    def degenerate(cls, where: str, exc: BaseException) -> Verdict:
        """The zero reward for a candidate that made a comparison raise (see :data:`DEGENERATE_ERRORS`)."""
        return cls.error(Category.DEGENERATE, f"{where}: {type(exc).__name__}: {str(exc)[:200]}",
                         error=type(exc).__name__)

    @property
    def uncertain(self) -> bool:
        """True when the deciding rule was unsure (``details["uncertain"]`` says why): the score is 0 but a
        later stage (execution, the judge) may decide. A verdict without the marker is the stage's own."""
        return bool(self.details.get("uncertain"))

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "equivalent": self.equivalent, "method": self.method,
                "category": self.category, "details": self.details}


@dataclass
class VerifyContext:
    """What a verifier may know about the state it judges at.

    Attributes:
        tools: The tool schemas available at this state (OpenAI function specs).
        trajectory: The source trajectory, when known.
        turn: The turn index within it.
        sandbox: The world at the state (execution-level verifiers fork it; never mutate it).
        executor: Runs one tool call in a sandbox and returns ``(tool message text, ExecResult)``; the
            domain's :meth:`~pivot_envs.domain.Domain.execute`. Execution-level verifiers need it.
    """

    tools: Sequence[dict[str, Any]] = ()
    trajectory: Trajectory | None = None
    turn: int | None = None
    sandbox: Sandbox | None = None
    executor: Callable[[Sandbox, ToolCall], tuple[str, ExecResult]] | None = None

    _index: tuple[int, dict[str, dict[str, Any]]] | None = field(default=None, init=False, repr=False, compare=False)

    def _schemas(self) -> dict[str, dict[str, Any]]:
        # Built once per context (rule verdicts ask for schemas several times per call).
        if self._index is None or self._index[0] != id(self.tools):
            index: dict[str, dict[str, Any]] = {}
            for tool in self.tools:
                fn = tool.get("function", tool) if isinstance(tool, dict) else {}
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    index.setdefault(fn["name"], fn.get("parameters") or {"type": "object", "properties": {}})
            self._index = (id(self.tools), index)
        return self._index[1]

    def tool_schema(self, name: str) -> dict[str, Any] | None:
        """The JSON-schema ``parameters`` of tool ``name``, or None when the tool is unknown."""
        return self._schemas().get(name)

    def tool_names(self) -> KeysView[str]:
        """Names of the tools available at this state (empty when the context does not say)."""
        return self._schemas().keys()


class Verifier(ABC):
    """Judges functional equivalence of two actions. Subclasses set ``name`` and implement :meth:`verify`."""

    #: Registry name (``make_verifier(name)``).
    name: ClassVar[str] = "abstract"

    @abstractmethod
    def verify(self, expected: Action, candidate: Action, context: VerifyContext | None = None) -> Verdict:
        """Compare ``candidate`` with ``expected`` at the state described by ``context``."""

    def verify_batch(
        self, expected: Action, candidates: Sequence[Action], context: VerifyContext | None = None
    ) -> list[Verdict]:
        """Judge G candidates at one state. Execution-level verifiers override this to share work."""
        return [self.verify(expected, c, context) for c in candidates]


# Names -> "module:Class" (or a factory) so heavy verifiers (judges, execution) import lazily.
_REGISTRY: dict[str, str | Callable[..., Verifier]] = {
    "exact": "verifiers.exact:ExactMatch",
    "toolcall": "verifiers.toolcall:ToolCallRules",
    "nemo": "verifiers.nemo:NemoComparator",
    "tool_use": "verifiers.tooluse:ToolUseCascade",
    "terminal": "verifiers.terminal:TerminalCascade",
    "code": "verifiers.code:CodeEditCascade",
    "search": "verifiers.search:SearchCascade",
    "judge": "verifiers.judge:JudgeVerifier",
}

#: Third-party verifiers: ``name = "module:ClassOrFactory"`` entries, read on the first unknown name.
ENTRY_POINT_GROUP = "pivotrl.verifiers"
_entry_points_loaded = False


def register_verifier(name: str, entry_point: str | Callable[..., Verifier]) -> None:
    """Make ``make_verifier(name, **kwargs)`` build ``entry_point(**kwargs)``.

    ``entry_point`` is a ``"module:Class"`` string (imported on first use) or the class or factory itself.
    Packages can instead declare ``[project.entry-points."pivotrl.verifiers"] name = "module:Class"``.
    """
    if not isinstance(entry_point, str) and not callable(entry_point):
        raise TypeError(f"register_verifier({name!r}, ...): expected 'module:Class' or a callable, "
                        f"got {type(entry_point).__name__}")
    _REGISTRY[name] = entry_point


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name, ep.value)  # built-in names are never replaced by a plugin


def list_verifiers() -> list[str]:
    """Every registered verifier name (built-ins, ``register_verifier`` and entry points)."""
    _load_entry_points()
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class VerifierSpec:
    """A registered verifier name with constructor arguments: ``VerifierSpec("tool_use", {"text_threshold": 0.9})``.

    Hashable and printable (:attr:`label`), so it can key caches; ``Domain(verifier=("tool_use", {...}))``
    becomes one of these.
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.label)

    @property
    def label(self) -> str:
        """``name`` or ``name(key=value, ...)`` with sorted keys: stable text for cache keys and reports."""
        if not self.kwargs:
            return self.name
        args = ", ".join(f"{k}={json.dumps(v, sort_keys=True, default=str)}" for k, v in sorted(self.kwargs.items()))
        return f"{self.name}({args})"

    def build(self, **extra: Any) -> Verifier:
        return make_verifier(self.name, **{**self.kwargs, **extra})


#: How a verifier can be given: a registered name, ``(name, kwargs)``, a :class:`VerifierSpec`, a configured
#: instance, or a zero-argument factory (a class or function) returning a :class:`Verifier`.
VerifierLike = str | tuple[str, Mapping[str, Any]] | VerifierSpec | Verifier | Callable[..., Verifier]


def as_verifier_spec(spec: VerifierLike) -> str | VerifierSpec | Verifier | Callable[..., Verifier]:
    """Normalise ``spec``: a ``(name, kwargs)`` pair becomes a :class:`VerifierSpec`; anything invalid raises
    :class:`VerifierError` saying what is accepted."""
    if isinstance(spec, (str, VerifierSpec, Verifier)):
        return spec
    if isinstance(spec, tuple):
        if len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
            return VerifierSpec(spec[0], dict(spec[1]))
        raise VerifierError(f"a verifier tuple must be (name, {{kwargs}}), e.g. ('tool_use', {{'text_threshold': 0.9}}); "
                            f"got {spec!r}")
    if callable(spec):
        return spec
    raise VerifierError(f"a verifier is a name, (name, kwargs), a Verifier instance or a factory; got "
                        f"{type(spec).__name__} {spec!r:.80}")


def verifier_label(spec: VerifierLike) -> str:
    """Stable text naming ``spec`` (profiling cache keys, ``pivotrl envs list``, reports).

    >>> verifier_label(("tool_use", {"text_threshold": 0.9}))
    'tool_use(text_threshold=0.9)'
    """
    spec = as_verifier_spec(spec)
    if isinstance(spec, str):
        return spec
    if isinstance(spec, VerifierSpec):
        return spec.label
    if isinstance(spec, Verifier):
        return spec.name
    return f"{getattr(spec, '__module__', '')}:{getattr(spec, '__qualname__', type(spec).__name__)}"


def make_verifier(spec: VerifierLike, **kwargs: Any) -> Verifier:
    """Build a verifier from a name (registered, or from the ``pivotrl.verifiers`` entry points), a
    ``(name, kwargs)`` pair, a :class:`VerifierSpec`, an instance (returned as is) or a factory.

    ``kwargs`` go to the constructor; an unknown name raises :class:`VerifierError` with a "did you mean".
    """
    spec = as_verifier_spec(spec)
    if isinstance(spec, VerifierSpec):
        return spec.build(**kwargs)
    if isinstance(spec, Verifier):
        if kwargs:
            raise VerifierError(f"verifier {spec.name!r} is an instance: it takes no arguments ({sorted(kwargs)}); "
                                "give a name or a factory instead, or configure the instance yourself")
        return spec
    if not isinstance(spec, str):
        return _checked(spec(**kwargs), verifier_label(spec))
    name = spec
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise VerifierError(f"unknown verifier {name!r}; known: {', '.join(sorted(_REGISTRY))}.{hint} "
                            f"(plugins add theirs with register_verifier or the {ENTRY_POINT_GROUP!r} entry points)")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise VerifierError(f"verifier {name!r} points at {_REGISTRY[name]!r}, which cannot be imported: "
                                f"{exc}") from exc
    return _checked(target(**kwargs), name)


def _checked(verifier: Any, what: str) -> Verifier:
    if not isinstance(verifier, Verifier):
        raise VerifierError(f"verifier {what!r} built a {type(verifier).__name__}, not a verifiers.Verifier; "
                            "a factory must return a Verifier instance")
    return verifier
