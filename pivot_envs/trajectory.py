"""Trajectory records: validation, loading, and extraction of pivot candidates.

A record is one JSON object per line (format in the project's DESIGN.md)::

    {"id": "...", "domain": "tool_use", "messages": [...OpenAI chat...], "tools": [...JSON schemas...],
     "env": {"sandbox": "inprocess", ...}, "task": {...}, "metadata": {...}}

Turn ``k`` is the k-th assistant message of ``messages`` (0-based) everywhere in the project.

Loading never stops on one bad line unless ``strict=True``: every problem is reported as a
:class:`RecordError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivot_envs.actions import Action, ToolCall

ROLES = ("system", "user", "assistant", "tool")
SANDBOXES = ("none", "inprocess", "local", "docker")


class TrajectoryError(ValueError):
    """A record is malformed. Carries ``path``, ``line`` and ``field`` as attributes."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        where = ":".join(str(p) for p in (path, line) if p is not None)
        prefix = f"{where}: " if where else ""
        loc = f"field '{field}': " if field else ""
        super().__init__(f"{prefix}{loc}{message}")
        self.path, self.line, self.field, self.reason = path, line, field, message


@dataclass(frozen=True)
class RecordError:
    """One problem found while loading: where it is and what is wrong."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.message}"


@dataclass
class Trajectory:
    """One expert trajectory. ``messages`` stay plain OpenAI dicts so they render with any chat template."""

    id: str
    messages: list[dict[str, Any]]
    domain: str = "generic"
    tools: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    _indices: tuple[int, list[int]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def assistant_indices(self) -> list[int]:
        """Index in ``messages`` of each assistant turn (turn k -> ``assistant_indices[k]``).

        Memoised (restoring a turn asks for it several times); recomputed if messages are added or removed.
        """
        if self._indices is None or self._indices[0] != len(self.messages):
            self._indices = (len(self.messages), [i for i, m in enumerate(self.messages) if m.get("role") == "assistant"])
        return self._indices[1]

    @property
    def num_turns(self) -> int:
        return len(self.assistant_indices)

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def sandbox(self) -> str:
        return self.env.get("sandbox", "none") if self.env else "none"

    def prefix(self, turn: int) -> list[dict[str, Any]]:
        """The messages before assistant turn ``turn`` (``turn == num_turns`` gives every message)."""
        idx = self.assistant_indices
        if not 0 <= turn <= len(idx):
            raise IndexError(f"trajectory {self.id!r} has turns 0..{len(idx) - 1}; got turn={turn}")
        return self.messages[: idx[turn]] if turn < len(idx) else list(self.messages)

    def action(self, turn: int) -> Action:
        """The demonstrated action at ``turn``."""
        return Action.from_message(self.messages[self.assistant_indices[turn]])

    def tool_outputs(self, turn: int) -> dict[str, str]:
        """Recorded tool outputs answering the calls of ``turn``, by ``tool_call_id``."""
        idx = self.assistant_indices[turn]
        out: dict[str, str] = {}
        for m in self.messages[idx + 1 :]:
            if m.get("role") != "tool":
                break
            out[m.get("tool_call_id", "")] = content_text(m.get("content"))
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "domain": self.domain, "messages": self.messages, "tools": self.tools}
        if self.env:
            d["env"] = self.env
        if self.task is not None:
            d["task"] = self.task
        if self.metadata:
            d["metadata"] = self.metadata
        return d


def content_text(content: Any) -> str:
    """Message content as text (OpenAI allows a string, None, or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


# ---------------------------------------------------------------------------------------------------
# Validation


def validate_record(obj: Any) -> list[tuple[str, str]]:
    """Return ``(field, message)`` for every problem in one decoded record; empty when valid."""
    if not isinstance(obj, dict):
        return [("<record>", f"expected a JSON object, got {type(obj).__name__}")]
    errs: list[tuple[str, str]] = []
    if not isinstance(obj.get("id"), str) or not obj.get("id"):
        errs.append(("id", "required: a non-empty string"))
    if "domain" in obj and not isinstance(obj["domain"], str):
        errs.append(("domain", f"expected a string, got {type(obj['domain']).__name__}"))
    for key in ("env", "metadata", "task"):
        if key in obj and obj[key] is not None and not isinstance(obj[key], dict):
            errs.append((key, f"expected an object, got {type(obj[key]).__name__}"))
    env = obj.get("env") or {}
    if isinstance(env, dict) and env.get("sandbox", "none") not in SANDBOXES:
        errs.append(("env.sandbox", f"unknown sandbox {env.get('sandbox')!r}; expected one of {', '.join(SANDBOXES)}"))

    tool_names = set()
    tools = obj.get("tools", [])
    if not isinstance(tools, list):
        errs.append(("tools", f"expected a list of function specs, got {type(tools).__name__}"))
        tools = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn.get("name"):
            errs.append((f"tools[{i}].function.name", 'required: {"type": "function", "function": {"name": ...}}'))
            continue
        tool_names.add(fn["name"])
        params = fn.get("parameters", {})
        if not isinstance(params, dict):
            errs.append((f"tools[{i}].function.parameters", "expected a JSON-schema object"))

    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        errs.append(("messages", "required: a non-empty list of chat messages"))
        return errs
    open_calls: set[str] = set()
    n_assistant = 0
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            errs.append((where, f"expected an object, got {type(m).__name__}"))
            continue
        role = m.get("role")
        if role not in ROLES:
            errs.append((f"{where}.role", f"expected one of {', '.join(ROLES)}, got {role!r}"))
            continue
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            errs.append((f"{where}.content", f"expected a string, a list of parts or null, got {type(content).__name__}"))
        if role == "assistant":
            n_assistant += 1
            calls = m.get("tool_calls") or []
            if not isinstance(calls, list):
                errs.append((f"{where}.tool_calls", "expected a list"))
                continue
            if not calls and not content_text(content).strip():
                errs.append((f"{where}.content", "an assistant turn needs content or tool_calls"))
            for j, call in enumerate(calls):
                parsed = ToolCall.from_openai(call)
                if parsed.error:
                    sub = "function.arguments" if parsed.name else "function.name"
                    errs.append((f"{where}.tool_calls[{j}].{sub}", parsed.error))
                if isinstance(call, dict) and call.get("id"):
                    open_calls.add(call["id"])
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                errs.append((f"{where}.tool_call_id", "required on tool messages"))
            elif call_id not in open_calls:
                errs.append((f"{where}.tool_call_id", f"{call_id!r} answers no earlier assistant tool call"))
    if n_assistant == 0:
        errs.append(("messages", "no assistant turn: nothing to learn from"))
    return errs


def record_from_dict(obj: dict[str, Any]) -> Trajectory:
    """Build a :class:`Trajectory` from a decoded record, raising :class:`TrajectoryError` when invalid.

    Tool-call arguments given as objects are normalised to JSON strings (the OpenAI wire form).
    """
    errs = validate_record(obj)
    if errs:
        f, msg = errs[0]
        raise TrajectoryError(msg, field=f)
    messages = []
    for m in obj["messages"]:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                c = dict(c)
                fn = dict(c["function"])
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
                c["function"] = fn
                c.setdefault("type", "function")
                calls.append(c)
            m["tool_calls"] = calls
        messages.append(m)
    return Trajectory(
        id=obj["id"],
        messages=messages,
        domain=obj.get("domain") or "generic",
        tools=list(obj.get("tools") or []),
        env=dict(obj.get("env") or {}),
        task=obj.get("task"),
        metadata=dict(obj.get("metadata") or {}),
    )


@dataclass
class LoadResult:
    """What :func:`load_trajectories` found: the good records and a report of every bad one."""

    trajectories: list[Trajectory]
    errors: list[RecordError]
    path: str = ""

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(self.trajectories)

    def __len__(self) -> int:
        return len(self.trajectories)

    def by_id(self) -> dict[str, Trajectory]:
        return {t.id: t for t in self.trajectories}


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line_number, decoded_object, error)`` for each non-blank line (1-based line numbers)."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield lineno, None, f"invalid JSON: {exc.msg} at column {exc.colno}"


