"""Converters from other trajectory formats into canonical records (OpenAI chat format, DESIGN.md).

Three formats are understood, each by one function taking one decoded JSON object and returning one
record dict that passes :func:`pivot_envs.trajectory.record_from_dict`:

- ``openai`` (:func:`from_openai`): a record that already has ``messages``. Normalises content parts
  to strings, tool-call arguments to JSON strings, the legacy ``function_call`` / ``role: "function"``
  / ``functions`` API to ``tool_calls`` / ``role: "tool"`` / ``tools``, and fills a missing ``id``.
- ``nemo_gym`` (:func:`from_nemo_gym`): NVIDIA NeMo Gym pivot rows, ``{"responses_create_params":
  {"input": [...Responses API items...], "tools": [...]}, "expected_action": {...}}``. The expected
  action becomes the last assistant turn, so the pivot is the record's last turn.
- ``sharegpt`` (:func:`from_sharegpt`): ``{"conversations": [{"from": ..., "value": ...}]}`` with the
  LLaMA-Factory conventions for ``function_call`` / ``observation`` turns and a JSON ``tools`` string.

Every converter raises :class:`~pivot_envs.trajectory.TrajectoryError` with ``field`` set to the path
of the offending value in the *input* object (``responses_create_params.input[3].arguments``); a
problem only visible once converted is reported against the converted record's field.
:func:`convert_file` converts a whole JSONL file, reporting bad lines without stopping.

Hostile or broken input is reported, never raised as anything else: JSON held in strings (arguments,
schemas, ShareGPT calls) that nests too deep, holds integers past Python's conversion limit or is not
JSON at all is a :class:`~pivot_envs.trajectory.TrajectoryError`, and so is a row nested deeper than
:data:`~pivot_envs.trajectory.MAX_RECORD_DEPTH`.

Generated ids are deterministic: tool calls without one get ``call_<turn>_<i>`` (turn = 0-based index of
the assistant turn, i = index of the call in it), records without one get ``traj-`` plus the first 16
hex digits of the sha256 of the canonical JSON of their converted messages.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivot_envs.actions import MAX_JSON_DEPTH, describe, json_problem, loads_checked
from pivot_envs.trajectory import (
    MAX_LINE_BYTES,
    MAX_RECORD_DEPTH,
    RecordError,
    Trajectory,
    TrajectoryError,
    read_jsonl,
    record_from_dict,
    save_trajectories,
    validate_record,
)

__all__ = [
    "FORMATS",
    "ConvertReport",
    "convert_file",
    "detect_format",
    "from_nemo_gym",
    "from_openai",
    "from_sharegpt",
]

_RECORD_KEYS = ("id", "domain", "messages", "tools", "env", "task", "metadata")
_TEXT_PARTS = ("text", "input_text", "output_text")
_THINK_PREFIX_RE = re.compile(r"^\s*<think>(.*?)</think>\s*", re.DOTALL)


# ---------------------------------------------------------------------------------------------------
# Shared helpers


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _require_object(obj: Any, where: str = "<record>") -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise TrajectoryError(f"expected a JSON object, got {_kind(obj)}", field=where)
    return obj


def _row(obj: Any) -> dict[str, Any]:
    """A converter's input row: an object, and safe to walk (the converters recurse and deep-copy)."""
    row = _require_object(obj)
    # a row read from a file has fewer values than bytes in its line; the cap stops shared-reference bombs
    problem = json_problem(row, max_depth=MAX_RECORD_DEPTH, max_nodes=MAX_LINE_BYTES)
    if problem is not None:
        raise TrajectoryError(problem[1], field=problem[0] or "<record>")
    return row


def _loads(text: str, where: str, subject: str, expected: str, *, max_depth: int = MAX_RECORD_DEPTH) -> Any:
    """JSON held in a string field; any failure (syntax, depth, huge numbers) is a TrajectoryError."""
    value, at, reason = loads_checked(text, max_depth=max_depth)
    if reason is not None:
        raise TrajectoryError(f"{describe(subject, reason, at)}: {text[:80]!r}; expected {expected}", field=where)
    return value


class _CallIds:
    """Deterministic ``call_<turn>_<i>`` ids that never collide with ids already in the input."""

    def __init__(self, taken: set[str]):
        self.taken = set(taken)

    def new(self, turn: int, index: int) -> str:
        base = cid = f"call_{turn}_{index}"
        n = 1
        while cid in self.taken:
            cid, n = f"{base}_{n}", n + 1
        self.taken.add(cid)
        return cid


