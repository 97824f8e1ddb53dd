"""Domains: what a family of trajectories needs beyond its records.

A :class:`Domain` is the extension contract of the toolkit. A plugin writes four things and the toolkit
does the rest (restoring turns, snapshots, forks, profiling, training, evaluation, the checker):

* **data**: records (JSON Lines, see ``docs/data-format.md``), usually made by a small converter;
* **world**: where actions run. Any :class:`~sandboxes.core.Sandbox` built by ``sandbox_factory`` or by a
  registered sandbox kind (:func:`register_sandbox_kind`), or the shipped object world: ``world=`` builds
  the root objects of a record and their public methods become the tools
  (:class:`~sandboxes.objects.ObjectSandbox`, records say ``"env": {"sandbox": "objects"}``);
* **verifier**: a name, ``(name, kwargs)``, a configured instance or a factory (:func:`verifiers.core.make_verifier`);
* **outcome**: ``success`` for a whole episode and optionally ``turn_success`` after every user turn.

Tool calls reach the world through :meth:`Domain.execute`: ``bash`` runs in shell sandboxes (capability
``"exec"``), every other call goes to :meth:`Sandbox.call_tool <sandboxes.core.Sandbox.call_tool>`
(capability ``"tools"``). Third-party packages add domains through the ``pivotrl.domains`` entry-point
group (see :mod:`pivot_envs.registration`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pivot_envs.actions import ToolCall
from pivot_envs.trajectory import Trajectory, add_sandbox_kind, load_trajectories
from sandboxes.core import ExecResult, Sandbox, timeout_problem
from sandboxes.inprocess import InProcessSandbox, ToolFunction
from sandboxes.objects import ObjectSandbox, ObjectTool
from verifiers.core import Verifier, VerifierLike, as_verifier_spec, make_verifier, verifier_label

logger = logging.getLogger(__name__)

#: Called as ``hook(domain, module_name)`` for every new :class:`Domain` (the registry defers plugins with it).
_CREATION_HOOKS: list[Callable[[Any, str], None]] = []

#: Builds the turn-0 world of a record for one sandbox kind: ``factory(trajectory, domain)``.
SandboxFactory = Callable[[Trajectory, "Domain"], Sandbox | None]
#: ``success(trajectory, sandbox, messages) -> bool | None`` (None: no outcome defined).
SuccessRule = Callable[[Trajectory, Sandbox | None, list[dict[str, Any]]], bool | None]
#: ``turn_success(trajectory, sandbox, messages, user_turn) -> bool | None``, after each user turn.
TurnSuccessRule = Callable[[Trajectory, Sandbox | None, list[dict[str, Any]], int], bool | None]

_SANDBOX_KINDS: dict[str, SandboxFactory] = {}


def register_sandbox_kind(name: str, factory: SandboxFactory, *, replace: bool = False) -> None:
    """Let records say ``"env": {"sandbox": name}``: ``factory(trajectory, domain)`` builds their world.

    Built-in kinds: ``none``, ``inprocess``, ``objects``, ``local``, ``docker``. A kind of a plugin is known
    once the plugin is imported (its entry point is loaded with :mod:`pivot_envs`), so records naming it
    load only where the plugin is installed.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a sandbox kind is a non-empty string, got {name!r}")
    if name in _SANDBOX_KINDS and _SANDBOX_KINDS[name] is not factory and not replace:
        raise ValueError(f"sandbox kind {name!r} is already registered; pass replace=True to replace it")
    _SANDBOX_KINDS[name] = factory
    add_sandbox_kind(name)


def sandbox_kinds() -> list[str]:
    """The names ``env.sandbox`` may take."""
    return sorted(_SANDBOX_KINDS)


def _no_sandbox(trajectory: Trajectory, domain: Domain) -> Sandbox | None:
    return None


def _inprocess(trajectory: Trajectory, domain: Domain) -> Sandbox:
    return InProcessSandbox((trajectory.env or {}).get("state") or {}, tools=domain.tools)


def _objects(trajectory: Trajectory, domain: Domain) -> Sandbox:
    if domain.world is None:
        raise ValueError(f"record {trajectory.id!r} asks for an 'objects' sandbox, but domain {domain.name!r} has no "
                         "world builder: give the Domain world=lambda trajectory: <root object or {name: object}>")
    return ObjectSandbox(domain.world(trajectory), tools=domain.world_tools)


def _shell(trajectory: Trajectory, domain: Domain) -> Sandbox | None:
    # A hardened Docker container when a daemon answers (records asking for "docker"), else the local
    # sandbox with a one-time warning; the terminal domain's factory does exactly this.
    from pivot_envs.domains.terminal.sandbox import make_sandbox as shell_sandbox

    return shell_sandbox(trajectory)


