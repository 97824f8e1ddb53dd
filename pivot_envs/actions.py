"""Assistant actions: one whole assistant turn, parsed from a message dict or from raw model text.

An :class:`Action` is what the environment, the verifiers and the agents pass around. Parsing never
raises on model output: a malformed tool call is kept with its ``error`` set, and an unparsable turn
has ``parse_error`` set, so verifiers can give a zero reward with a reason (``BAD_FORMAT`` /
``BAD_JSON``).

The default text format is Hermes/Qwen (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
reasoning in ``<think>...</think>``), the format most open chat templates render tool calls in.

Degenerate output is data, never a crash, and never slow (a policy under RL finds every such hole):

- parsing scans the text with ``str.find`` (linear time; a backtracking regex took 22 s on 40,000 spaces);
- a turn longer than :data:`MAX_ACTION_CHARS` is not parsed at all (``parse_error`` says so);
- JSON nested deeper than :data:`MAX_JSON_DEPTH`, integers past Python's int-string conversion limit
  (4,300 digits), unpaired surrogates (not encodable as UTF-8) and values that are not JSON (sets,
  objects) make the call malformed with a named reason instead of raising ``RecursionError``,
  ``ValueError`` or ``TypeError`` later in a verifier, a digest or a chat template.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

#: Longest assistant turn (characters of raw text, or content plus raw arguments of a message) that is
#: parsed. Far above any real tool call or reply; it bounds the work and memory one sample can cost.
MAX_ACTION_CHARS = 64 * 1024

#: Deepest nesting of JSON arrays/objects accepted in tool-call arguments. Real arguments nest a few
#: levels; the limit keeps every recursive consumer (verifiers, digests, json) far from Python's stack limit.
MAX_JSON_DEPTH = 64

_OPEN_CALL, _CLOSE_CALL = "<tool_call>", "</tool_call>"
_OPEN_THINK, _CLOSE_THINK = "<think>", "</think>"
_JSON_SCALARS = (str, int, float, bool, type(None))
# Failures Python's json raises on hostile input besides JSONDecodeError: RecursionError (deep nesting),
# ValueError (int-string conversion limit), MemoryError (huge input), TypeError/OverflowError (odd values).
_JSON_FAILURES = (RecursionError, ValueError, OverflowError, MemoryError, TypeError, UnicodeError)


def _int_digit_limit() -> int:
    get = getattr(sys, "get_int_max_str_digits", None)  # Python >= 3.11 (and patched 3.7-3.10)
    return get() if get is not None else 0


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH, max_nodes: int | None = None) -> tuple[str, str] | None:
    """``(path, reason)`` for the first thing that makes ``value`` unsafe to treat as JSON, else None.

    Checks, iteratively (so the check itself cannot overflow the stack): nesting deeper than
    ``max_depth`` (a cycle counts as infinitely deep), more than ``max_nodes`` values, values that are
    not JSON (anything but dict with string keys, list/tuple, str, int, float, bool, None), integers too
    long to convert to text, and strings with unpaired surrogates (they cannot be encoded as UTF-8).
    ``path`` is dotted (``messages[2].content``; ``""`` for ``value`` itself).

    >>> json_problem({"a": [1, {"b": "x"}]}) is None
    True
    >>> json_problem({"a": [[[1]]]}, max_depth=3)
    ('a[0][0]', 'nested deeper than 3 levels of arrays/objects')
    """
    digit_limit = _int_digit_limit()
    # (value, depth, link) where link = (parent_link, key) rebuilds the path only when reporting.
    stack: list[tuple[Any, int, Any]] = [(value, 0, None)]
    nodes = 0
    while stack:
        item, depth, link = stack.pop()
        nodes += 1
        if max_nodes is not None and nodes > max_nodes:
            return _path(link), f"too large: more than {max_nodes} JSON values"
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                return _path(link), ("not encodable as UTF-8: a string has an unpaired surrogate "
                                     f"({item[exc.start]!r}) at index {exc.start}")
            continue
        if isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        if isinstance(item, int):
            # bit_length bounds the decimal digits without converting (converting is what raises)
            if digit_limit and item.bit_length() > 3.32 * digit_limit:
                return _path(link), _too_many_digits(digit_limit)
            continue
        if isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                return _path(link), f"nested deeper than {max_depth} levels of arrays/objects"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return _path(link), f"not JSON: object keys must be strings, got {type(key).__name__}"
                    stack.append((key, depth + 1, (link, key)))
                    stack.append((child, depth + 1, (link, key)))
            else:
                stack.extend((child, depth + 1, (link, i)) for i, child in enumerate(item))
            continue
        return _path(link), f"not JSON: a {type(item).__name__} value"
    return None


def _too_many_digits(limit: int) -> str:
    return (f"not usable: a number has more than {limit} digits (Python's int-string conversion limit); "
            "write it as a string")


def describe(subject: str, reason: str, where: str = "") -> str:
    """One short sentence: ``"arguments are nested deeper than 64 levels ... (at x[0])"``."""
    verb = "are" if subject.endswith("s") else "is"
    at = f" (at {where[:80]}{'...' if len(where) > 80 else ''})" if where else ""
    return f"{subject} {verb} {reason}{at}"


def _path(link: Any) -> str:
    keys = []
    while link is not None:
        link, key = link
        keys.append(key)
    out = ""
    for key in reversed(keys[-200:]):  # a path is for reading: its tail is enough
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def loads_checked(text: str, *, max_depth: int = MAX_JSON_DEPTH, wrapper_levels: int = 0) -> tuple[Any, str, str | None]:
    """``(value, "", None)`` for JSON text that is safe to use, else ``(None, where, reason)``; never raises.

    ``reason`` completes "X is ..." and names the cause: ``not valid JSON: Expecting ',' delimiter at
    char 12``, ``nested deeper than 64 levels of arrays/objects``, ``not usable: a number has more than
    4300 digits ...``; ``where`` is the path of the offending value when known (see :func:`json_problem`).
    ``wrapper_levels`` objects around the value the limit is about (the call object around a Hermes
    call's arguments) do not count against ``max_depth``.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, "", f"not valid JSON: {exc.msg} at char {exc.pos}"
    except RecursionError:  # the C parser guards its recursion: deep input fails cleanly here
        return None, "", f"nested deeper than {max_depth} levels of arrays/objects"
    except ValueError as exc:  # the int-string conversion limit; its message names the digit count
        if "digits" in str(exc):
            return None, "", _too_many_digits(_int_digit_limit())
        return None, "", f"not valid JSON: {exc}"
    except _JSON_FAILURES as exc:
        return None, "", f"not valid JSON ({type(exc).__name__})"
    problem = json_problem(value, max_depth=max_depth + wrapper_levels)
    if problem is not None:
        reason = problem[1]
        if wrapper_levels and reason.startswith("nested deeper"):
            reason = f"nested deeper than {max_depth} levels of arrays/objects"
        return None, problem[0], reason
    return value, "", None


def _dumps(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False)
    except _JSON_FAILURES:
        return None


@dataclass(frozen=True)
class ToolCall:
    """One function call. ``arguments`` is the parsed JSON object, or ``None`` when it did not parse.

    Attributes:
        name: The function name as written.
        arguments: Parsed arguments (a dict) or None if ``raw_arguments`` is not a JSON object.
        raw_arguments: The arguments exactly as written (a JSON string).
        id: The call id, when the source had one.
        error: Why the call is malformed (bad JSON, arguments not an object, missing name, too deep,
            too long), or None.
    """

    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = "{}"
    id: str | None = None
    error: str | None = None

    @classmethod
    def from_openai(cls, call: Any) -> ToolCall:
        """Build from an OpenAI ``tool_calls`` entry (``{"id", "type", "function": {"name", "arguments"}}``)."""
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            got = type(fn).__name__ if isinstance(call, dict) else f"a {type(call).__name__} entry"
            return cls(name="", arguments=None, raw_arguments="",
                       error=f"tool call has no 'function' object (got {got})")
        call_id = call.get("id")
        return cls.from_parts(fn.get("name"), fn.get("arguments", "{}"), call_id if isinstance(call_id, str) else None)

    @classmethod
    def from_parts(cls, name: Any, arguments: Any, call_id: str | None = None) -> ToolCall:
        """Build from a name and arguments given as a JSON string or an already-parsed object.

        Never raises: arguments that are not a JSON object, nest too deep, are longer than
        :data:`MAX_ACTION_CHARS` or hold non-JSON values give a call with ``error`` set.
        """
        error = None
        if not isinstance(name, str) or not name.strip():
            error = "tool call has no function name" + (f" (got {type(name).__name__})" if name is not None else "")
            name = name if isinstance(name, str) else ""
        elif _surrogate_error(name):  # a name that cannot be encoded would break every digest and log line
            error, name = "tool call name has an unpaired surrogate; it is not valid Unicode", _clean(name)
        call_id = _clean(call_id) if isinstance(call_id, str) else None
        if isinstance(arguments, str):
            raw = arguments
        else:
            # An already-parsed value: check it before serialising (json.dumps recurses, and raises on
            # sets, objects and integers past the conversion limit).
            problem = json_problem(arguments, max_nodes=MAX_ACTION_CHARS)
            if problem is not None:
                return cls(name, None, _safe_repr(arguments), call_id, error or describe("arguments", problem[1], problem[0]))
            raw = _dumps(arguments)
            if raw is None:  # json_problem let through something json cannot write (defensive)
                return cls(name, None, _safe_repr(arguments), call_id, error or "arguments are not JSON-serialisable")
        if len(raw) > MAX_ACTION_CHARS:
            return cls(name, None, raw[:MAX_ACTION_CHARS], call_id,
                       error or f"arguments are {len(raw)} characters long; the limit is {MAX_ACTION_CHARS}")
        if isinstance(arguments, dict):
            return cls(name, arguments, raw, call_id, error)
        if raw.strip() == "":
            return cls(name, {}, raw, call_id, error)
        parsed, where, reason = loads_checked(raw)
        if reason is not None:
            return cls(name, None, raw, call_id, error or describe("arguments", reason, where))
        if not isinstance(parsed, dict):
            return cls(name, None, raw, call_id, error or f"arguments must be a JSON object, got {type(parsed).__name__}")
        return cls(name, parsed, raw, call_id, error)

    def to_openai(self, call_id: str) -> dict[str, Any]:
        """The wire form; a call whose arguments cannot be serialised keeps its raw text (never raises)."""
        args = _dumps(self.arguments) if self.arguments is not None else None
        if args is None:
            args = self.raw_arguments if isinstance(self.raw_arguments, str) else _safe_repr(self.raw_arguments)
        name = self.name if isinstance(self.name, str) else ""
        return {"id": self.id or call_id, "type": "function", "function": {"name": name, "arguments": args}}


def _safe_repr(value: Any, limit: int = 200) -> str:
    """A bounded description of a value that could not be serialised (for ``raw_arguments``)."""
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        # never repr a container: shared references make its repr exponential in the nesting depth
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ (or an int past the conversion limit) must not escape
        text = f"<{type(value).__name__}>"
    return text[:limit]


@dataclass(frozen=True)
class Action:
    """One assistant turn: either tool calls (possibly several) or a message to the user.

    Attributes:
        content: The visible text of the turn ("" when there is none).
        tool_calls: The calls, in order. Empty for a message to the user.
        reasoning: Hidden reasoning, never part of what is judged.
        parse_error: Set when the turn could not be parsed at all (e.g. an unterminated tool-call block,
            a turn longer than :data:`MAX_ACTION_CHARS`, text that is not valid Unicode).
    """

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = field(default_factory=tuple)
    reasoning: str | None = None
    parse_error: str | None = None

    @property
    def kind(self) -> str:
        """``"tool_call"`` when the turn calls tools, else ``"message"``."""
        return "tool_call" if self.tool_calls else "message"

    @property
    def malformed(self) -> str | None:
        """The first reason this action is invalid (parse error or a malformed call), else None."""
        if self.parse_error:
            return self.parse_error
        for call in self.tool_calls:
            if call.error:
                return call.error
        return None

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Action:
        """Build from an OpenAI assistant message dict; odd shapes give ``parse_error``, never an exception."""
        if not isinstance(message, dict):
            return cls(parse_error=f"action must be text or a message dict, got {type(message).__name__}")
        content = message.get("content") or ""
        if isinstance(content, list):  # content parts
            content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        elif not isinstance(content, str):
            return cls(parse_error=f"content must be a string or a list of text parts, got {type(content).__name__}")
        reasoning = message.get("reasoning_content")
        reasoning = reasoning if isinstance(reasoning, str) else None
        size = len(content) + len(reasoning or "")
        if size > MAX_ACTION_CHARS:
            return cls(content=_clean(content[:MAX_ACTION_CHARS]), parse_error=_too_long(size))
        raw_calls = message.get("tool_calls") or []
        if not isinstance(raw_calls, (list, tuple)):
            return cls(content=_clean(content), reasoning=reasoning,
                       parse_error=f"tool_calls must be a list of calls, got {type(raw_calls).__name__}")
        calls = []
        for raw_call in raw_calls:
            call = ToolCall.from_openai(raw_call)
            size += len(call.name) + len(call.raw_arguments)
            if size > MAX_ACTION_CHARS:  # stop early: a list of a million calls costs nothing more
                return cls(content=_clean(content), reasoning=reasoning, parse_error=_too_long(size, at_least=True))
            calls.append(call)
        parse_error = _surrogate_error(content)
        return cls(content=_clean(content), tool_calls=tuple(calls), reasoning=_clean(reasoning), parse_error=parse_error)

    @classmethod
    def parse(cls, text: str, format: str = "hermes") -> Action:
        """Parse raw model text of one assistant turn (linear time; never raises on any text).

        >>> a = Action.parse('<think>check</think><tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>')
        >>> a.kind, a.tool_calls[0].name, a.tool_calls[0].arguments, a.reasoning
        ('tool_call', 'f', {'x': 1}, 'check')
        >>> Action.parse("Hello!").kind
        'message'
        >>> Action.parse("<tool_call>" + "[" * 1500 + "]" * 1500 + "</tool_call>").malformed
        'tool call is nested deeper than 64 levels of arrays/objects'

        Raises:
            ValueError: ``format`` is not a known tool-call format (a configuration error, not model output).
        """
        if format != "hermes":
            raise ValueError(f"unknown tool-call format {format!r}; supported: 'hermes'")
        if not isinstance(text, str):
            return cls(parse_error=f"action must be text or a message dict, got {type(text).__name__}")
        if len(text) > MAX_ACTION_CHARS:
            return cls(content=_clean(text[:MAX_ACTION_CHARS]), parse_error=_too_long(len(text)))
        parse_error = _surrogate_error(text)
        text = _clean(text)
        body, reasoning = _split_reasoning(text)
        content_parts: list[str] = []
        calls: list[ToolCall] = []
        i = 0
        while True:
            start = body.find(_OPEN_CALL, i)
            if start < 0:
                content_parts.append(body[i:])
                break
            content_parts.append(body[i:start])
            start += len(_OPEN_CALL)
            end = body.find(_CLOSE_CALL, start)
            if end < 0:  # an unterminated block runs to the end of the turn
                parse_error = parse_error or "unterminated <tool_call> block"
                calls.append(_call_from_block(body[start:].strip()))
                break
            calls.append(_call_from_block(body[start:end].strip()))
            i = end + len(_CLOSE_CALL)
        content = "".join(content_parts).strip()
        return cls(content=content, tool_calls=tuple(calls), reasoning=reasoning, parse_error=parse_error)

    @classmethod
    def coerce(cls, action: Action | dict[str, Any] | str, format: str = "hermes") -> Action:
        """Accept an Action, an assistant message dict or raw text (anything else is a ``parse_error``)."""
        if isinstance(action, Action):
            return action
        if isinstance(action, dict):
            return cls.from_message(action)
        return cls.parse(action, format=format)

    def to_message(self, id_prefix: str = "call") -> dict[str, Any]:
        """The OpenAI assistant message for this action (reasoning kept as ``reasoning_content``)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.reasoning:
            msg["reasoning_content"] = self.reasoning
        if self.tool_calls:
            msg["tool_calls"] = [c.to_openai(f"{id_prefix}_{i}") for i, c in enumerate(self.tool_calls)]
        return msg

    def to_text(self) -> str:
        """Render in the Hermes text format (the inverse of :meth:`parse`, reasoning omitted)."""
        parts = [self.content] if self.content else []
        for call in self.tool_calls:
            name = call.name if isinstance(call.name, str) else ""
            body = None
            if call.arguments is not None:
                body = _dumps({"name": name, "arguments": call.arguments})
            if body is None:  # malformed or unserialisable arguments: keep what was written, as a string
                raw = call.raw_arguments if isinstance(call.raw_arguments, str) else _safe_repr(call.raw_arguments)
                body = json.dumps({"name": name, "arguments": raw}, ensure_ascii=False)
            parts.append(_OPEN_CALL + body + _CLOSE_CALL)
        return "\n".join(parts)


def _call_from_block(block: str) -> ToolCall:
    """One ``<tool_call>`` block's JSON (``{"name", "arguments"}``) as a call; problems become ``error``."""
    obj, where, reason = loads_checked(block, wrapper_levels=1)  # the call object around the arguments
    if reason is not None:
        return ToolCall("", None, block, error=describe("tool call", reason, where))
    if not isinstance(obj, dict):
        return ToolCall("", None, block, error="tool call must be a JSON object")
    return ToolCall.from_parts(obj.get("name"), obj.get("arguments", {}))


def _split_reasoning(text: str) -> tuple[str, str | None]:
    """``(text without <think> blocks, reasoning)``; an unterminated ``<think>`` takes the rest of the turn."""
    if _OPEN_THINK not in text:
        return text, None
    kept: list[str] = []
    thoughts: list[str] = []
    i = 0
    while True:
        start = text.find(_OPEN_THINK, i)
        if start < 0:
            kept.append(text[i:])
            break
        kept.append(text[i:start])
        start += len(_OPEN_THINK)
        end = text.find(_CLOSE_THINK, start)
        if end < 0:
            thoughts.append(text[start:])
            break
        thoughts.append(text[start:end])
        i = end + len(_CLOSE_THINK)
    return "".join(kept), "\n".join(t.strip() for t in thoughts) or None


def _too_long(size: int, at_least: bool = False) -> str:
    more = "over " if at_least else ""
    return f"action is {more}{size} characters long; the limit is {MAX_ACTION_CHARS} (pivot_envs.actions.MAX_ACTION_CHARS)"


def _surrogate_error(text: str | None) -> str | None:
    if not text:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"action text has an unpaired surrogate ({text[exc.start]!r}) at index {exc.start}; it is not valid Unicode"
    return None


def _clean(text: str | None) -> str | None:
    """``text`` with unpaired surrogates replaced, so what is kept can be hashed, logged and tokenised."""
    if not text:
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