def _collect_ids(obj: Any) -> set[str]:
    """Every string under an ``id`` / ``call_id`` / ``tool_call_id`` key anywhere in ``obj``."""
    out: set[str] = set()
    stack = [obj]  # iterative: a row's depth must not decide whether the converter can run
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("id", "call_id", "tool_call_id") and isinstance(value, str):
                    out.add(value)
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return out


def _text(content: Any, where: str, *, json_ok: bool = False) -> str | None:
    """Message content as a string: text parts are joined; other parts are refused.

    ``json_ok`` (tool outputs) serialises any other JSON value instead of refusing it.
    """
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
                continue
            ptype = part.get("type") if isinstance(part, dict) else None
            if ptype in _TEXT_PARTS and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif ptype == "refusal" and isinstance(part.get("refusal"), str):
                texts.append(part["refusal"])
            elif json_ok:
                return json.dumps(content, ensure_ascii=False)
            else:
                raise TrajectoryError(
                    f"unsupported content part {ptype or _kind(part)!r}: records hold text only; expected "
                    f'{{"type": "text", "text": ...}} (or input_text/output_text). Drop non-text parts first.',
                    field=f"{where}[{k}]",
                )
        return "".join(texts)
    if json_ok:
        return json.dumps(content, ensure_ascii=False)
    raise TrajectoryError(
        f"expected a string, a list of text parts or null, got {_kind(content)}", field=where
    )


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TrajectoryError(f"required: a non-empty function name string, got {value!r}", field=where)
    return value


def _arguments(value: Any, where: str) -> str:
    """Tool-call arguments as a JSON-object string (objects are serialised, strings must parse)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "{}"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if not isinstance(value, str):
        raise TrajectoryError(
            f"expected a JSON object or a JSON-object string, got {_kind(value)}", field=where
        )
    parsed = _loads(value, where, "arguments", 'a JSON object such as \'{"path": "a.txt"}\'', max_depth=MAX_JSON_DEPTH)
    if not isinstance(parsed, dict):
        raise TrajectoryError(f"arguments must be a JSON object, got a JSON {_kind(parsed)}", field=where)
    return value


def _make_call(
    name: Any,
    arguments: Any,
    call_id: Any,
    *,
    where: str,
    name_at: str,
    args_at: str,
    ids: _CallIds,
    turn: int,
    index: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One canonical ``tool_calls`` entry; ``where`` + ``name_at``/``args_at`` name the input fields."""
    fn = dict(extra or {})
    fn["name"] = _name(name, f"{where}.{name_at}")
    fn["arguments"] = _arguments(arguments, f"{where}.{args_at}")
    if call_id in (None, ""):
        call_id = ids.new(turn, index)
    elif not isinstance(call_id, str):
        raise TrajectoryError(f"expected a string call id, got {_kind(call_id)}", field=f"{where}.id")
    return {"id": call_id, "type": "function", "function": fn}


def _check_unique_calls(calls: list[dict[str, Any]], where: str) -> None:
    seen: set[str] = set()
    for call in calls:
        if call["id"] in seen:
            raise TrajectoryError(
                f"duplicate tool call id {call['id']!r} within one turn; tool outputs could not be matched "
                "to their calls. Give each call of a turn its own id.",
                field=where,
            )
        seen.add(call["id"])


