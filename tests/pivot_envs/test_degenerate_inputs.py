"""Degenerate model output and degenerate data files are data, never crashes (issue 10, exploits 4, 5, 7).

Each exploit is reproduced as it was found: a tool call nested 1,500 deep (``RecursionError``), a 5,000-digit
integer (``ValueError`` from Python's int-string conversion limit), a text that made the tool-call regex
quadratic (about 22 s), and trajectory files that gave bare tracebacks (non-UTF-8, UTF-16, deep nesting,
huge integers). Every one must come back as an :class:`Action` with a named reason (a zero reward) or as a
per-line :class:`RecordError`, and the rest of the file must still load.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time

import pytest

from pivot_envs.actions import MAX_ACTION_CHARS, MAX_JSON_DEPTH, Action, ToolCall
from pivot_envs.convert import convert_file
from pivot_envs.trajectory import MAX_RECORD_DEPTH, TrajectoryError, load_trajectories

DEEP = "[" * 1500 + "]" * 1500
HUGE_INT = "1" * 5000


def call_text(arguments_json: str, name: str = "f") -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {arguments_json}}}</tool_call>'


def assert_never_raises(action: Action) -> None:
    """Everything downstream of parsing (rendering, re-parsing, the wire form) must work on it too."""
    assert isinstance(action, Action)
    text = action.to_text()
    message = action.to_message()
    assert isinstance(text, str) and message["role"] == "assistant"
    json.dumps(message)  # the wire form is JSON (the chat template and the candidates file need that)
    assert isinstance(Action.parse(text), Action)
    assert isinstance(Action.from_message(message), Action)


# ---------------------------------------------------------------------------------------------------
# Exploit 4: one degenerate sample must not kill profiling, training, eval or `pivotrl verify`


@pytest.mark.parametrize(
    "text, reason",
    [
        (call_text(DEEP), "nested"),  # arguments nested 1,500 deep: RecursionError before
        ("<tool_call>" + DEEP + "</tool_call>", "nested"),  # the whole call nested
        (call_text("{" + '"a": ' * 0 + '"x": ' + "[" * 200 + "]" * 200 + "}"), "nested"),  # parses, but too deep
        (call_text('{"x": ' + HUGE_INT + "}"), "digits"),  # ValueError before
        ("<tool_call>" + HUGE_INT + "</tool_call>", "digits"),
        (call_text('{"x": "\\ud800"}'), "surrogate"),  # cannot be encoded as UTF-8 downstream
    ],
    ids=["deep-arguments", "deep-call", "too-deep-but-parsable", "huge-int-argument", "huge-int-call", "surrogate"],
)
def test_degenerate_json_in_a_tool_call_is_a_named_call_error(text, reason):
    action = Action.parse(text)
    assert action.malformed is not None and reason in action.malformed, action.malformed
    assert_never_raises(action)


def test_depth_limit_accepts_what_it_documents():
    ok = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    assert Action.parse(call_text('{"x": ' + ok + "}")).malformed is None
    too_deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert "nested" in Action.parse(call_text('{"x": ' + too_deep + "}")).malformed


def test_an_action_over_the_size_cap_is_a_parse_error_not_a_parse():
    text = call_text('{"x": "' + "a" * MAX_ACTION_CHARS + '"}')
    action = Action.parse(text)
    assert action.parse_error is not None and str(MAX_ACTION_CHARS) in action.parse_error
    assert action.tool_calls == ()  # nothing of an over-long turn is trusted
    assert len(action.content) <= MAX_ACTION_CHARS
    assert_never_raises(action)
    # just under the cap still parses
    fits = call_text('{"x": "' + "a" * (MAX_ACTION_CHARS - 100) + '"}')
    assert Action.parse(fits).malformed is None


def test_unpaired_surrogate_in_raw_text_is_a_parse_error():
    action = Action.parse("hello \ud800 world")
    assert action.parse_error is not None and "surrogate" in action.parse_error
    action.content.encode("utf-8")  # what is kept can be hashed and sent to a tokenizer
    assert_never_raises(action)


def test_unpaired_surrogate_in_a_structured_call_name_or_id_is_cleaned():
    message = {"role": "assistant", "tool_calls": [{"id": "c\udfff", "function": {"name": "f\ud800", "arguments": "{}"}}]}
    action = Action.coerce(message)
    assert "surrogate" in action.malformed
    json.dumps(action.to_message(), ensure_ascii=False).encode("utf-8")  # digests and logs can encode it


class Opaque:
    pass


@pytest.mark.parametrize(
    "arguments, reason",
    [
        (DEEP, "nested"),  # a JSON string that nests too deep
        ('{"x": ' + HUGE_INT + "}", "digits"),
        ("{not json", "not valid JSON"),
        pytest.param(int(HUGE_INT[:4000]) ** 2, "digits", id="python-int-8000-digits"),  # str() would raise
        ({"x": {1, 2}}, "set"),  # not JSON: TypeError from json.dumps before
        ({"x": Opaque()}, "Opaque"),
        ({1: "a"}, "keys"),
        ({"x": "a" * (MAX_ACTION_CHARS + 1)}, str(MAX_ACTION_CHARS)),
    ],
    ids=["deep", "huge-int", "bad-json", "bigint", "set", "object", "int-key", "too-long"],
)
def test_structured_messages_with_degenerate_arguments_are_call_errors(arguments, reason):
    message = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                    "function": {"name": "f", "arguments": arguments}}]}
    action = Action.coerce(message)
    assert action.malformed is not None and reason in action.malformed, action.malformed
    assert_never_raises(action)


def test_nested_python_arguments_are_a_call_error():
    deep: dict = {}
    node = deep
    for _ in range(1500):
        node["x"] = node = {}
    call = ToolCall.from_parts("f", deep)
    assert call.error is not None and "nested" in call.error
    cyclic: dict = {}
    cyclic["self"] = cyclic
    assert "nested" in ToolCall.from_parts("f", cyclic).error


@pytest.mark.parametrize(
    "message, reason",
    [
        ({"role": "assistant", "content": [{"type": "text", "text": 5}]}, None),  # join over non-text: TypeError
        ({"role": "assistant", "tool_calls": "get_order"}, "tool_calls"),
        ({"role": "assistant", "tool_calls": [{"function": {"name": 7, "arguments": "{}"}}]}, "name"),
        ({"role": "assistant", "tool_calls": [None]}, "function"),
        ({"role": "assistant", "content": "x" * (MAX_ACTION_CHARS + 1)}, str(MAX_ACTION_CHARS)),
        ({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}] * 100_000},
         str(MAX_ACTION_CHARS)),
        ({"role": "assistant", "content": "ok", "reasoning_content": {"a": 1}}, None),
        ({"role": "assistant", "content": {"text": "hi"}}, "content must be"),
    ],
    ids=["non-text-part", "tool-calls-string", "int-name", "none-call", "long-content", "many-calls", "dict-reasoning",
         "dict-content"],
)
def test_odd_message_shapes_never_raise(message, reason):
    action = Action.coerce(message)
    if reason is not None:
        assert action.malformed is not None and reason in action.malformed, action.malformed
    assert action.reasoning is None or isinstance(action.reasoning, str)
    assert_never_raises(action)


def test_arguments_with_shared_references_cost_linear_time():
    bomb: list = []
    for _ in range(40):  # 2**40 paths through 40 lists: a walk or repr of every path never ends
        bomb = [bomb, bomb]
    start = time.perf_counter()
    action = Action.coerce({"role": "assistant", "content": bomb,
                            "tool_calls": [{"function": {"name": "f", "arguments": {"x": bomb}}}]})
    assert action.content == "" and "too large" in action.malformed  # a list is content parts: none is text
    call = ToolCall.from_parts("f", {"x": bomb})
    assert call.error is not None and f"more than {MAX_ACTION_CHARS} JSON values" in call.error
    assert_never_raises(Action(tool_calls=(call,)))
    assert time.perf_counter() - start < 2.0


def test_hand_built_calls_render_without_raising():
    for call in (ToolCall("f", {"x": {1, 2}}), ToolCall("f", {"x": Opaque()}), ToolCall(None, None, None)):  # type: ignore[arg-type]
        assert_never_raises(Action(tool_calls=(call,)))


@pytest.mark.parametrize("value", [None, 12, 3.5, b"<tool_call>", ["a"], object()])
def test_non_text_actions_are_parse_errors(value):
    action = Action.coerce(value)  # type: ignore[arg-type]
    assert action.parse_error is not None and type(value).__name__ in action.parse_error


# ---------------------------------------------------------------------------------------------------
# Exploit 5: parsing is linear in the size of the turn


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>x" + " " * 40000 + "y",  # the reported case: about 22 s with the old regex
        "<tool_call>" + " " * 60000,
        "<think>" * 9000,
        "<tool_call>" * 5000,
        "<tool_call></tool_call>" * 2800,
        "</tool_call><think>" * 3000,
        "<tool_call>" + '"\\"' * 20000,
    ],
    ids=["reported", "open-then-spaces", "think-opens", "call-opens", "empty-calls", "closes-and-opens", "quotes"],
)
def test_parsing_degenerate_text_is_fast(text):
    assert len(text) <= MAX_ACTION_CHARS
    start = time.perf_counter()
    action = Action.parse(text)
    elapsed = time.perf_counter() - start
    assert isinstance(action, Action)
    assert elapsed < 2.0, f"parsing {len(text)} characters took {elapsed:.1f} s"


def test_the_reported_quadratic_input_is_an_unterminated_call():
    action = Action.parse("<tool_call>x" + " " * 40000 + "y")
    assert action.parse_error == "unterminated <tool_call> block"
    assert action.tool_calls[0].error and "not valid JSON" in action.tool_calls[0].error


def test_parsing_stays_faithful_to_the_hermes_format():
    text = ("<think>a</think>Hi <think>b</think>there<tool_call> \n"
            '{"name": "f", "arguments": {"x": 1}}\n</tool_call>tail<tool_call>{"name": "g"}')
    action = Action.parse(text)
    assert action.reasoning == "a\nb"
    assert action.content == "Hi theretail"
    assert [c.name for c in action.tool_calls] == ["f", "g"]
    assert action.tool_calls[0].arguments == {"x": 1} and action.tool_calls[1].arguments == {}
    assert action.parse_error == "unterminated <tool_call> block"
    unterminated_think = Action.parse("Sure.<think>still thinking <tool_call>")
    assert unterminated_think.content == "Sure." and unterminated_think.reasoning == "still thinking <tool_call>"
    assert unterminated_think.tool_calls == ()


# ---------------------------------------------------------------------------------------------------
# Fuzz: no input makes Action.parse raise

FRAGMENTS = ["<tool_call>", "</tool_call>", "<think>", "</think>", "{", "}", "[", "]", '"', "\\", ":", ",",
             '"name"', '"arguments"', '"f"', "1" * 50, "-", "1e999", "NaN", "null", "true", " ", "\n",
             "\\u", "\\ud800", "\ud800", "\x00", "é", "😀", "\u2028"]


def random_action_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200))).decode("latin-1")
    if kind < 0.3:
        depth = rng.randrange(1, 3000)
        return call_text("[" * depth + "]" * rng.randrange(depth + 1))
    if kind < 0.4:
        return call_text('{"x": ' + "9" * rng.randrange(1, 6000) + "}")
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(60)))


def test_fuzz_parse_never_raises_and_always_returns_an_action():
    rng = random.Random(20261210)
    for i in range(3000):
        text = random_action_text(rng)
        try:
            action = Action.parse(text)
            assert_never_raises(action)
        except Exception as exc:  # noqa: BLE001 - the test reports which input broke the contract
            pytest.fail(f"input #{i} {text[:120]!r}... raised {type(exc).__name__}: {exc}")
        assert action.malformed is None or isinstance(action.malformed, str)


def random_value(rng: random.Random, depth: int = 0):
    """Python values a message dict could hold: JSON ones and a few that are not."""
    kind = rng.randrange(12 if depth < 4 else 7)
    return [
        lambda: rng.choice(FRAGMENTS) * rng.randrange(3),
        lambda: rng.randrange(-10, 10) * 10 ** rng.choice([0, 5, 4400]),
        lambda: rng.choice([0.5, float("nan"), float("inf"), -0.0]),
        lambda: rng.choice([True, False, None]),
        lambda: {1, 2},
        lambda: b"bytes",
        lambda: DEEP if rng.random() < 0.5 else "{" * rng.randrange(5),
        lambda: [random_value(rng, depth + 1) for _ in range(rng.randrange(4))],
        lambda: {rng.choice(["name", "arguments", "x", "function", "id"]): random_value(rng, depth + 1)
                 for _ in range(rng.randrange(4))},
        lambda: {"name": random_value(rng, depth + 1), "arguments": random_value(rng, depth + 1)},
        lambda: {"id": random_value(rng, depth + 1), "function": random_value(rng, depth + 1)},
        lambda: [{"function": {"name": "f", "arguments": random_value(rng, depth + 1)}}],
    ][kind]()


def test_fuzz_structured_messages_never_raise():
    rng = random.Random(7)
    for i in range(2000):
        message = {"role": "assistant"}
        for key in ("content", "tool_calls", "reasoning_content"):
            if rng.random() < 0.6:
                message[key] = random_value(rng)
        try:
            assert_never_raises(Action.coerce(message))
        except Exception as exc:  # noqa: BLE001 - the test reports which input broke the contract
            try:
                shown = repr(message)[:160]
            except ValueError:  # an int past the conversion limit cannot be shown either
                shown = "(unprintable)"
            pytest.fail(f"message #{i} {shown}... raised {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------------
# A degenerate action through env.step: reward 0 with the reason in info


DEGENERATE_ACTIONS = [
    call_text(DEEP, name="get_order"),
    call_text('{"order_id": ' + HUGE_INT + "}", name="get_order"),
    "<tool_call>x" + " " * 40000 + "y",
    "z" * (MAX_ACTION_CHARS + 1),
    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "get_order", "arguments": {"x": {1}}}}]},
]


@pytest.mark.parametrize("action", DEGENERATE_ACTIONS, ids=["deep", "huge_int", "quadratic", "too_long", "not_json"])
def test_degenerate_action_scores_zero_in_pivot_mode(tool_use_records, action):
    from pivot_envs import TrajectoryEnv

    env = TrajectoryEnv(tool_use_records[:1], domain="tool_use")
    try:
        env.reset(options={"trajectory": tool_use_records[0].id, "turn": 0})
        _, reward, terminated, _, info = env.step(action)
    finally:
        env.close()
    assert reward == 0.0 and terminated
    assert info["verdict"].category in ("BAD_FORMAT", "BAD_JSON"), info["verdict"]
    assert info["verdict"].details or info["verdict"].method == "error"


@pytest.mark.parametrize("action", DEGENERATE_ACTIONS, ids=["deep", "huge_int", "quadratic", "too_long", "not_json"])
def test_degenerate_action_is_an_invalid_step_in_episode_mode(tool_use_records, action):
    from pivot_envs import TrajectoryEnv

    env = TrajectoryEnv(tool_use_records[:1], domain="tool_use", mode="episode")
    try:
        env.reset(options={"trajectory": tool_use_records[0].id, "turn": 0})
        obs, reward, _, _, info = env.step(action)
    finally:
        env.close()
    assert reward == 0.0
    assert info["invalid_action"]
    json.dumps(obs)  # the next observation is still a valid chat


@pytest.mark.parametrize("tail", [" <tool_call>{\"name\": ", " " + "z" * MAX_ACTION_CHARS])
def test_a_final_reply_that_did_not_parse_cannot_claim_the_outcome(tool_use_records, tail):
    """Reward hacking: play the demonstration, then end with its closing message made malformed (an
    unterminated call, or the size cap passed). The world is in the success state and the text still
    states every fact, yet a turn that did not parse must earn 0, not the task's outcome."""
    from pivot_envs import TrajectoryEnv

    record = next(r for r in tool_use_records if r.action(r.num_turns - 1).kind == "message")
    env = TrajectoryEnv([record], domain="tool_use", mode="episode")
    try:
        env.reset(options={"trajectory": record.id, "turn": 0})
        for turn in range(record.num_turns - 1):
            env.step(record.action(turn))
        final = record.action(record.num_turns - 1).content
        _, honest, *_ = env.fork(1)[0].step(final)
        _, reward, terminated, truncated, info = env.step(final + tail)
    finally:
        env.close()
    assert honest == 1.0  # the same reply, well formed, succeeds
    assert reward == 0.0 and info.get("success") is not True and info["invalid_action"]
    assert not truncated


