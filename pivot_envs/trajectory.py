"""Trajectory records: validation, loading, and extraction of pivot candidates.

A record is one JSON object per line (format in ``docs/data-format.md``)::

    {"id": "...", "domain": "tool_use", "messages": [...OpenAI chat...], "tools": [...JSON schemas...],
     "env": {"sandbox": "inprocess", ...}, "task": {...}, "metadata": {...}}

Turn ``k`` is the k-th assistant message of ``messages`` (0-based) everywhere in the project. Two
extensions of the chat format: ``"tools": "domain"`` (or a list of tool names) uses the tool schemas the
record's domain declares instead of repeating them, and an assistant message with
``"pivotrl": {"skip": true}`` stays in the conversation but is no pivot candidate and is not evaluated
(the flag is taken off the message at load, so models never see it).

Loading never stops on one bad line unless ``strict=True``: every problem is reported as a
:class:`RecordError` naming the file, the line and the field, and no file content produces a bare
traceback. What the reader (:func:`read_jsonl`) reports:

- a line that is not UTF-8 (the byte and its column), a UTF-16/UTF-32 file (one error for the file, with
  the ``iconv`` command that fixes it); a UTF-8 byte-order mark is accepted and skipped;
- invalid JSON with the column within that line; a line that ends before its record does says it looks
  cut off, and a record pretty-printed over several lines gets one error naming the lines it spans and
  saying that each record must be one line (JSON Lines);
- JSON nested deeper than :data:`MAX_RECORD_DEPTH`, integers past Python's int-string conversion limit,
  strings that cannot be encoded as UTF-8, lines longer than :data:`MAX_LINE_BYTES`;
- a file with no record at all (empty, or blank lines only) is a file-level problem (line 0, field
  ``<file>``), so ``pivotrl data validate`` fails on it. Blank lines elsewhere are skipped.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivot_envs.actions import Action, ToolCall, json_problem

ROLES = ("system", "user", "assistant", "tool")
#: The built-in ``env.sandbox`` kinds; plugins add theirs with ``pivot_envs.domain.register_sandbox_kind``.
SANDBOXES = ("none", "inprocess", "objects", "local", "docker")
_SANDBOX_KINDS: set[str] = set(SANDBOXES)
#: Keys of the per-message ``"pivotrl"`` object on assistant messages.
MESSAGE_FLAGS = ("skip",)

# Tool schemas domains declare, by domain name, for records saying ``"tools": "domain"`` (filled by
# ``pivot_envs.registration.register_domain``).
_DOMAIN_TOOLS: dict[str, list[dict[str, Any]]] = {}


def add_sandbox_kind(name: str) -> None:
    """Accept ``name`` as an ``env.sandbox`` value (``register_sandbox_kind`` calls this)."""
    _SANDBOX_KINDS.add(name)


def register_tool_schemas(domain: str, schemas: list[dict[str, Any]] | None) -> None:
    """Let records of ``domain`` reference ``schemas`` with ``"tools": "domain"`` (None forgets them)."""
    if schemas is None:
        _DOMAIN_TOOLS.pop(domain, None)
    else:
        _DOMAIN_TOOLS[domain] = list(schemas)

#: Deepest nesting of arrays/objects accepted in a record (a record nests tool-call arguments about five
#: levels down, so this leaves room for :data:`pivot_envs.actions.MAX_JSON_DEPTH` inside). Deeper input
#: would hit Python's recursion limit in the converters, digests and verifiers.
MAX_RECORD_DEPTH = 100

#: Longest line (bytes) the reader decodes; a longer one is reported and skipped without holding it whole.
MAX_LINE_BYTES = 64 * 1024 * 1024

#: The ``field`` of problems that concern the whole file (encoding, no records) rather than one record.
FILE_FIELD = "<file>"
#: The ``field`` of problems that stop a line from being decoded at all (bytes, JSON syntax).
LINE_FIELD = "<line>"


class TrajectoryError(ValueError):
    """A record is malformed. Carries ``path``, ``line`` and ``field`` as attributes."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        # line 0 means the whole file (an empty file, a UTF-16 file): no line number is printed
        where = ":".join(str(p) for p in (path, line or None) if p is not None)
        prefix = f"{where}: " if where else ""
        loc = f"field '{field}': " if field else ""
        super().__init__(f"{prefix}{loc}{message}")
        self.path, self.line, self.field, self.reason = path, line, field, message