def _tools(tools: Any, where: str) -> list[dict[str, Any]]:
    """Tool specs as ``{"type": "function", "function": {...}}``; flat specs (Responses API,
    legacy ``functions``, ShareGPT) are wrapped."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise TrajectoryError(f"expected a list of function specs, got {_kind(tools)}", field=where)
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        w = f"{where}[{i}]"
        if not isinstance(tool, dict):
            raise TrajectoryError(f"expected a function spec object, got {_kind(tool)}", field=w)
        ttype = tool.get("type", "function")
        if ttype != "function":
            raise TrajectoryError(
                f"unsupported tool type {ttype!r}: only function tools can be replayed; drop it or describe it "
                "as a function",
                field=f"{w}.type",
            )
        if isinstance(tool.get("function"), dict):
            fn, at = dict(tool["function"]), f"{w}.function"
        elif "function" in tool:
            raise TrajectoryError(f"expected an object, got {_kind(tool['function'])}", field=f"{w}.function")
        else:  # flat: {"type"?: "function", "name", "description", "parameters", "strict"?}
            fn, at = {k: v for k, v in tool.items() if k != "type"}, w
        fn["name"] = _name(fn.get("name"), f"{at}.name")
        params = fn.get("parameters")
        if isinstance(params, str):  # some ShareGPT dumps store the schema as a JSON string
            fn["parameters"] = params = _loads(params, f"{at}.parameters", "parameters", "a JSON-schema object")
        if params is not None and not isinstance(params, dict):
            raise TrajectoryError(
                f"expected a JSON-schema object, got {_kind(params)}", field=f"{at}.parameters"
            )
        if fn["name"] in names:
            raise TrajectoryError(f"duplicate tool name {fn['name']!r}", field=f"{at}.name")
        names.add(fn["name"])
        out.append({"type": "function", "function": fn})
    return out


def _finish(
    obj: dict[str, Any],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    consumed: tuple[str, ...],
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the record: canonical keys from ``obj``, every other unconsumed key under ``metadata``."""
    rid = obj.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if rid in (None, ""):
        blob = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        rid = "traj-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
    elif not isinstance(rid, str):
        raise TrajectoryError(f"expected a string id, got {_kind(rid)}", field="id")
    record: dict[str, Any] = {
        "id": rid,
        "domain": obj.get("domain") or "generic",
        "messages": messages,
        "tools": tools,
    }
    for key in ("env", "task"):
        if obj.get(key) is not None:
            record[key] = copy.deepcopy(obj[key])
    meta = copy.deepcopy(obj.get("metadata")) if obj.get("metadata") is not None else {}
    if not isinstance(meta, dict):
        raise TrajectoryError(f"expected an object, got {_kind(meta)}", field="metadata")
    for key, value in (metadata or {}).items():
        meta.setdefault(key, value)
    for key, value in obj.items():
        if key not in _RECORD_KEYS and key not in consumed:
            meta.setdefault(key, copy.deepcopy(value))
    if meta:
        record["metadata"] = meta
    errors = validate_record(record)
    if errors:
        fld, msg = errors[0]
        raise TrajectoryError(f"the converted record is invalid: {msg}", field=fld)
    return record


# ---------------------------------------------------------------------------------------------------
# OpenAI chat (canonical)


def _chat_messages(messages: Any, where: str, ids: _CallIds) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise TrajectoryError(
            f"required: a non-empty list of chat messages, got {_kind(messages)}", field=where
        )
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of unanswered calls of the latest assistant turn
    turn = -1
    for i, m in enumerate(messages):
        w = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise TrajectoryError(f"expected a message object, got {_kind(m)}", field=w)
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise TrajectoryError(
                f"unknown role {role!r}; expected system, developer, user, assistant, tool or function",
                field=f"{w}.role",
            )
        msg = {k: v for k, v in m.items() if k != "function_call"}
        msg["role"] = {"developer": "system", "function": "tool"}.get(role, role)
        if "content" in m:
            msg["content"] = _text(m["content"], f"{w}.content", json_ok=msg["role"] == "tool")
        if role == "assistant":
            turn += 1
            if "reasoning_content" not in msg and isinstance(msg.get("reasoning"), str):
                msg["reasoning_content"] = msg.pop("reasoning")
            calls, legacy = m.get("tool_calls"), m.get("function_call")
            if calls is not None and not isinstance(calls, list):
                raise TrajectoryError(
                    f"expected a list of tool calls, got {_kind(calls)}", field=f"{w}.tool_calls"
                )
            if legacy is not None and calls:
                raise TrajectoryError(
                    "has both tool_calls and the legacy function_call; keep one", field=f"{w}.function_call"
                )
            new: list[dict[str, Any]] = []
            if legacy is not None:
                fc = _require_object(legacy, f"{w}.function_call")
                new.append(
                    _make_call(
                        fc.get("name"),
                        fc.get("arguments"),
                        None,
                        where=f"{w}.function_call",
                        name_at="name",
                        args_at="arguments",
                        ids=ids,
                        turn=turn,
                        index=0,
                    )
                )
            for j, call in enumerate(calls or []):
                cw = f"{w}.tool_calls[{j}]"
                call = _require_object(call, cw)
                if call.get("type", "function") != "function":
                    raise TrajectoryError(
                        f"unsupported tool call type {call.get('type')!r}; expected 'function'",
                        field=f"{cw}.type",
                    )
                fn = _require_object(call.get("function"), f"{cw}.function")
                rest = {k: v for k, v in fn.items() if k not in ("name", "arguments")}
                new.append(
                    _make_call(
                        fn.get("name"),
                        fn.get("arguments"),
                        call.get("id"),
                        where=cw,
                        name_at="function.name",
                        args_at="function.arguments",
                        ids=ids,
                        turn=turn,
                        index=j,
                        extra=rest,
                    )
                )
            _check_unique_calls(new, f"{w}.tool_calls")
            msg.pop("tool_calls", None)
            if new:
                msg["tool_calls"] = new
            msg.setdefault("content", None)
            pending = [(c["id"], c["function"]["name"]) for c in new]
        elif msg["role"] == "tool":
            cid = m.get("tool_call_id")
            if cid in (None, ""):
                # Legacy role "function" (and some dumps) answer by name or position, not by id.
                by_name = [p for p in pending if p[1] == m.get("name")]
                if not (by_name or pending):
                    raise TrajectoryError(
                        "required on tool messages, and there is no unanswered tool call "
                        "before this message to attach it to",
                        field=f"{w}.tool_call_id",
                    )
                cid = (by_name or pending)[0][0]
            elif not isinstance(cid, str):
                raise TrajectoryError(f"expected a string, got {_kind(cid)}", field=f"{w}.tool_call_id")
            pending = [p for p in pending if p[0] != cid]
            msg["tool_call_id"] = cid
            if msg.get("content") is None:
                msg["content"] = ""
        out.append(msg)
    return out