def test_degenerate_action_on_the_terminal_domain_local_backend(local_shell_worlds):
    from pivot_envs import TrajectoryEnv, get_domain

    records = get_domain("terminal").load(strict=True)[:1]
    for mode in ("pivot", "episode"):
        env = TrajectoryEnv(records, domain="terminal", mode=mode)
        try:
            for action in (call_text(DEEP, name="bash"), call_text('{"command": ' + HUGE_INT + "}", name="bash"),
                           "<tool_call>x" + " " * 40000 + "y"):
                env.reset(options={"trajectory": records[0].id, "turn": 0})
                assert env.sandbox is not None and env.sandbox.backend == "local"
                _, reward, _, _, info = env.step(action)
                assert reward == 0.0, (mode, info)
                reason = info["verdict"].category if mode == "pivot" else info["invalid_action"]
                assert reason, (mode, info)
        finally:
            env.close()


# ---------------------------------------------------------------------------------------------------
# Exploit 7: trajectory files that gave bare tracebacks

TOOLS = [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}]


def record(rid: str, **extra) -> dict:
    return {"id": rid, "tools": TOOLS, "messages": [{"role": "user", "content": "hi"},
                                                    {"role": "assistant", "content": "hello"}], **extra}


def line(rid: str, **extra) -> str:
    return json.dumps(record(rid, **extra))