@dataclass(frozen=True)
class RecordError:
    """One problem found while loading: where it is and what is wrong.

    ``line`` is 1-based; 0 (with ``field == "<file>"``) marks a problem of the whole file, such as a
    file with no records.
    """

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        if self.line < 1:
            return f"{self.path}: {self.message}"
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
    #: Turns whose assistant message carried ``"pivotrl": {"skip": true}``: kept in the conversation and
    #: replayed, but no pivot candidate and not evaluated.
    skipped_turns: frozenset[int] = frozenset()

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

    @property
    def scored_turns(self) -> list[int]:
        """The turns that are candidates and evaluated: every turn not in :attr:`skipped_turns`."""
        return [t for t in range(self.num_turns) if t not in self.skipped_turns]

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON data (tool schemas written out in full; skip flags put back on their messages)."""
        messages = self.messages
        if self.skipped_turns:
            messages = list(messages)
            for t in self.skipped_turns:
                i = self.assistant_indices[t]
                messages[i] = {**messages[i], "pivotrl": {"skip": True}}
        d: dict[str, Any] = {"id": self.id, "domain": self.domain, "messages": messages, "tools": self.tools}
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


def validate_record(obj: Any, tool_schemas: dict[str, list[dict[str, Any]]] | None = None) -> list[tuple[str, str]]:
    """Return ``(field, message)`` for every problem in one decoded record; empty when valid.

    ``tool_schemas`` (``{domain: schemas}``) adds to the registered domains' schemas for ``"tools": "domain"``.
    """
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
    if isinstance(env, dict) and env.get("sandbox", "none") not in _SANDBOX_KINDS:
        errs.append(("env.sandbox", f"unknown sandbox {env.get('sandbox')!r}; expected one of "
                                    f"{', '.join(sorted(_SANDBOX_KINDS))} (a plugin's kind is known once its "
                                    "package is installed)"))

    tool_names = set()
    tools = obj.get("tools", [])
    if isinstance(tools, str) or (isinstance(tools, list) and tools and all(isinstance(t, str) for t in tools)):
        tools, problem = _referenced_tools(obj, tools, tool_schemas)
        if problem:
            errs.append(("tools", problem))
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
        flags = m.get("pivotrl")
        if flags is not None:
            if role != "assistant" or not isinstance(flags, dict):
                errs.append((f"{where}.pivotrl", 'expected {"skip": true|false} on an assistant message, got '
                                                 f"{type(flags).__name__} on a {role} message"))
            else:
                for key, value in flags.items():
                    if key not in MESSAGE_FLAGS:
                        errs.append((f"{where}.pivotrl.{key}", f"unknown flag; known: {', '.join(MESSAGE_FLAGS)}"))
                    elif not isinstance(value, bool):
                        errs.append((f"{where}.pivotrl.{key}", f"expected true or false, got {value!r:.40}"))
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


def _referenced_tools(obj: dict[str, Any], ref: str | list[str],
                      extra: dict[str, list[dict[str, Any]]] | None) -> tuple[list[dict[str, Any]], str | None]:
    """Resolve ``"tools": "domain"`` (every schema of the record's domain) or a list of tool names."""
    domain = obj.get("domain") or "generic"
    schemas = (extra or {}).get(domain, _DOMAIN_TOOLS.get(domain)) if isinstance(domain, str) else None
    if isinstance(ref, str) and ref != "domain":
        return [], f'expected a list of function specs, "domain" or a list of tool names; got the string {ref!r:.40}'
    if schemas is None:
        return [], (f"refers to the tool schemas of domain {domain!r}, which declares none here: install and "
                    "register the domain (its Domain(tool_schemas=...)), or write the schemas into the record")
    if ref == "domain":
        return list(schemas), None
    by_name = {s.get("function", {}).get("name"): s for s in schemas if isinstance(s, dict)}
    missing = [n for n in ref if n not in by_name]
    if missing:
        return [], f"tool(s) {missing} are not among domain {domain!r}'s schemas ({', '.join(sorted(map(str, by_name)))})"
    return [by_name[n] for n in ref], None


def record_from_dict(obj: dict[str, Any], tool_schemas: dict[str, list[dict[str, Any]]] | None = None) -> Trajectory:
    """Build a :class:`Trajectory` from a decoded record, raising :class:`TrajectoryError` when invalid.

    Tool-call arguments given as objects are normalised to JSON strings (the OpenAI wire form); tool
    references are resolved (``tool_schemas``: ``{domain: schemas}`` beside the registered ones) and skip
    flags are taken off the messages into :attr:`Trajectory.skipped_turns`.
    """
    errs = validate_record(obj, tool_schemas)
    if errs:
        f, msg = errs[0]
        raise TrajectoryError(msg, field=f)
    tools = obj.get("tools") or []
    if isinstance(tools, str) or all(isinstance(t, str) for t in tools):
        tools, _ = _referenced_tools(obj, tools, tool_schemas) if tools else ([], None)
    messages = []
    skipped = set()
    for m in obj["messages"]:
        m = dict(m)
        flags = m.pop("pivotrl", None) or {}
        if flags.get("skip"):
            skipped.add(sum(1 for x in messages if x.get("role") == "assistant"))
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
        tools=list(tools),
        env=dict(obj.get("env") or {}),
        task=obj.get("task"),
        metadata=dict(obj.get("metadata") or {}),
        skipped_turns=frozenset(skipped),
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

    @property
    def invalid_lines(self) -> int:
        """How many distinct lines had a problem (file-level problems, line 0, are not lines)."""
        return len({e.line for e in self.errors if e.line > 0})

    @property
    def file_errors(self) -> list[RecordError]:
        """Problems of the whole file (no records, wrong encoding): the file as a whole is unusable."""
        return [e for e in self.errors if e.field == FILE_FIELD]


# ---------------------------------------------------------------------------------------------------
# Reading JSON Lines


@dataclass(frozen=True)
class JsonLine:
    """One item of :func:`read_jsonl`: a decoded value, or an error with the field it concerns."""

    line: int
    value: Any = None
    error: str | None = None
    field: str = LINE_FIELD


_ONE_LINE_HINT = "each record must be one line (JSON Lines); re-save with one compact record per line, e.g. `jq -c . IN > OUT.jsonl`"
_MULTILINE_MAX_LINES = 2000
_MULTILINE_MAX_CHARS = 4 * 1024 * 1024
_DIGITS_RE = re.compile(r"\d+")


def read_jsonl(path: str | Path) -> Iterator[JsonLine]:
    """Decode a JSON Lines file, one :class:`JsonLine` per non-blank line; never raises on file content.

    Problems come back as items with ``error`` set (see the module docstring for what is reported);
    ``line`` is 1-based, or 0 for a problem of the whole file. ``OSError`` (no file, no permission) is
    still raised: it is not about the content.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
        foreign = _foreign_encoding(head)
        if foreign is not None:
            encoding, iconv_name = foreign
            yield JsonLine(1, error=f"the file is {encoding}; JSON Lines files must be UTF-8. Convert it, e.g. "
                                    f"`iconv -f {iconv_name} -t UTF-8 IN > OUT`", field=FILE_FIELD)
            return
        fh.seek(3 if head.startswith(b"\xef\xbb\xbf") else 0)  # a UTF-8 BOM (Windows editors) is harmless
        yield from _decode_lines(_text_lines(fh))


def _foreign_encoding(head: bytes) -> tuple[str, str] | None:
    """``(description, iconv name)`` when the first bytes show a UTF-16/32 file (with or without a BOM)."""
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
                      (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE")):
        if head.startswith(bom):  # iconv's plain UTF-16/UTF-32 reads the mark and drops it
            return f"{name} (it starts with a byte-order mark)", name[:6]
    pairs = len(head) // 2
    if pairs and head.count(0) * 4 >= len(head):  # JSON text is mostly ASCII: every other byte NUL is UTF-16
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if odd >= 0.4 * pairs and even < 0.1 * pairs:
            return "UTF-16LE (no byte-order mark; every other byte is NUL)", "UTF-16LE"
        if even >= 0.4 * pairs and odd < 0.1 * pairs:
            return "UTF-16BE (no byte-order mark; every other byte is NUL)", "UTF-16BE"
    return None


# (line number, text or None, ends with a newline, error or None)
_TextLine = tuple[int, str | None, bool, str | None]


def _text_lines(fh: Any) -> Iterator[_TextLine]:
    """Lines split on ``\\n`` only (not on the other characters ``str.splitlines`` breaks at), decoded as UTF-8."""
    lineno = 0
    while raw := fh.readline(MAX_LINE_BYTES + 1):
        lineno += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            total = len(raw)
            while chunk := fh.readline(1 << 20):  # skip the rest of the line without holding it
                total += len(chunk)
                if chunk.endswith(b"\n"):
                    break
            yield lineno, None, True, (f"the line is {total} bytes long; the limit is {MAX_LINE_BYTES} "
                                       "(pivot_envs.trajectory.MAX_LINE_BYTES)")
            continue
        terminated = raw.endswith(b"\n")
        raw = raw[:-1] if terminated else raw
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            yield lineno, raw.decode("utf-8"), terminated, None
        except UnicodeDecodeError as exc:
            column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
            yield lineno, None, terminated, (
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at column {column}; JSON Lines files must be UTF-8 "
                "(saved as Latin-1 or Windows-1252? convert it, e.g. `iconv -f WINDOWS-1252 -t UTF-8 IN > OUT`)")


def _decode_lines(lines: Iterator[_TextLine]) -> Iterator[JsonLine]:
    pushed: deque[_TextLine] = deque()

    def take() -> _TextLine | None:
        return pushed.popleft() if pushed else next(lines, None)

    records = blank = 0
    no_lookahead_until = 0  # lines already tried as part of a multi-line record are not tried again
    while (item := take()) is not None:
        lineno, text, terminated, error = item
        if error is not None:
            records += 1
            yield JsonLine(lineno, error=error)
            continue
        assert text is not None
        if not text.strip():
            blank += 1
            continue
        records += 1
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            # the value runs past the end of the line (an open string is reported at its start)
            ends_early = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
            if ends_early and lineno > no_lookahead_until:
                last, taken = _multiline_record(text, take)
                if last is not None:
                    records += last - lineno
                    pushed.extendleft(reversed([t for t in taken if t[0] > last]))
                    yield JsonLine(lineno, error=f"one record spans lines {lineno}-{last} (pretty-printed JSON?): "
                                                 + _ONE_LINE_HINT)
                    continue
                pushed.extendleft(reversed(taken))
                no_lookahead_until = taken[-1][0] if taken else lineno
            yield JsonLine(lineno, error=_json_error(exc, text, ends_early, terminated))
            continue
        except RecursionError:  # json's C parser guards its recursion, so this is clean
            yield JsonLine(lineno, error=f"invalid JSON: nested deeper than {MAX_RECORD_DEPTH} levels of arrays/objects")
            continue
        except ValueError as exc:  # Python's int-string conversion limit
            yield JsonLine(lineno, error=_number_error(exc, text))
            continue
        except MemoryError:
            yield JsonLine(lineno, error=f"the line ({len(text)} characters) is too large to decode in memory")
            continue
        problem = json_problem(value, max_depth=MAX_RECORD_DEPTH)
        if problem is not None:
            where, reason = problem
            yield JsonLine(lineno, error=reason, field=(where[:120] or LINE_FIELD))
            continue
        yield JsonLine(lineno, value=value)
    if records == 0:
        what = "the file is empty" if blank == 0 else f"the file has only {blank} blank line(s)"
        yield JsonLine(0, error=f"no records: {what}; expected one JSON object per line", field=FILE_FIELD)


def _multiline_record(first: str, take: Callable[[], _TextLine | None]) -> tuple[int | None, list[_TextLine]]:
    """Does a record start on this line and end on a later one? ``(last line or None, lines taken)``.

    Joins the following lines until they parse as one JSON value; stops at a real syntax error, an
    undecodable line, or :data:`_MULTILINE_MAX_LINES` / :data:`_MULTILINE_MAX_CHARS`. Parsing is tried
    only where a line ends with a closing bracket, and all attempts together parse at most 16 times the
    text taken, so a hostile file costs linear time.
    """
    parts, size, taken = [first], len(first), []
    parsed = 0
    while len(taken) < _MULTILINE_MAX_LINES and size < _MULTILINE_MAX_CHARS:
        item = take()
        if item is None:
            break
        taken.append(item)
        text = item[1]
        if text is None:
            break
        parts.append(text)
        size += len(text) + 1
        if not text.rstrip().endswith(("}", "]")) or parsed > 16 * size + 65536:
            continue
        joined = "\n".join(parts)
        parsed += len(joined)
        try:
            json.loads(joined)
        except json.JSONDecodeError as exc:
            if exc.pos < len(joined.rstrip()):
                break  # a real error, not just "more to come"
            continue
        except (RecursionError, ValueError, MemoryError):
            break
        return item[0], taken
    return None, taken


def _json_error(exc: json.JSONDecodeError, text: str, ends_early: bool, terminated: bool) -> str:
    column = exc.pos + 1  # within this line (json counts lines itself only when given several)
    if not ends_early:
        hint = f"; {_ONE_LINE_HINT}" if exc.msg == "Extra data" else ""
        return f"invalid JSON: {exc.msg} at column {column}{hint}"
    where = ("the file ends in the middle of this record (cut off while it was written?)" if not terminated
             else "the line ends before its record does (cut off, or a record spread over several lines? "
             + _ONE_LINE_HINT + ")")
    return f"invalid JSON: {exc.msg} at column {column}: {where}"


def _number_error(exc: ValueError, text: str) -> str:
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if "digits" not in str(exc):
        return f"invalid JSON: {exc}"
    column = next((m.start() + 1 for m in _DIGITS_RE.finditer(text) if len(m.group()) > limit), None)
    at = f" at column {column}" if column else ""
    return (f"a number{at} has more than {limit} digits (Python's int-string conversion limit); "
            "write such values as strings")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line_number, decoded_object, error)`` per non-blank line (see :func:`read_jsonl`)."""
    for item in read_jsonl(path):
        yield item.line, item.value, item.error


def load_trajectories(path: str | Path, *, strict: bool = False,
                      tool_schemas: dict[str, list[dict[str, Any]]] | None = None) -> LoadResult:
    """Load a JSONL file of trajectory records.

    Args:
        path: The file.
        strict: Raise :class:`TrajectoryError` on the first bad record instead of skipping it.
        tool_schemas: ``{domain: schemas}`` for records saying ``"tools": "domain"``, beside the schemas of
            registered domains (a :class:`~pivot_envs.domain.Domain` passes its own).

    >>> result = load_trajectories(bundled_path("tool_use"))  # doctest: +SKIP
    >>> len(result), result.errors  # doctest: +SKIP
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

    for item in read_jsonl(path):
        lineno, obj = item.line, item.value
        if item.error is not None:
            bad(lineno, item.field, item.error)
            continue
        problems = validate_record(obj, tool_schemas)
        if problems:
            for fld, msg in problems if not strict else problems[:1]:
                bad(lineno, fld, msg)
            continue
        if obj["id"] in seen:
            bad(lineno, "id", f"duplicate id {obj['id']!r} (first seen on line {seen[obj['id']]})")
            continue
        seen[obj["id"]] = lineno
        good.append(record_from_dict(obj, tool_schemas))
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
    except (ValueError, RecursionError, MemoryError):  # any output that is not sane JSON is not an error object
        return False
    return isinstance(obj, dict) and "error" in obj and len(obj) <= 2


def extract_candidates(
    trajectories: Iterable[Trajectory], options: CandidateOptions | None = None
) -> tuple[list[Candidate], Counter[str]]:
    """Every assistant turn becomes a candidate unless it is flagged ``skip`` or a cleaning rule drops it.

    Returns the candidates and a counter of drops by rule name (``kept`` counts the candidates,
    ``skipped`` the turns flagged in the record).
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
            if turn in traj.skipped_turns:
                stats["skipped"] += 1
                continue
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