def from_openai(obj: Any) -> dict[str, Any]:
    """Normalise a record that already has OpenAI chat ``messages`` into the canonical form.

    Content-part lists become strings, tool-call arguments objects become JSON strings, ``type:
    "function"`` is filled in, the legacy ``function_call`` becomes ``tool_calls`` (generated id) and the
    ``role: "function"`` answer a ``role: "tool"`` message with that ``tool_call_id``; legacy
    ``functions`` become ``tools``; ``developer`` becomes ``system``. Unknown top-level keys (e.g.
    ``parallel_tool_calls``) move under ``metadata``. A missing ``id`` is ``traj-<sha256 prefix>``.
    Idempotent: a canonical record comes back equal.

    >>> rec = from_openai({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ...                                 {"role": "assistant", "content": "hello"}]})
    >>> rec["messages"][0]["content"], rec["id"].startswith("traj-"), from_openai(rec) == rec
    ('hi', True, True)

    Raises:
        TrajectoryError: with ``field`` naming the malformed value (``messages[2].tool_calls[0].function.arguments``).
    """
    rec = _row(obj)
    ids = _CallIds(_collect_ids(rec.get("messages")))
    messages = _chat_messages(rec.get("messages"), "messages", ids)
    tools = _tools(rec.get("tools"), "tools")
    known = {t["function"]["name"] for t in tools}
    for i, tool in enumerate(_tools(rec.get("functions"), "functions")):
        if tool["function"]["name"] in known:
            raise TrajectoryError(
                f"function {tool['function']['name']!r} is also declared in tools",
                field=f"functions[{i}].name",
            )
        tools.append(tool)
    return _finish(rec, messages, tools, consumed=("functions",))


# ---------------------------------------------------------------------------------------------------
# NeMo Gym pivot rows (OpenAI Responses API items)


class _ResponsesBuilder:
    """Chat messages from a stream of Responses API items.

    Consecutive ``function_call`` items (and an assistant ``message`` right before them) form one
    assistant turn; ``reasoning`` items attach to the next assistant turn and are dropped when a
    non-assistant item comes first.
    """

    def __init__(self, ids: _CallIds):
        self.ids = ids
        self.messages: list[dict[str, Any]] = []
        self.turn = -1
        self.open: dict[str, Any] | None = None  # the assistant turn later function_calls join
        self.reasoning: list[str] = []
        self.call_ids: set[str] = set()

    def attach_reasoning(self, msg: dict[str, Any]) -> None:
        if self.reasoning:
            prior = msg.get("reasoning_content")
            msg["reasoning_content"] = "\n".join(([prior] if prior else []) + self.reasoning)
            self.reasoning = []

    def start_turn(self, content: str | None = None) -> dict[str, Any]:
        self.turn += 1
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        self.attach_reasoning(msg)
        self.messages.append(msg)
        self.open = msg
        return msg

    def message(self, role: str, content: str) -> None:
        if role == "assistant":
            self.start_turn(content)
            return
        self.open, self.reasoning = None, []
        self.messages.append({"role": role, "content": content})

    def call(self, item: dict[str, Any], where: str) -> None:
        turn = self.open if self.open is not None else self.start_turn()
        self.attach_reasoning(turn)
        calls = turn.setdefault("tool_calls", [])
        call = _make_call(
            item.get("name"),
            item.get("arguments"),
            item.get("call_id") or item.get("id"),
            where=where,
            name_at="name",
            args_at="arguments",
            ids=self.ids,
            turn=self.turn,
            index=len(calls),
        )
        if any(c["id"] == call["id"] for c in calls):
            raise TrajectoryError(
                f"duplicate call_id {call['id']!r} within one turn", field=f"{where}.call_id"
            )
        calls.append(call)
        self.call_ids.add(call["id"])

    def output(self, item: dict[str, Any], where: str) -> None:
        cid = item.get("call_id")
        if not isinstance(cid, str) or cid not in self.call_ids:
            raise TrajectoryError(
                f"{cid!r} answers no earlier function_call item; expected the call_id of one",
                field=f"{where}.call_id",
            )
        self.open, self.reasoning = None, []
        self.messages.append(
            {
                "role": "tool",
                "tool_call_id": cid,
                "content": _text(item.get("output"), f"{where}.output", json_ok=True) or "",
            }
        )