def write_bytes(tmp_path, data: bytes, name: str = "t.jsonl"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def errors_by_line(result) -> dict[int, list]:
    out: dict[int, list] = {}
    for e in result.errors:
        out.setdefault(e.line, []).append(e)
    return out


def test_non_utf8_line_is_reported_and_the_rest_loads(tmp_path):
    data = (line("a") + "\n").encode() + b'{"id": "caf\xe9"}\n' + (line("c") + "\n").encode()
    result = load_trajectories(write_bytes(tmp_path, data))
    assert [t.id for t in result] == ["a", "c"]
    (err,) = result.errors
    assert err.line == 2 and err.field == "<line>"
    assert "UTF-8" in err.message and "0xe9" in err.message and "column 12" in err.message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_file_gets_one_clear_error(tmp_path, encoding):
    text = line("a") + "\n" + line("b") + "\n"
    result = load_trajectories(write_bytes(tmp_path, text.encode(encoding)))
    assert len(result) == 0
    (err,) = result.errors
    assert err.line == 1 and err.field == "<file>"
    assert "UTF-16" in err.message and "iconv" in err.message
    with pytest.raises(TrajectoryError, match="UTF-16"):
        load_trajectories(tmp_path / "t.jsonl", strict=True)
    if shutil.which("iconv"):  # the suggested command is the fix
        command = err.message.split("`")[1].replace("IN", str(tmp_path / "t.jsonl")).replace("OUT", str(tmp_path / "u.jsonl"))
        subprocess.run(command, shell=True, check=True)
        fixed = load_trajectories(tmp_path / "u.jsonl")
        assert [t.id for t in fixed] == ["a", "b"] and fixed.errors == []


def test_utf8_bom_is_accepted(tmp_path):
    data = b"\xef\xbb\xbf" + (line("a") + "\n" + line("b") + "\n").encode()
    result = load_trajectories(write_bytes(tmp_path, data))
    assert [t.id for t in result] == ["a", "b"] and result.errors == []


def test_deep_nesting_and_huge_integers_in_a_record_are_line_errors(tmp_path):
    deep = '{"id": "d", "messages": ' + DEEP + "}"
    too_deep_but_parsable = json.dumps(record("e", metadata={"x": json.loads("[" * 150 + "]" * 150)}))
    huge_prefix = '{"id": "h", "n": '
    huge = huge_prefix + HUGE_INT + "}"
    p = write_bytes(tmp_path, "\n".join([line("a"), deep, too_deep_but_parsable, huge, line("z")]).encode() + b"\n")
    result = load_trajectories(p)
    assert [t.id for t in result] == ["a", "z"]
    errs = errors_by_line(result)
    assert set(errs) == {2, 3, 4}
    assert "nested" in errs[2][0].message and str(MAX_RECORD_DEPTH) in errs[2][0].message
    assert "nested" in errs[3][0].message and errs[3][0].field.startswith("metadata.x")
    assert "digits" in errs[4][0].message and f"column {len(huge_prefix) + 1}" in errs[4][0].message
    assert all(e.field == "<line>" for e in (errs[2][0], errs[4][0]))


def test_line_cut_off_at_the_end_points_at_its_own_end(tmp_path):
    full = line("b")
    after_comma = full[: full.index('"messages"')]  # '{"id": "b", "tools": [...], '
    in_string = full[: full.index("hello") + 2]  # '... "content": "he'
    for cut, column in ((after_comma, len(after_comma) + 1), (in_string, in_string.rindex('"') + 1)):
        p = write_bytes(tmp_path, (line("a") + "\n" + cut).encode())  # no final newline: the write was interrupted
        result = load_trajectories(p)
        assert [t.id for t in result] == ["a"]
        (err,) = result.errors
        assert err.line == 2
        assert f"column {column}:" in err.message and "cut off" in err.message, err.message


def test_invalid_json_column_is_within_its_line(tmp_path):
    p = write_bytes(tmp_path, (line("a") + "\n" + '{"id": "b",, "x": 1}\n').encode())
    (err,) = load_trajectories(p).errors
    assert err.line == 2 and "column 12" in err.message


def test_empty_file_is_a_problem(tmp_path):
    for data in (b"", b"\n\n  \n"):
        p = write_bytes(tmp_path, data)
        result = load_trajectories(p)
        assert len(result) == 0
        (err,) = result.errors
        assert err.field == "<file>" and "no records" in err.message and err.line == 0
        assert str(err).startswith(f"{p}: ")
        assert result.invalid_lines == 0  # a file-level problem, not a bad line
        with pytest.raises(TrajectoryError, match="no records"):
            load_trajectories(p, strict=True)


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    p = write_bytes(tmp_path, ("\n" + line("a") + "\n\n   \n" + '{"id": 5}' + "\n\r\n").encode())
    result = load_trajectories(p)
    assert [t.id for t in result] == ["a"]
    assert {e.line for e in result.errors} == {5}


def test_pretty_printed_record_gets_the_one_line_hint(tmp_path):
    pretty = json.dumps(record("p"), indent=2)
    n = pretty.count("\n") + 1
    p = write_bytes(tmp_path, (pretty + "\n" + line("a") + "\n").encode())
    result = load_trajectories(p)
    assert [t.id for t in result] == ["a"]  # the record after it still loads
    (err,) = result.errors  # one error for the whole record, not one per line
    assert err.line == 1 and f"lines 1-{n}" in err.message and "one line" in err.message


def test_readme_style_folded_record_gets_the_hint(tmp_path):
    folded = ('{"id": "t1", "tools": [],\n "messages": [{"role": "user", "content": "Where is W1?"},\n'
              '              {"role": "assistant", "content": "It has shipped."}]}\n')
    result = load_trajectories(write_bytes(tmp_path, folded.encode()))
    (err,) = result.errors
    assert err.line == 1 and "lines 1-3" in err.message and "one line" in err.message


def test_converter_reports_the_same_problems(tmp_path):
    data = (b"\xef\xbb\xbf" + (line("a") + "\n").encode() + b'{"id": "caf\xe9"}\n' + ("[" * 1500 + "\n").encode()
            + ('{"messages": ' + DEEP + "}\n").encode() + ('{"id": 1, "n": ' + HUGE_INT + "}\n").encode())
    report = convert_file(write_bytes(tmp_path, data), tmp_path / "out.jsonl", "auto")
    assert report.converted == 1
    assert report.failed_lines == [2, 3, 4, 5]
    utf16 = write_bytes(tmp_path, (line("a") + "\n").encode("utf-16"), "u.jsonl")
    assert "UTF-16" in str(convert_file(utf16, tmp_path / "o2.jsonl", "auto"))
    empty = write_bytes(tmp_path, b"", "e.jsonl")
    assert "no records" in str(convert_file(empty, tmp_path / "o3.jsonl", "openai"))


def test_data_validate_cli_reports_lines_and_fails(tmp_path):
    typer_testing = pytest.importorskip("typer.testing")
    from agents.cli import app

    runner = typer_testing.CliRunner()
    cases = {
        "latin1.jsonl": (line("a") + "\n").encode() + b'{"id": "caf\xe9"}\n',
        "utf16.jsonl": (line("a") + "\n").encode("utf-16"),
        "deep.jsonl": ("[" * 1500 + "\n").encode(),
        "huge.jsonl": ('{"id": ' + HUGE_INT + "}\n").encode(),
        "empty.jsonl": b"",
    }
    for name, data in cases.items():
        p = write_bytes(tmp_path, data, name)
        result = runner.invoke(app, ["data", "validate", str(p)])
        assert result.exit_code != 0, (name, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.exception)
        assert "Traceback" not in result.output and str(p) in result.output.replace("\n", ""), (name, result.output)


def test_hostile_tool_outputs_do_not_break_cleaning_or_replay_checks():
    from pivot_envs.restore import outputs_match
    from pivot_envs.trajectory import extract_candidates, is_error_output, record_from_dict

    for text in (DEEP, HUGE_INT, "[" * 5000):
        assert is_error_output(text) is False
        assert outputs_match(text, text + "x") is False
    rec = record("t")
    rec["messages"][1:] = [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "get", "arguments": "{}"}}]},
                           {"role": "tool", "tool_call_id": "c", "content": DEEP},
                           {"role": "assistant", "content": "done"}]
    candidates, stats = extract_candidates([record_from_dict(rec)])
    assert stats["kept"] == 2 and len(candidates) == 2