for _name, _factory in (("none", _no_sandbox), ("inprocess", _inprocess), ("objects", _objects),
                        ("local", _shell), ("docker", _shell)):
    register_sandbox_kind(_name, _factory, replace=True)


def format_exec_output(call: ToolCall, result: ExecResult) -> str:
    """The text a tool message carries for an execution result.

    Tool sandboxes: the JSON result, or the error message. Shell commands: stdout then stderr, with the
    exit status and timeouts stated, the way terminal agents see them.
    """
    if call.name != "bash":
        return result.stdout if result.exit_code == 0 else (result.stderr or f"Error: exit code {result.exit_code}")
    text = result.stdout
    if result.stderr:
        text += ("\n" if text and not text.endswith("\n") else "") + result.stderr
    if result.timed_out:
        text += "\n[command timed out]"
    elif result.exit_code != 0:
        text += f"\n[exit code {result.exit_code}]"
    return text


@dataclass
class Domain:
    """Everything a :class:`~pivot_envs.core.TrajectoryEnv` needs to know about one family of tasks.

    Attributes:
        name: Short name, the ``domain`` field of records (``"tool_use"``).
        env_id: The Gymnasium id (``"pivot/ToolUse-v0"``).
        description: One line for ``pivotrl envs list``.
        data: Bundled trajectories: ``"package:relative/path.jsonl"`` or a file path; None for none.
        tools: Tool functions ``fn(state, **kwargs)`` of ``inprocess`` records, by name.
        verifier: Judges pivot steps: a registered name, ``(name, {kwargs})``, a configured
            :class:`~verifiers.core.Verifier` instance, or a factory returning one.
        action_format: How raw model text is parsed into tool calls.
        success: ``success(trajectory, sandbox, messages) -> bool | None`` scores a whole episode;
            None means "use the record's ``task.success`` rule" (:meth:`episode_success`).
        turn_success: ``turn_success(trajectory, sandbox, messages, user_turn) -> bool | None``, called in
            episode mode each time a user turn closes (``user_turn`` is its 0-based index among the record's
            user messages). The episode succeeds only if every non-None result is true as well.
        sandbox_factory: Builds the world of every record of this domain (overrides ``env.sandbox``).
        world: For ``"objects"`` records: ``world(trajectory)`` returns the root object or ``{name: object}``
            of a fresh world; their public methods are the tools.
        world_tools: Optional explicit tools of the object world (see :class:`~sandboxes.objects.ObjectSandbox`).
        tool_schemas: JSON-schema function specs that records reference with ``"tools": "domain"`` (all) or
            a list of names, instead of repeating them in every record.
    """

    name: str
    env_id: str
    description: str = ""
    data: str | None = None
    tools: Mapping[str, ToolFunction] = field(default_factory=dict)
    verifier: VerifierLike = "toolcall"
    action_format: str = "hermes"
    success: SuccessRule | None = None
    turn_success: TurnSuccessRule | None = None
    sandbox_factory: Callable[[Trajectory], Sandbox | None] | None = None
    world: Callable[[Trajectory], Any] | None = None
    world_tools: Mapping[str, ObjectTool] | None = None
    tool_schemas: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.verifier = as_verifier_spec(self.verifier)  # (name, kwargs) -> a hashable VerifierSpec
        # A plugin imported before pivot_envs is still initialising when pivot_envs loads the plugins
        # (the plugin imports pivot_envs, which loads the plugin): its domain registers as it is made.
        caller = sys._getframe(2).f_globals.get("__name__", "") if sys._getframe(1).f_code.co_name == "__init__" else ""
        for hook in _CREATION_HOOKS:
            hook(self, caller)

    @property
    def verifier_name(self) -> str:
        """Stable text naming the verifier (reports, profiling cache keys): ``tool_use(text_threshold=0.9)``."""
        return verifier_label(self.verifier)

    def make_verifier(self) -> Verifier:
        """A verifier built from :attr:`verifier` (an instance is returned as is)."""
        return make_verifier(self.verifier)

    def data_path(self) -> Path | None:
        """Filesystem path of the bundled trajectories (None when the domain ships none)."""
        if self.data is None:
            return None
        if ":" in self.data and not Path(self.data).exists():
            package, _, rel = self.data.partition(":")
            return Path(str(resources.files(package).joinpath(rel)))
        return Path(self.data)

    def load(self, *, strict: bool = False) -> list[Trajectory]:
        """The bundled trajectories (raises when the domain ships none)."""
        path = self.data_path()
        if path is None:
            raise ValueError(f"domain {self.name!r} ships no trajectories; pass trajectories=PATH")
        result = load_trajectories(path, strict=strict, tool_schemas=self.schema_map())
        for err in result.errors:
            logger.warning("skipped bad record: %s", err)
        return result.trajectories

    def schema_map(self) -> dict[str, list[dict[str, Any]]]:
        """``{name: tool_schemas}`` for loaders resolving ``"tools": "domain"`` (empty without schemas)."""
        return {self.name: self.tool_schemas} if self.tool_schemas is not None else {}

    def make_sandbox(self, trajectory: Trajectory) -> Sandbox | None:
        """Build the world of ``trajectory`` at turn 0: ``sandbox_factory``, else the factory registered for
        its ``env.sandbox`` kind (None for text-only records)."""
        if self.sandbox_factory is not None:
            return self.sandbox_factory(trajectory)
        kind = (trajectory.env or {}).get("sandbox", "none")
        factory = _SANDBOX_KINDS.get(kind)
        if factory is None:
            raise ValueError(f"record {trajectory.id!r}: unknown sandbox kind {kind!r}; registered: "
                             f"{', '.join(sandbox_kinds())} (register_sandbox_kind adds one)")
        return factory(trajectory, self)

    def execute(self, sandbox: Sandbox, call: ToolCall) -> tuple[str, ExecResult]:
        """Run one tool call in ``sandbox``; returns the tool message text and the raw result.

        ``bash`` runs as a shell command where the sandbox has the ``"exec"`` capability (with the model's
        ``timeout`` clamped to the sandbox's limit); every other call goes to ``sandbox.call_tool`` where it
        has ``"tools"``. Override it only to add tools of your own on top (``super().execute`` for the rest).
        Never raises for bad model output: a malformed call or an unknown tool gives an error result.
        """
        if call.error or call.arguments is None:
            result = ExecResult(1, stderr=f"Error: {call.error or 'arguments did not parse'}")
        elif call.name == "bash" and sandbox.supports("exec"):
            result = self._bash(sandbox, call.arguments)
        elif sandbox.supports("tools"):
            result = sandbox.call_tool(call.name, call.arguments)
        elif sandbox.supports("exec"):
            result = ExecResult(1, stderr=f"Error: unknown tool {call.name!r} (this sandbox only runs 'bash')")
        else:
            result = ExecResult(1, stderr=f"Error: unknown tool {call.name!r}: this {sandbox.backend} world has "
                                          "neither named tools nor a shell")
        return format_exec_output(call, result), result

    @staticmethod
    def _bash(sandbox: Sandbox, arguments: dict[str, Any]) -> ExecResult:
        command, timeout = arguments.get("command"), arguments.get("timeout")
        problem = timeout_problem(timeout)
        limit = sandbox.default_timeout
        if not isinstance(command, str):
            return ExecResult(1, stderr="Error: bash needs a string argument 'command'")
        if problem:
            # An invalid action, not a crash: the command does not run and the model is told why.
            return ExecResult(2, stderr=f"Error: invalid action: {problem}; the command was not run. Pass "
                                        f"a positive number of seconds (at most {limit}) or no timeout.")
        # The model may ask for less time than the domain allows, never more.
        if timeout is not None and limit is not None:
            timeout = min(float(timeout), limit)
        return sandbox.exec(command, timeout=timeout)

    def user_turn_success(self, trajectory: Trajectory, sandbox: Sandbox | None, messages: list[dict[str, Any]],
                          user_turn: int) -> bool | None:
        """The ``turn_success`` rule for the user turn that just closed (None when the domain has none)."""
        if self.turn_success is None:
            return None
        return self.turn_success(trajectory, sandbox, messages, user_turn)

    def episode_success(self, trajectory: Trajectory, sandbox: Sandbox | None, messages: list[dict[str, Any]]) -> bool | None:
        """Whole-episode outcome: the domain's rule, else the record's ``task.success`` rule.

        Supported record rules: ``{"kind": "final_state", "expected_state_sha256": ...}`` (the world's
        digest at the end equals the expected one) and ``{"kind": "final_message_contains",
        "text": ...}``. Returns None when the record defines no outcome.
        """
        if self.success is not None:
            return self.success(trajectory, sandbox, messages)
        return self.episode_success_by_record(trajectory, sandbox, messages)

    def episode_success_by_record(self, trajectory: Trajectory, sandbox: Sandbox | None,
                                  messages: list[dict[str, Any]]) -> bool | None:
        """The record's own ``task.success`` rule (what :meth:`episode_success` falls back to)."""
        rule = (trajectory.task or {}).get("success")
        if not rule:
            return None
        kind = rule.get("kind")
        if kind == "final_state":
            return sandbox is not None and sandbox.state_digest() == rule.get("expected_state_sha256")
        if kind == "final_message_contains":
            last = next((m for m in reversed(messages) if m.get("role") == "assistant"), {})
            return str(rule.get("text", "")).lower() in str(last.get("content") or "").lower()
        raise ValueError(f"record {trajectory.id}: unknown task.success.kind {kind!r}")


GENERIC = Domain(
    name="generic",
    env_id="pivot/Generic-v0",
    description="Any trajectory file: text-only records, or a local shell sandbox with a 'bash' tool.",
)