def _item_type(item: Any, where: str) -> str:
    item = _require_object(item, where)
    itype = item.get("type")
    if itype is None and "role" in item:
        return "message"
    if itype in ("message", "function_call", "function_call_output", "reasoning"):
        return itype
    raise TrajectoryError(
        f"unsupported Responses item type {itype!r}; expected message, function_call, function_call_output "
        "or reasoning",
        field=f"{where}.type",
    )


def _item_role(item: dict[str, Any], where: str) -> str:
    role = item.get("role")
    if role not in ("system", "developer", "user", "assistant"):
        raise TrajectoryError(
            f"unknown role {role!r}; expected system, developer, user or assistant", field=f"{where}.role"
        )
    return "system" if role == "developer" else role


def _reasoning_text(item: dict[str, Any], where: str) -> str:
    """Full reasoning (``content`` of ``reasoning_text`` parts) when present, else the summary."""
    for key, part_type in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(key)
        if parts is None:
            continue
        if not isinstance(parts, list):
            raise TrajectoryError(
                f"expected a list of {part_type} parts, got {_kind(parts)}", field=f"{where}.{key}"
            )
        texts = [p.get("text") for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
        if texts:
            return "\n".join(texts)
    return ""


def from_nemo_gym(obj: Any) -> dict[str, Any]:
    """Convert a NeMo Gym pivot row into a record whose last assistant turn is the expected action.

    The row is ``{"responses_create_params": {"input": [...], "tools": [...], ...}, "expected_action":
    item-or-items, ...}``. ``input`` holds Responses API items (``message`` / role-only messages,
    ``function_call``, ``function_call_output``, ``reasoning``); a plain string is one user message and
    ``instructions`` a leading system message. ``expected_action`` (function_call items, an assistant
    message, reasoning) becomes one final assistant turn. Flat Responses tool specs are wrapped as chat
    tools. The row's ``id``/``domain`` (default ``generic``) are kept; its ``metadata`` and every other
    top-level key (``agent_ref``, ...) go under ``metadata``, the remaining request parameters under
    ``metadata["responses_create_params"]``.

    Raises:
        TrajectoryError: with ``field`` naming the malformed value (``responses_create_params.input[4].name``).
    """
    row = _row(obj)
    params = row.get("responses_create_params")
    if params is None:
        raise TrajectoryError(
            'required: {"input": [...], "tools": [...]} (a NeMo Gym pivot row)',
            field="responses_create_params",
        )
    params = _require_object(params, "responses_create_params")
    items = params.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise TrajectoryError(
            f"required: a non-empty list of Responses input items, got {_kind(items)}",
            field="responses_create_params.input",
        )
    b = _ResponsesBuilder(_CallIds(_collect_ids([items, row.get("expected_action")])))
    instructions = params.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise TrajectoryError(
                f"expected a string, got {_kind(instructions)}", field="responses_create_params.instructions"
            )
        b.message("system", instructions)
    for i, item in enumerate(items):
        w = f"responses_create_params.input[{i}]"
        itype = _item_type(item, w)
        if itype == "message":
            b.message(_item_role(item, w), _text(item.get("content"), f"{w}.content") or "")
        elif itype == "function_call":
            b.call(item, w)
        elif itype == "function_call_output":
            b.output(item, w)
        else:
            text = _reasoning_text(item, w)
            if text:
                b.reasoning.append(text)

    expected = row.get("expected_action")
    if expected is None:
        if b.turn < 0:
            raise TrajectoryError(
                "required: the demonstrated action (a function_call item, a list of them, or an "
                "assistant message); the input has no assistant turn either",
                field="expected_action",
            )
    else:
        _expected_turn(b, expected)

    tools = _tools(params.get("tools"), "responses_create_params.tools")
    rest = {k: v for k, v in params.items() if k not in ("input", "tools", "instructions")}
    meta: dict[str, Any] = {"source_format": "nemo_gym"}
    if rest:
        meta["responses_create_params"] = copy.deepcopy(rest)
    return _finish(
        row, b.messages, tools, consumed=("responses_create_params", "expected_action"), metadata=meta
    )


def _expected_turn(b: _ResponsesBuilder, expected: Any) -> None:
    """Append ``expected_action`` (one item or a list) as a single, final assistant turn."""
    many = isinstance(expected, list)
    items = expected if many else [expected]
    if not items:
        raise TrajectoryError(
            "expected a function_call item, a list of them, or an assistant message; got []",
            field="expected_action",
        )
    b.open = None
    turn = b.start_turn()
    texts: list[str] = []
    for j, item in enumerate(items):
        w = f"expected_action[{j}]" if many else "expected_action"
        if isinstance(item, dict) and "tool_calls" in item and "type" not in item:  # chat-format turn
            if item.get("role", "assistant") != "assistant":
                raise TrajectoryError(
                    f"expected role 'assistant', got {item.get('role')!r}", field=f"{w}.role"
                )
            texts.append(_text(item.get("content"), f"{w}.content") or "")
            if isinstance(item.get("reasoning_content"), str):
                b.reasoning.append(item["reasoning_content"])
            for k, call in enumerate(item.get("tool_calls") or []):
                fn = _require_object(
                    _require_object(call, f"{w}.tool_calls[{k}]").get("function"),
                    f"{w}.tool_calls[{k}].function",
                )
                b.call(
                    {"name": fn.get("name"), "arguments": fn.get("arguments"), "call_id": call.get("id")},
                    f"{w}.tool_calls[{k}].function",
                )
            continue
        itype = _item_type(item, w)
        if itype == "function_call":
            b.call(item, w)
        elif itype == "reasoning":
            text = _reasoning_text(item, w)
            if text:
                b.reasoning.append(text)
        elif itype == "message" and _item_role(item, w) == "assistant":
            texts.append(_text(item.get("content"), f"{w}.content") or "")
        else:
            raise TrajectoryError(
                f"the expected action must be the assistant's turn (function_call items, an assistant message, "
                f"reasoning); got a {item.get('role') or itype!r} item",
                field=f"{w}.role" if itype == "message" else f"{w}.type",
            )
    b.attach_reasoning(turn)
    if any(texts):
        turn["content"] = "".join(texts)
    if not turn.get("tool_calls") and not (turn["content"] or "").strip():
        raise TrajectoryError(
            "the expected action is empty: it needs a function_call or assistant text",
            field="expected_action",
        )


# ---------------------------------------------------------------------------------------------------
# ShareGPT (LLaMA-Factory conventions)

_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "function_call",
    "observation": "tool",
    "tool": "tool",
}