def load_trajectories(path: str | Path, *, strict: bool = False) -> LoadResult:
    """Load a JSONL file of trajectory records.

    Args:
        path: The file.
        strict: Raise :class:`TrajectoryError` on the first bad record instead of skipping it.

    >>> result = load_trajectories(bundled_path("tool_use"))  # doctest: +SKIP
    >>> len(result), result.errors
    (200, [])
    """
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no trajectory file at {path!r}")
    good: list[Trajectory] = []
    errors: list[RecordError] = []
    seen: dict[str, int] = {}

    def bad(lineno: int, fld: str, msg: str) -> None:
        if strict:
            raise TrajectoryError(msg, path=path, line=lineno, field=fld)
        errors.append(RecordError(path, lineno, fld, msg))

    for lineno, obj, json_error in iter_jsonl(path):
        if json_error:
            bad(lineno, "<line>", json_error)
            continue
        problems = validate_record(obj)
        if problems:
            for fld, msg in problems if not strict else problems[:1]:
                bad(lineno, fld, msg)
            continue
        if obj["id"] in seen:
            bad(lineno, "id", f"duplicate id {obj['id']!r} (first seen on line {seen[obj['id']]})")
            continue
        seen[obj["id"]] = lineno
        good.append(record_from_dict(obj))
    return LoadResult(good, errors, path)


