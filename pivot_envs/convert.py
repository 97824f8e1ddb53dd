"""Converters from other trajectory formats into canonical records (OpenAI chat format, DESIGN.md).

Three formats are understood, each by one function taking one decoded JSON object and returning one
record dict that passes :func:`pivot_envs.trajectory.record_from_dict`:

- ``openai`` (:func:`from_openai`): a record that already has ``messages``. Normalises content parts
  to strings, tool-call arguments to JSON strings, the legacy ``function_call`` / ``role: "function"``
  / ``functions`` API to ``tool_calls`` / ``role: "tool"`` / ``tools``, and fills a missing ``id``.
- ``nemo_gym`` (:func:`from_nemo_gym`): NVIDIA NeMo Gym rows, ``{"responses_create_params": {"input":
  [...Responses API items...], "tools": [...]}, ...}`` with a demonstration: a pivot row's
  ``expected_action`` (the last assistant turn, NeMo's designated pivot), a rollout's ``response.output``
  (more turns), or an ``expected_answer`` / ``expected_answers`` / ``ground_truth`` field. Options: the
  records' domain, last-turn-only candidates, and the ``nemo`` verifier's per-dataset settings
  (:data:`NEMO_PRESETS`, :func:`nemo_settings`). ``docs/nemo-gym.md`` is the user guide.
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
    "ANSWER_FIELDS",
    "FORMATS",
    "NEMO_AGENT_PRESETS",
    "NEMO_PRESETS",
    "ConvertReport",
    "check_nemo_settings",
    "convert_file",
    "detect_format",
    "from_nemo_gym",
    "from_openai",
    "from_sharegpt",
    "nemo_settings",
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
# NeMo Gym rows (OpenAI Responses API items)

#: The comparator settings of NeMo Gym's ``single_step_tool_use_with_argument_comparison`` configs
#: (nemo-gym 0.7.0, ``configs/*.yaml``, ``tool_call_comparator_config``), by the short name
#: ``--nemo-preset`` takes. The same example file feeds several configs, so a row rarely says which
#: applies: its ``agent_ref.name`` does when it names one of these configs' agents (see
#: :data:`NEMO_AGENT_PRESETS`), otherwise the caller says.
NEMO_PRESETS: dict[str, dict[str, Any]] = {
    "tool_use": {"word_count_similarity_threshold": 0.1},
    "toolcall_schema": {"word_count_similarity_threshold": 0.1},
    "swe": {"word_count_similarity_threshold": 0.0},
    "droid": {"word_count_similarity_threshold": 0.0},
    "search": {"word_count_similarity_threshold": 0.3},
    "parallel": {
        "word_count_similarity_threshold": 0.1,
        "parallel_tool_call_rewarding": True,
        "allow_subset": True,
        "allow_superset": True,
        "parallel_tool_call_reward_mode": "f1",
    },
}
_SINGLE_STEP = "single_step_tool_use_with_argument_comparison"
#: ``agent_ref.name`` -> preset. The configs' agents, plus the agent of NeMo's own ``swe_pivot`` rows
#: (that server judges with its own layered rule; the SWE config's comparator setting is the nearest
#: ``nemo`` equivalent).
NEMO_AGENT_PRESETS: dict[str, str] = {
    f"{_SINGLE_STEP}_agent": "tool_use",
    f"toolcall_schema_{_SINGLE_STEP}_agent": "toolcall_schema",
    f"swe_pivot_{_SINGLE_STEP}_agent": "swe",
    f"droid_pivot_{_SINGLE_STEP}_agent": "droid",
    f"search_pivot_{_SINGLE_STEP}_agent": "search",
    f"parallel_tool_calls_{_SINGLE_STEP}_agent": "parallel",
    "swe_pivot_tool_simulation_agent": "swe",
}
# NeMo's ToolCallComparatorConfig fields, checked here so a typo fails at conversion, not in training.
_NEMO_SETTING_KINDS: dict[str, tuple[type, ...]] = {
    "word_count_similarity_threshold": (int, float),
    "floating_point_comparison_threshold": (int, float),
    "parallel_tool_call_rewarding": (bool,),
    "allow_subset": (bool,),
    "allow_superset": (bool,),
    "parallel_tool_call_reward_mode": (str,),
}
_REWARD_MODES = ("binary_strict", "fractional", "f1")
#: Row fields that hold a demonstration when there is no ``expected_action`` or rollout, in the order
#: they are tried.
ANSWER_FIELDS = ("expected_answer", "expected_answers", "ground_truth")


def check_nemo_settings(settings: Any, where: str = "verifier_settings") -> dict[str, Any]:
    """Validate NeMo comparator settings (``tool_call_comparator_config`` keys); return a plain copy.

    >>> check_nemo_settings({"word_count_similarity_threshold": 0})
    {'word_count_similarity_threshold': 0}

    Raises:
        TrajectoryError: an unknown key or a value of the wrong type; ``field`` names it.
    """
    if not isinstance(settings, dict):
        raise TrajectoryError(f"expected an object of comparator settings, got {_kind(settings)}", field=where)
    for key, value in settings.items():
        kinds = _NEMO_SETTING_KINDS.get(key)
        if kinds is None:
            close = difflib.get_close_matches(str(key), list(_NEMO_SETTING_KINDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TrajectoryError(
                f"unknown NeMo comparator setting {key!r}{hint} Known: {', '.join(_NEMO_SETTING_KINDS)}",
                field=f"{where}.{key}",
            )
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            want = " or ".join(k.__name__ for k in kinds)
            raise TrajectoryError(f"expected {want}, got {_kind(value)} {value!r}", field=f"{where}.{key}")
        if key == "parallel_tool_call_reward_mode" and value not in _REWARD_MODES:
            raise TrajectoryError(
                f"unknown reward mode {value!r}; expected one of {', '.join(_REWARD_MODES)}", field=f"{where}.{key}"
            )
    return dict(settings)


def nemo_settings(preset_or_path: str | Path) -> dict[str, Any]:
    """Comparator settings from a preset name (:data:`NEMO_PRESETS`) or a NeMo Gym config YAML file.

    A YAML file must hold exactly one ``tool_call_comparator_config`` (NeMo's resources-server configs
    do); its keys are checked with :func:`check_nemo_settings`.

    Raises:
        ValueError: an unknown preset or a file without exactly one comparator config.
        FileNotFoundError: ``preset_or_path`` looks like a path and no file is there.
    """
    text = str(preset_or_path)
    if text in NEMO_PRESETS:
        return dict(NEMO_PRESETS[text])
    path = Path(text)
    if path.suffix not in (".yaml", ".yml", ".json"):
        close = difflib.get_close_matches(text, list(NEMO_PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown NeMo preset {text!r}{hint} Known presets: {', '.join(NEMO_PRESETS)}; or pass a NeMo Gym "
            "config file (.yaml) that holds a tool_call_comparator_config"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no NeMo Gym config file at {text!r}")
    import yaml  # a declared dependency; loaded only for this option

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{text}: not a readable YAML file ({type(exc).__name__}: {exc})") from exc
    found: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any]] = [("", config)]
    while stack:
        at, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{at}.{key}" if at else str(key)
                if key == "tool_call_comparator_config":
                    found.append((here, value))
                else:
                    stack.append((here, value))
        elif isinstance(node, list):
            stack.extend((f"{at}[{i}]", v) for i, v in enumerate(node))
    if len(found) != 1:
        where = ", ".join(at for at, _ in found) or "none"
        raise ValueError(
            f"{text}: expected exactly one tool_call_comparator_config, found {len(found)} ({where}); "
            "pass the config of one resources server"
        )
    try:
        return check_nemo_settings(found[0][1], found[0][0])
    except TrajectoryError as exc:
        raise ValueError(f"{text}: {exc}") from exc


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
        self.lenient = False  # set while reading a rollout: orphan call outputs become user turns
        self.orphans = 0

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
        if self.lenient and (not isinstance(cid, str) or cid not in self.call_ids):
            # a rollout's environment speaking without a call (NeMo's harbor agent asks "are you sure?"
            # this way): it is what the agent saw next, so it stays, as a user turn
            self.orphans += 1
            self.message("user", _text(item.get("output"), f"{where}.output", json_ok=True) or "")
            return
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

    def item(self, item: Any, where: str) -> None:
        """Append one input or output item (message of any role, call, call output, reasoning)."""
        itype = _item_type(item, where)
        if itype == "message":
            self.message(_item_role(item, where), _text(item.get("content"), f"{where}.content") or "")
        elif itype == "function_call":
            self.call(item, where)
        elif itype == "function_call_output":
            self.output(item, where)
        else:
            text = _reasoning_text(item, where)
            if text:
                self.reasoning.append(text)

    def drop_empty_turns(self) -> int:
        """Remove assistant turns with neither text nor calls (a rollout's empty message); return how many."""
        keep = [
            m for m in self.messages
            if m["role"] != "assistant" or m.get("tool_calls") or (m.get("content") or "").strip()
        ]
        dropped = len(self.messages) - len(keep)
        self.messages = keep
        return dropped


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


def _rollout_items(response: Any) -> tuple[list[Any], str] | None:
    """A rollout's ``response.output`` items and where they sit, or None when the row has none.

    Some agents (NeMo's aviary agents) write one cumulative transcript per step, a list of item lists
    each extending the one before: the last one is the whole rollout.
    """
    if not isinstance(response, dict) or response.get("output") is None:
        return None
    output = response["output"]
    if not isinstance(output, list):
        raise TrajectoryError(f"expected a list of Responses output items, got {_kind(output)}", field="response.output")
    if output and all(isinstance(step, list) for step in output):
        last = output[-1]
        for k, step in enumerate(output[:-1]):
            if step != last[: len(step)]:
                raise TrajectoryError(
                    "a list of item lists that are not one growing transcript (each step's items should start "
                    "with the previous step's); convert one step per row instead",
                    field=f"response.output[{k}]",
                )
        return last, f"response.output[{len(output) - 1}]"
    return output, "response.output"


def _has_assistant_item(items: list[Any]) -> bool:
    """Whether a rollout has a call or non-blank assistant text (else it demonstrates nothing)."""
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            return True
        if item.get("role") == "assistant" and item.get("type") in (None, "message"):
            content = item.get("content")
            parts = content if isinstance(content, list) else [content]
            texts = [p.get("text") if isinstance(p, dict) else p for p in parts]
            if any(isinstance(t, str) and t.strip() for t in texts):
                return True
    return False


def _answer_turn(b: _ResponsesBuilder, key: str, value: Any) -> None:
    """An ``expected_answer``-style value as the final assistant turn.

    Calls (``{"name", "arguments"}`` objects, alone or in a list) become one turn of tool calls; text and
    numbers a message; a list of plain values a message listing them (``", "``-separated); any other
    value its JSON text.
    """
    calls = value if isinstance(value, list) else [value]
    if calls and all(isinstance(c, dict) and "name" in c for c in calls):
        b.open = None
        b.start_turn()
        for j, call in enumerate(calls):
            b.call({"name": call.get("name"), "arguments": call.get("arguments")}, f"{key}[{j}]" if isinstance(value, list) else key)
        return
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        text = ", ".join(v if isinstance(v, str) else json.dumps(v) for v in value)
    else:
        text = json.dumps(value, ensure_ascii=False)
    if not text.strip():
        raise TrajectoryError("an empty answer; expected the text (or calls) the assistant should produce", field=key)
    b.message("assistant", text)


def _infer_tools(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function specs for the tools the turns call, for rows that declare none (NeMo's SWE pivot rows).

    The schema lists each argument seen with the JSON type of its first value and requires nothing; it
    is enough for candidate extraction and rule-level verifiers, not a substitute for the real schema.
    """
    specs: dict[str, dict[str, Any]] = {}
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call["function"]
            spec = specs.setdefault(
                fn["name"],
                {"name": fn["name"], "description": "Inferred from the calls in the row (it declared no tools).",
                 "parameters": {"type": "object", "properties": {}}},
            )
            args = _loads(fn["arguments"], "<inferred>", "arguments", "a JSON object") or {}
            props = spec["parameters"]["properties"]
            for arg, value in args.items():
                kind = names.get(type(value))
                props.setdefault(arg, {"type": kind} if kind else {})
    return [{"type": "function", "function": spec} for spec in specs.values()]


def from_nemo_gym(
    obj: Any,
    *,
    domain: str | None = None,
    last_turn_only: bool = False,
    verifier_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert a NeMo Gym row (a pivot row, a rollout or a row with an expected answer) into a record.

    The row is ``{"responses_create_params": {"input": [...], "tools": [...], ...}, ...}``. ``input``
    holds Responses API items (``message`` / role-only messages of any role, ``function_call``,
    ``function_call_output``, ``reasoning``); a plain string is one user message and ``instructions`` a
    leading system message. The demonstration is the first of:

    1. ``expected_action`` (a pivot row): a ``function_call``, a ``function_call_batch`` (``calls``), a
       ``message`` (``role`` optional), or a list of items, as one final assistant turn;
    2. ``response.output`` (a rollout): its items continue the conversation as assistant, tool, user and
       system turns (a list of growing per-step transcripts uses the last one);
    3. ``expected_answer`` / ``expected_answers`` / ``ground_truth``: calls become one final turn of tool
       calls, anything else one final assistant message;
    4. assistant turns already in ``input``.

    ``metadata["demonstration"]`` names the source. NeMo's ``id`` / ``uuid`` name a task, not a row
    (rollouts repeat them), so the record id is that name (or ``nemo``) plus ``-`` and the first 8 hex
    digits of the sha256 of the row's canonical JSON. Flat Responses tool specs are wrapped as chat tools;
    a row without tools falls back to ``declared_tools``, then to specs inferred from its calls
    (``metadata["inferred_tools"]``). Every other top-level key (``agent_ref``, ``uuid``,
    ``reward``, NeMo's own ``domain`` and ``task`` labels, ...) goes under ``metadata``, the remaining
    request parameters under ``metadata["responses_create_params"]``.

    Args:
        obj: The decoded row.
        domain: The record's domain (default ``generic``); a NeMo row's ``domain`` is NeMo's label.
        last_turn_only: NeMo's designated pivot: only the last assistant turn is a candidate. The
            others get the per-message flag ``"pivotrl": {"skip": true}`` (kept as context, no
            candidate, not evaluated); ``metadata["pivot_turn"]`` records the designated turn.
        verifier_settings: NeMo comparator settings (``tool_call_comparator_config`` keys) stored as
            ``metadata["verifier_settings"]["nemo"]``, which the ``nemo`` verifier honours. Without
            them a row whose ``agent_ref.name`` is a known config's agent gets that config's settings
            (:data:`NEMO_AGENT_PRESETS`); a row's own ``metadata.verifier_settings`` are kept.

    Raises:
        TrajectoryError: with ``field`` naming the malformed value (``responses_create_params.input[4].name``),
            ``expected_action`` when the row holds no demonstration at all.
    """
    row = _row(obj)
    params = row.get("responses_create_params")
    if params is None:
        raise TrajectoryError(
            'required: {"input": [...], "tools": [...]} (a NeMo Gym row)',
            field="responses_create_params",
        )
    params = _require_object(params, "responses_create_params")
    items = params.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}] if items.strip() else []
    if not isinstance(items, list):
        raise TrajectoryError(
            f"required: a list of Responses input items, got {_kind(items)}", field="responses_create_params.input"
        )
    rollout = _rollout_items(row.get("response")) if row.get("expected_action") is None else None
    if rollout is not None and not _has_assistant_item(rollout[0]):
        rollout = None  # an empty or failed rollout: fall back to the row's answer fields
    answer_key = next((k for k in ANSWER_FIELDS if row.get(k) is not None), None)
    has_demo = row.get("expected_action") is not None or rollout is not None or answer_key is not None
    if not has_demo and not _has_assistant_item(items):
        present = [k for k in ("response", *ANSWER_FIELDS) if k in row]
        raise TrajectoryError(
            "no demonstration: expected an expected_action, a rollout's response.output with an assistant "
            f"item, or one of {', '.join(ANSWER_FIELDS)}"
            + (f" (present but empty: {', '.join(present)})" if present else "")
            + ". A row that only sets a task for an online environment has nothing to learn from; convert "
            "its rollouts (example_rollouts.jsonl) instead",
            field="expected_action",
        )
    if not items and rollout is None:
        raise TrajectoryError(
            "required: a non-empty list of Responses input items (or a rollout's response.output), got an "
            "empty input: the demonstration would answer no prompt",
            field="responses_create_params.input",
        )
    b = _ResponsesBuilder(_CallIds(_collect_ids([items, row.get("expected_action"), rollout])))
    instructions = params.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise TrajectoryError(
                f"expected a string, got {_kind(instructions)}", field="responses_create_params.instructions"
            )
        b.message("system", instructions)
    for i, item in enumerate(items):
        b.item(item, f"responses_create_params.input[{i}]")

    consumed = ["responses_create_params", "expected_action", "domain", "task"]
    if row.get("expected_action") is not None:
        _expected_turn(b, row["expected_action"])
        source = "expected_action"
    elif rollout is not None:
        b.open, b.reasoning, b.lenient = None, [], True
        for j, item in enumerate(rollout[0]):
            b.item(item, f"{rollout[1]}[{j}]")
        source = "response.output"
    elif answer_key is not None:
        _answer_turn(b, answer_key, row[answer_key])
        source = answer_key
    else:
        source = "input"
    dropped = b.drop_empty_turns()
    if not any(m["role"] == "assistant" for m in b.messages):
        raise TrajectoryError(f"the {source} holds no assistant text or call", field=source)

    tools = _tools(params.get("tools"), "responses_create_params.tools")
    if not tools and row.get("declared_tools"):
        tools = _tools(row["declared_tools"], "declared_tools")
        consumed.append("declared_tools")
    meta: dict[str, Any] = {"source_format": "nemo_gym", "demonstration": source}
    if not tools:
        tools = _infer_tools(b.messages)
        if tools:
            meta["inferred_tools"] = [t["function"]["name"] for t in tools]
    if dropped:
        meta["dropped_empty_turns"] = dropped
    if b.orphans:
        meta["orphan_outputs_as_user_turns"] = b.orphans
    rest = {k: v for k, v in params.items() if k not in ("input", "tools", "instructions")}
    if rest:
        meta["responses_create_params"] = copy.deepcopy(rest)
    for key in ("domain", "task"):  # NeMo's labels ("safety", "verb-extract", a tau2 task), not ours
        if row.get(key) is not None:
            meta[key] = copy.deepcopy(row[key])
    if rollout is not None and source == "response.output":
        consumed.append("response")
        meta["response"] = {k: copy.deepcopy(v) for k, v in row["response"].items() if k not in ("output", "tools")}
    own = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    if verifier_settings is not None:
        settings: Any = check_nemo_settings(verifier_settings)
    elif isinstance(own.get("verifier_settings"), dict) and "nemo" in own["verifier_settings"]:
        settings = check_nemo_settings(own["verifier_settings"]["nemo"], "metadata.verifier_settings.nemo")
    else:
        agent = row.get("agent_ref", {}).get("name") if isinstance(row.get("agent_ref"), dict) else None
        preset = NEMO_AGENT_PRESETS.get(agent) if isinstance(agent, str) else None
        settings = dict(NEMO_PRESETS[preset]) if preset else None
        if preset:
            meta["verifier_preset"] = preset
    record_row = {k: v for k, v in row.items() if k not in ("domain", "task")}
    # NeMo's `id`/`uuid` name a task, and rollouts of one task repeat it (so do rows that only differ in
    # their rubric): the record id is that name plus a digest of the whole row, unique per distinct row
    base = next((str(row[k]) for k in ("id", "uuid") if isinstance(row.get(k), (str, int)) and str(row[k])), "nemo")
    digest = hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
    record_row["id"] = f"{base}-{digest.hexdigest()[:8]}"
    if domain:
        record_row["domain"] = domain
    record = _finish(record_row, b.messages, tools, consumed=tuple(consumed), metadata=meta)
    if settings is not None:
        record.setdefault("metadata", {}).setdefault("verifier_settings", {})
        record["metadata"]["verifier_settings"] = {**record["metadata"]["verifier_settings"], "nemo": settings}
    if last_turn_only:
        # NeMo's designated pivot: the earlier turns stay as context (and are replayed) but are flagged so
        # candidate extraction and evaluation skip them (the record format's per-message skip flag)
        assistants = [m for m in record["messages"] if m["role"] == "assistant"]
        for m in assistants[:-1]:
            m["pivotrl"] = {"skip": True}
        record["metadata"]["pivot_turn"] = len(assistants) - 1
    return record


def _expected_turn(b: _ResponsesBuilder, expected: Any) -> None:
    """Append ``expected_action`` as a single, final assistant turn.

    NeMo's actions: ``{"type": "function_call", "name", "arguments"}``, ``{"type": "function_call_batch",
    "calls": [...]}`` (parallel calls), ``{"type": "message", "content"}`` (no ``role``: it is the
    assistant's); also a list of Responses items or a chat-format assistant turn.
    """
    many = isinstance(expected, list)
    items = expected if many else [expected]
    if isinstance(expected, dict) and expected.get("type") == "function_call_batch":
        calls = expected.get("calls")
        if not isinstance(calls, list) or not calls:
            raise TrajectoryError(
                f"required: a non-empty list of function_call items, got {_kind(calls)}", field="expected_action.calls"
            )
        for k, call in enumerate(calls):
            if _require_object(call, f"expected_action.calls[{k}]").get("type", "function_call") != "function_call":
                raise TrajectoryError(
                    f"expected a function_call item, got type {call.get('type')!r}", field=f"expected_action.calls[{k}].type"
                )
        items, many, prefix = calls, True, "expected_action.calls"
    else:
        prefix = "expected_action"
    if not items:
        raise TrajectoryError(
            "expected a function_call item, a function_call_batch, a list of items, or an assistant message; got []",
            field="expected_action",
        )
    b.open = None
    turn = b.start_turn()
    texts: list[str] = []
    for j, item in enumerate(items):
        w = f"{prefix}[{j}]" if many else prefix
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
        itype = "function_call" if prefix.endswith(".calls") and "type" not in item else _item_type(item, w)
        if itype == "function_call":
            b.call(item, w)
        elif itype == "reasoning":
            text = _reasoning_text(item, w)
            if text:
                b.reasoning.append(text)
        elif itype == "message" and ("role" not in item or _item_role(item, w) == "assistant"):
            # NeMo's MessageAction has no role: the expected action is always the assistant's
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
    rows: int = 0  # lines holding something (blank lines are not rows), converted or not

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
    in_path: str | Path, out_path: str | Path, fmt: str, *, strict: bool = False, **options: Any
) -> ConvertReport:
    """Convert a JSONL file of ``fmt`` rows into a JSONL file of canonical records.

    Args:
        in_path: The input JSONL file.
        out_path: Where to write the records (atomically; only the good ones).
        fmt: A key of :data:`FORMATS`, or ``"auto"`` to :func:`detect_format` each line.
        strict: Raise on the first bad line (nothing is written) instead of reporting it and going on.
        options: Keyword options of :func:`from_nemo_gym` (``domain``, ``last_turn_only``,
            ``verifier_settings``), applied to NeMo Gym rows; other formats take none.

    Returns:
        The count written and a :class:`RecordError` (file, line, field, message) per problem; a file
        with no records or in another encoding than UTF-8 is a problem too (line 0 / line 1, field
        ``<file>``), so a caller can fail on ``report.errors`` alone.

    Raises:
        ValueError: ``fmt`` is unknown (the message lists the known ones), or ``options`` were given
            for a format that takes none.
        FileNotFoundError: ``in_path`` does not exist.
        TrajectoryError: ``strict`` and a line is bad; ``path``, ``line`` and ``field`` are set.
    """
    known = [*FORMATS, "auto"]
    if fmt not in known:
        close = difflib.get_close_matches(str(fmt), known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown trajectory format {fmt!r}; known formats: {', '.join(known)}{hint}")
    options = {k: v for k, v in options.items() if v not in (None, False)}
    if options and fmt not in ("nemo_gym", "auto"):
        raise ValueError(
            f"{', '.join(sorted(options))}: options of NeMo Gym rows, and the format is {fmt!r}; "
            "drop them or convert with --from nemo_gym"
        )
    bad_keys = sorted(set(options) - {"domain", "last_turn_only", "verifier_settings"})
    if bad_keys:
        raise ValueError(f"unknown option(s) {', '.join(bad_keys)}; known: domain, last_turn_only, verifier_settings")
    if "verifier_settings" in options:
        try:
            options["verifier_settings"] = check_nemo_settings(options["verifier_settings"])
        except TrajectoryError as exc:
            raise ValueError(str(exc)) from exc
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

    rows = 0
    for item in read_jsonl(in_path):
        lineno, obj = item.line, item.value
        rows += lineno > 0
        if item.error is not None:
            bad(lineno, item.field, item.error)
            continue
        try:
            row_fmt = detect_format(obj) if fmt == "auto" else fmt
            record = FORMATS[row_fmt](obj, **options) if row_fmt == "nemo_gym" else FORMATS[row_fmt](obj)
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
    return ConvertReport(n, errors, in_path, str(out_path), rows)