def _split_think(text: str) -> tuple[str | None, str]:
    """``("reasoning", "rest")`` for a value starting with a ``<think>...</think>`` block."""
    match = _THINK_PREFIX_RE.match(text)
    if not match:
        return None, text
    return (match.group(1).strip() or None), text[match.end() :]


def _sharegpt_calls(value: Any, where: str) -> list[tuple[Any, Any, str]]:
    """``(name, arguments, where)`` for each call in a ``function_call`` value."""
    if isinstance(value, str):
        value = _loads(value, where, "the function_call value", '{"name": ..., "arguments": {...}} or a list of them')
    many = isinstance(value, list)
    calls = value if many else [value]
    if not calls:
        raise TrajectoryError("an empty list of calls; expected at least one", field=where)
    out = []
    for j, call in enumerate(calls):
        w = f"{where}[{j}]" if many else where
        call = _require_object(call, w)
        out.append((call.get("name"), call.get("arguments"), w))
    return out


def from_sharegpt(obj: Any) -> dict[str, Any]:
    """Convert a ShareGPT-style row (LLaMA-Factory conventions) into a record.

    ``conversations`` entries are ``{"from": role, "value": str}`` with role one of system, human/user,
    gpt/assistant, function_call, observation/tool. A ``function_call`` value is JSON ``{"name",
    "arguments"}`` or a list of them: one assistant turn with ``tool_calls`` (ids ``call_<turn>_<i>``),
    merged with a directly preceding ``gpt`` message's text. ``observation`` values answer the open calls
    in order; when several are open, a JSON list with one output per open call answers them all.
    A leading ``<think>...</think>`` in a gpt value becomes ``reasoning_content``. ``system`` is a leading
    system message; ``tools`` (a JSON string or a list) are wrapped as chat tools.

    Raises:
        TrajectoryError: with ``field`` naming the malformed value (``conversations[3].value.arguments``).
    """
    row = _row(obj)
    conv = row.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise TrajectoryError(
            f'required: a non-empty list of {{"from", "value"}} turns, got {_kind(conv)}',
            field="conversations",
        )
    ids = _CallIds(set())
    messages: list[dict[str, Any]] = []
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise TrajectoryError(f"expected a string, got {_kind(system)}", field="system")
    if system:
        messages.append({"role": "system", "content": system})
    turn = -1
    pending: list[str] = []  # ids of unanswered calls, in order
    open_turn: dict[str, Any] | None = None
    for i, entry in enumerate(conv):
        w = f"conversations[{i}]"
        entry = _require_object(entry, w)
        source = entry.get("from")
        role = _SHAREGPT_ROLES.get(source) if isinstance(source, str) else None
        if role is None:
            close = difflib.get_close_matches(str(source), list(_SHAREGPT_ROLES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TrajectoryError(
                f"unknown role {source!r}; expected one of {', '.join(_SHAREGPT_ROLES)}{hint}",
                field=f"{w}.from",
            )
        value = entry.get("value")
        joins, open_turn = open_turn, None
        if role == "function_call":
            if joins is None:
                turn += 1
                joins = {"role": "assistant", "content": None}
                messages.append(joins)
            calls = [
                _make_call(
                    name,
                    args,
                    None,
                    where=cw,
                    name_at="name",
                    args_at="arguments",
                    ids=ids,
                    turn=turn,
                    index=j,
                )
                for j, (name, args, cw) in enumerate(_sharegpt_calls(value, f"{w}.value"))
            ]
            joins["tool_calls"] = calls
            pending = [c["id"] for c in calls]
            continue
        if role == "tool":
            if not pending:
                raise TrajectoryError(
                    f"{source!r} turn with no unanswered function_call before it", field=f"{w}.from"
                )
            if not isinstance(value, (str, list, dict)):
                raise TrajectoryError(
                    f"expected the tool output as a string, got {_kind(value)}", field=f"{w}.value"
                )
            outputs = [value]
            if len(pending) > 1 and isinstance(value, (str, list)):
                # a string that is not (sane) JSON is one output for the first call, as before
                parsed = loads_checked(value)[0] if isinstance(value, str) else value
                if isinstance(parsed, list) and len(parsed) == len(pending):
                    outputs = parsed
            for out in outputs:
                content = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)
                messages.append({"role": "tool", "tool_call_id": pending.pop(0), "content": content})
            continue
        if not isinstance(value, str):
            raise TrajectoryError(f"expected a string, got {_kind(value)}", field=f"{w}.value")
        if role != "assistant":
            messages.append({"role": role, "content": value})
            continue
        reasoning, text = _split_think(value)
        nxt = conv[i + 1] if i + 1 < len(conv) else None
        followed_by_call = isinstance(nxt, dict) and nxt.get("from") == "function_call"
        if not text.strip() and not followed_by_call:
            raise TrajectoryError(
                "empty assistant message; expected text (or a function_call turn right after it)",
                field=f"{w}.value",
            )
        turn += 1
        msg: dict[str, Any] = {"role": "assistant", "content": text or None}
        if reasoning:
            msg["reasoning_content"] = reasoning
        messages.append(msg)
        pending = []
        open_turn = msg if followed_by_call else None

    tools: Any = row.get("tools")
    if isinstance(tools, str):
        tools = _loads(tools, "tools", "tools", "a JSON list of function specs") if tools.strip() else []
    if isinstance(tools, dict):
        tools = [tools]
    return _finish(
        row,
        messages,
        _tools(tools, "tools"),
        consumed=("conversations", "system"),
        metadata={"source_format": "sharegpt"},
    )


# ---------------------------------------------------------------------------------------------------
# Files

FORMATS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "openai": from_openai,
    "nemo_gym": from_nemo_gym,
    "sharegpt": from_sharegpt,
}

