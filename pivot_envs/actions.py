"""Assistant actions: one whole assistant turn, parsed from a message dict or from raw model text.

An :class:`Action` is what the environment, the verifiers and the agents pass around. Parsing never
raises on model output: a malformed tool call is kept with its ``error`` set, and an unparsable turn
has ``parse_error`` set, so verifiers can give a zero reward with a reason.

The default text format is Hermes/Qwen (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
reasoning in ``<think>...</think>``), the format most open chat templates render tool calls in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """One function call. ``arguments`` is the parsed JSON object, or ``None`` when it did not parse.

    Attributes:
        name: The function name as written.
        arguments: Parsed arguments (a dict) or None if ``raw_arguments`` is not a JSON object.
        raw_arguments: The arguments exactly as written (a JSON string).
        id: The call id, when the source had one.
        error: Why the call is malformed (bad JSON, arguments not an object, missing name), or None.
    """

    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = "{}"
    id: str | None = None
    error: str | None = None

    @classmethod
    def from_openai(cls, call: dict[str, Any]) -> ToolCall:
        """Build from an OpenAI ``tool_calls`` entry (``{"id", "type", "function": {"name", "arguments"}}``)."""
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            return cls(name="", arguments=None, raw_arguments="", error="tool call has no 'function' object")
        return cls.from_parts(fn.get("name"), fn.get("arguments", "{}"), call.get("id"))

    @classmethod
    def from_parts(cls, name: Any, arguments: Any, call_id: str | None = None) -> ToolCall:
        """Build from a name and arguments given as a JSON string or an already-parsed object."""
        error = None
        if not isinstance(name, str) or not name.strip():
            error = "tool call has no function name"
            name = name if isinstance(name, str) else ""
        if isinstance(arguments, dict):
            return cls(name, arguments, json.dumps(arguments, ensure_ascii=False), call_id, error)
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        if raw.strip() == "":
            return cls(name, {}, raw, call_id, error)
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            return cls(name, None, raw, call_id, error or f"arguments are not valid JSON: {exc.msg} at char {exc.pos}")
        if not isinstance(parsed, dict):
            return cls(name, None, raw, call_id, error or f"arguments must be a JSON object, got {type(parsed).__name__}")
        return cls(name, parsed, raw, call_id, error)

    def to_openai(self, call_id: str) -> dict[str, Any]:
        args = json.dumps(self.arguments, ensure_ascii=False) if self.arguments is not None else self.raw_arguments
        return {"id": self.id or call_id, "type": "function", "function": {"name": self.name, "arguments": args}}


@dataclass(frozen=True)
class Action:
    """One assistant turn: either tool calls (possibly several) or a message to the user.

    Attributes:
        content: The visible text of the turn ("" when there is none).
        tool_calls: The calls, in order. Empty for a message to the user.
        reasoning: Hidden reasoning, never part of what is judged.
        parse_error: Set when the turn could not be parsed at all (e.g. an unterminated tool-call block).
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
        """Build from an OpenAI assistant message dict."""
        content = message.get("content") or ""
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        calls = tuple(ToolCall.from_openai(c) for c in message.get("tool_calls") or [])
        return cls(content=str(content), tool_calls=calls, reasoning=message.get("reasoning_content"))

    @classmethod
    def parse(cls, text: str, format: str = "hermes") -> Action:
        """Parse raw model text of one assistant turn.

        >>> a = Action.parse('<think>check</think><tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>')
        >>> a.kind, a.tool_calls[0].name, a.tool_calls[0].arguments, a.reasoning
        ('tool_call', 'f', {'x': 1}, 'check')
        >>> Action.parse("Hello!").kind
        'message'
        """
        if format != "hermes":
            raise ValueError(f"unknown tool-call format {format!r}; supported: 'hermes'")
        if not isinstance(text, str):
            return cls(parse_error=f"action must be text or a message dict, got {type(text).__name__}")
        reasoning_parts = _THINK_RE.findall(text)
        body = _THINK_RE.sub("", text)
        if "<think>" in body:  # unterminated reasoning: everything after it is reasoning
            body, _, rest = body.partition("<think>")
            reasoning_parts.append(rest)
        reasoning = "\n".join(p.strip() for p in reasoning_parts) or None
        calls: list[ToolCall] = []
        parse_error = None
        for match in _TOOL_CALL_RE.finditer(body):
            block = match.group(1)
            if not match.group(0).rstrip().endswith("</tool_call>"):
                parse_error = "unterminated <tool_call> block"
            try:
                obj = json.loads(block)
            except json.JSONDecodeError as exc:
                calls.append(ToolCall("", None, block, error=f"tool call is not valid JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                calls.append(ToolCall("", None, block, error="tool call must be a JSON object"))
                continue
            calls.append(ToolCall.from_parts(obj.get("name"), obj.get("arguments", {})))
        content = _TOOL_CALL_RE.sub("", body).strip()
        return cls(content=content, tool_calls=tuple(calls), reasoning=reasoning, parse_error=parse_error)

    @classmethod
    def coerce(cls, action: Action | dict[str, Any] | str, format: str = "hermes") -> Action:
        """Accept an Action, an assistant message dict or raw text."""
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
            args = call.arguments if call.arguments is not None else call.raw_arguments
            parts.append("<tool_call>" + json.dumps({"name": call.name, "arguments": args}, ensure_ascii=False) + "</tool_call>")
        return "\n".join(parts)