def save_trajectories(trajectories: Iterable[Trajectory | dict[str, Any]], path: str | Path) -> int:
    """Write records as JSONL atomically (a temp file renamed over ``path``). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for t in trajectories:
            d = t.to_dict() if isinstance(t, Trajectory) else t
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


# ---------------------------------------------------------------------------------------------------
# Candidates


@dataclass(frozen=True)
class Candidate:
    """A candidate pivot state: the demonstration's action at one turn, with provenance."""

    trajectory_id: str
    turn: int
    action: Action
    depth: int  # number of messages before the turn

    def to_dict(self) -> dict[str, Any]:
        return {"trajectory_id": self.trajectory_id, "turn": self.turn, "depth": self.depth,
                "action": self.action.to_message()}


@dataclass(frozen=True)
class CandidateOptions:
    """Cleaning rules for :func:`extract_candidates` (PIVOTRL.md, stage 1).

    Attributes:
        drop_unknown_tool: Drop turns calling a tool that is not in the record's ``tools``.
        drop_tool_errors: Drop turns whose tool output was an error.
        drop_doom_loops: Drop the 3rd and later repetitions of an identical call in a row.
        drop_multi_call: Drop turns with more than one tool call.
        doom_loop_length: How many identical consecutive calls make a loop.
    """

    drop_unknown_tool: bool = True
    drop_tool_errors: bool = True
    drop_doom_loops: bool = True
    drop_multi_call: bool = False
    doom_loop_length: int = 3


def is_error_output(text: str) -> bool:
    """Heuristic used by the cleaning rules: does a recorded tool output report an error?"""
    t = text.strip()
    if t.lower().startswith(("error", "traceback")):
        return True
    try:
        obj = json.loads(t)
    except (json.JSONDecodeError, ValueError):
        return False
    return isinstance(obj, dict) and "error" in obj and len(obj) <= 2


def extract_candidates(
    trajectories: Iterable[Trajectory], options: CandidateOptions | None = None
) -> tuple[list[Candidate], Counter[str]]:
    """Every assistant turn becomes a candidate unless a cleaning rule drops it.

    Returns the candidates and a counter of drops by rule name (``kept`` counts the candidates).
    """
    opts = options or CandidateOptions()
    out: list[Candidate] = []
    stats: Counter[str] = Counter()
    for traj in trajectories:
        known = set(traj.tool_names)
        previous: list[str] = []
        for turn, idx in enumerate(traj.assistant_indices):
            action = traj.action(turn)
            signature = json.dumps([(c.name, c.arguments) for c in action.tool_calls], sort_keys=True)
            previous.append(signature if action.tool_calls else "")
            run = previous[-opts.doom_loop_length :]
            if opts.drop_unknown_tool and any(c.name not in known for c in action.tool_calls):
                stats["unknown_tool"] += 1
                continue
            if opts.drop_tool_errors and any(is_error_output(o) for o in traj.tool_outputs(turn).values()):
                stats["tool_error"] += 1
                continue
            if (opts.drop_doom_loops and action.tool_calls and len(run) == opts.doom_loop_length
                    and len(set(run)) == 1):
                stats["doom_loop"] += 1
                continue
            if opts.drop_multi_call and len(action.tool_calls) > 1:
                stats["multi_call"] += 1
                continue
            out.append(Candidate(traj.id, turn, action, depth=idx))
            stats["kept"] += 1
    return out, stats