_DETECT_KEYS = (
    ("responses_create_params", "nemo_gym"),
    ("messages", "openai"),
    ("conversations", "sharegpt"),
)


def detect_format(obj: Any) -> str:
    """Guess a row's format from its keys: ``responses_create_params`` -> ``nemo_gym``, ``messages`` ->
    ``openai``, ``conversations`` -> ``sharegpt``.

    >>> detect_format({"conversations": []})
    'sharegpt'

    Raises:
        TrajectoryError: when ``obj`` is not an object or has none of those keys.
    """
    row = _require_object(obj)
    for key, fmt in _DETECT_KEYS:
        if key in row:
            return fmt
    keys = ", ".join(sorted(map(str, row))) or "none"
    raise TrajectoryError(
        f"cannot tell the format from the keys ({keys}); expected 'messages' (openai), "
        "'responses_create_params' (nemo_gym) or 'conversations' (sharegpt). Pass the format explicitly.",
        field="<record>",
    )


@dataclass
class ConvertReport:
    """What :func:`convert_file` did: how many records it wrote and every line it could not convert."""

    converted: int
    errors: list[RecordError] = field(default_factory=list)
    in_path: str = ""
    out_path: str = ""

    @property
    def failed_lines(self) -> list[int]:
        """Line numbers (1-based) of the input lines that were not converted (file-level problems, line 0,
        such as an empty or UTF-16 input, are in ``errors`` but are not lines)."""
        return sorted({e.line for e in self.errors if e.line > 0})

    def __str__(self) -> str:
        head = f"converted {self.converted} record(s) from {self.in_path} to {self.out_path}"
        if not self.errors:
            return head
        lines = self.failed_lines
        what = f"{len(lines)} line(s) failed" if lines else "the input is unusable"
        return "\n".join([f"{head}; {what}:"] + [f"  {e}" for e in self.errors])


def convert_file(
    in_path: str | Path, out_path: str | Path, fmt: str, *, strict: bool = False
) -> ConvertReport:
    """Convert a JSONL file of ``fmt`` rows into a JSONL file of canonical records.

    Args:
        in_path: The input JSONL file.
        out_path: Where to write the records (atomically; only the good ones).
        fmt: A key of :data:`FORMATS`, or ``"auto"`` to :func:`detect_format` each line.
        strict: Raise on the first bad line (nothing is written) instead of reporting it and going on.

    Returns:
        The count written and a :class:`RecordError` (file, line, field, message) per problem; a file
        with no records or in another encoding than UTF-8 is a problem too (line 0 / line 1, field
        ``<file>``), so a caller can fail on ``report.errors`` alone.

    Raises:
        ValueError: ``fmt`` is unknown (the message lists the known ones).
        FileNotFoundError: ``in_path`` does not exist.
        TrajectoryError: ``strict`` and a line is bad; ``path``, ``line`` and ``field`` are set.
    """
    known = [*FORMATS, "auto"]
    if fmt not in known:
        close = difflib.get_close_matches(str(fmt), known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown trajectory format {fmt!r}; known formats: {', '.join(known)}{hint}")
    in_path = str(in_path)
    if not Path(in_path).is_file():
        raise FileNotFoundError(f"no input file at {in_path!r}")
    good: list[Trajectory] = []
    errors: list[RecordError] = []
    seen: dict[str, int] = {}

    def bad(lineno: int, fld: str | None, msg: str) -> None:
        if strict:
            raise TrajectoryError(msg, path=in_path, line=lineno, field=fld or "<record>")
        errors.append(RecordError(in_path, lineno, fld or "<record>", msg))

    for item in read_jsonl(in_path):
        lineno, obj = item.line, item.value
        if item.error is not None:
            bad(lineno, item.field, item.error)
            continue
        try:
            convert = FORMATS[detect_format(obj) if fmt == "auto" else fmt]
            record = convert(obj)
        except TrajectoryError as exc:
            bad(lineno, exc.field, exc.reason)
            continue
        except (RecursionError, MemoryError) as exc:  # a last guard: one hostile row never stops the file
            bad(lineno, "<record>", f"the row could not be converted ({type(exc).__name__}); it is too large or too deep")
            continue
        problems = validate_record(record)
        if problems:
            for fld, msg in problems if not strict else problems[:1]:
                bad(lineno, fld, msg)
            continue
        if record["id"] in seen:
            bad(lineno, "id", f"duplicate id {record['id']!r} (first seen on line {seen[record['id']]})")
            continue
        seen[record["id"]] = lineno
        good.append(record_from_dict(record))
    n = save_trajectories(good, out_path)
    return ConvertReport(n, errors, in_path, str(out_path))
