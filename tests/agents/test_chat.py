"""Chat rendering: masks against transformers token for token, prefix stability, Hermes round trips."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("transformers")

from agents.chat import (  # noqa: E402
    ChatTemplateError,
    action_text,
    as_ids,
    assistant_mask,
    completion_ids,
    encode,
    end_of_turn_ids,
    prompt_ids,
    render,
    to_template_messages,
)
from agents.tiny import CHAT_TEMPLATE, TAG_TOKENS, build_tiny_tokenizer  # noqa: E402
from pivot_envs.actions import Action  # noqa: E402


@pytest.fixture(scope="module")
def tok(tool_use_records):
    return build_tiny_tokenizer(tool_use_records)


@pytest.fixture(scope="module")
def records(tool_use_records):
    """40 conversations, including every one with a multi-call turn and several with reasoning."""
    multi = [r for r in tool_use_records if any(len(m.get("tool_calls") or []) > 1 for m in r.messages)]
    rest = [r for r in tool_use_records if r not in multi]
    chosen = multi[:10] + rest[:30]
    assert any(m.get("reasoning_content") for r in chosen for m in r.messages)
    return chosen


def _hf_mask(tok, messages, tools, reasoning="drop"):
    out = tok.apply_chat_template(to_template_messages(messages, reasoning=reasoning), tools=tools, tokenize=True,
                                  return_dict=True, return_assistant_tokens_mask=True)
    return list(out["input_ids"]), list(out["assistant_masks"])


@pytest.mark.parametrize("reasoning", ["drop", "keep"])
def test_assistant_mask_matches_transformers_generation_markers(tok, records, reasoning):
    assert "{%- generation -%}" in tok.chat_template
    for r in records:
        ids, mask = assistant_mask(tok, r.messages, r.tools, reasoning=reasoning)
        hf_ids, hf_mask = _hf_mask(tok, r.messages, r.tools, reasoning)
        assert ids == hf_ids, r.id
        assert mask == hf_mask, r.id
        assert sum(mask) > 0


def test_mask_covers_each_turn_and_its_end_token_but_not_the_header(tok, records):
    header = encode(tok, "<|im_start|>assistant\n")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for r in records[:10]:
        ids, mask = assistant_mask(tok, r.messages, r.tools)
        spans, start = [], None
        for j, m in enumerate([*mask, 0]):
            if m and start is None:
                start = j
            elif not m and start is not None:
                spans.append((start, j))
                start = None
        assert len(spans) == r.num_turns
        for a, b in spans:
            assert ids[a - len(header): a] == header
            assert ids[b - 1] == im_end and im_end not in ids[a: b - 1]


def test_prompt_plus_completion_is_a_prefix_of_the_conversation(tok, records):
    for r in records[:15]:
        full, mask = assistant_mask(tok, r.messages, r.tools)
        for turn in range(r.num_turns):
            obs = {"messages": r.prefix(turn), "tools": r.tools}
            p = prompt_ids(tok, obs)
            c = completion_ids(tok, obs, r.messages[r.assistant_indices[turn]])
            assert full[: len(p) + len(c)] == p + c
            assert all(mask[len(p): len(p) + len(c)]) and not mask[len(p) - 1]
            assert c[-1] in end_of_turn_ids(tok)


def test_prompt_ids_equal_apply_chat_template_tokens(tok, records):
    r = records[0]
    msgs = r.prefix(2)
    ours = prompt_ids(tok, {"messages": msgs, "tools": r.tools})
    theirs = tok.apply_chat_template(to_template_messages(msgs), tools=r.tools, add_generation_prompt=True, tokenize=True)
    assert ours == as_ids(theirs)
    assert tok.decode(ours[-3:]).endswith("<|im_start|>assistant\n")


def test_completion_text_is_hermes_and_parses_back_to_the_same_calls(tok, tool_use_records):
    seen_multi = seen_message = False
    for r in tool_use_records[:25]:
        for turn in range(r.num_turns):
            msg = r.messages[r.assistant_indices[turn]]
            obs = {"messages": r.prefix(turn), "tools": r.tools}
            text = action_text(tok, msg, obs)
            expected = Action.from_message(msg)
            assert text == expected.to_text()
            parsed = Action.parse(text)
            assert parsed.malformed is None
            assert [(c.name, c.arguments) for c in parsed.tool_calls] == [(c.name, c.arguments) for c in expected.tool_calls]
            assert parsed.content == expected.content
            ids = completion_ids(tok, obs, msg)
            assert tok.decode(ids[:-1], skip_special_tokens=False) == text
            seen_multi |= len(expected.tool_calls) > 1
            seen_message |= expected.kind == "message"
    assert seen_multi and seen_message


def test_content_with_calls_and_malformed_arguments_round_trip(tok):
    msg = {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": [1, 2], "y": "é"}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"broken": '}},
    ]}
    text = action_text(tok, msg)
    assert text == Action.from_message(msg).to_text()
    parsed = Action.parse(text)
    assert parsed.content == "Let me check."
    assert parsed.tool_calls[0].arguments == {"x": [1, 2], "y": "é"}
    assert parsed.tool_calls[1].error and parsed.malformed


def test_tiny_tokenizer_has_single_tag_tokens_and_round_trips_text(tok):
    for t in (*TAG_TOKENS, "<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert len(encode(tok, t)) == 1, t
    for t in TAG_TOKENS:  # like Qwen: not special, so skip_special_tokens keeps them
        assert t in tok.decode(encode(tok, t), skip_special_tokens=True)
    text = 'Ünïcode ✓ 日本 <tool_call>{"name": "x", "arguments": {"a": " spaced  "}}</tool_call>\n\n  tab\t'
    assert tok.decode(encode(tok, text), skip_special_tokens=False) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_tools_render_compactly_one_line_per_tool(tok, tool_use_records):
    r = tool_use_records[0]
    text = render(tok, r.messages[:2], r.tools)
    lines = [ln for ln in text.splitlines() if ln.startswith("- ")]
    assert len(lines) == len(r.tools)
    assert '- cancel_pending_order(order_id: string, reason: "no longer needed"|"ordered by mistake"): ' in text
    assert "address: {street: string, city: string, zip: string}" in text
    assert "limit?: integer" in text and '"properties"' not in text
    with_tools = len(encode(tok, text))
    assert with_tools - len(encode(tok, render(tok, r.messages[:2], None))) < 600  # JSON schemas: ~1900


def test_to_template_messages_converts_without_mutating(tool_use_records):
    msgs = copy.deepcopy(tool_use_records[0].messages)
    before = copy.deepcopy(msgs)
    out = to_template_messages(msgs)
    assert msgs == before
    calls = [c for m in out for c in m.get("tool_calls") or []]
    assert calls and all(isinstance(c["function"]["arguments"], dict) for c in calls)
    assert not any("reasoning_content" in m for m in out)
    assert any("reasoning_content" in m for m in to_template_messages(msgs, reasoning="keep"))
    assert to_template_messages([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]) \
        == [{"role": "user", "content": "ab"}]
    with pytest.raises(ValueError, match="reasoning"):
        to_template_messages(msgs, reasoning="maybe")


def test_history_rewriting_template_is_reported(tok, tool_use_records):
    bad = copy.deepcopy(tok)
    # Marks the last message: rendering changes once another message follows (like Qwen3's reasoning rule).
    bad.chat_template = CHAT_TEMPLATE.replace(
        "{{ '<|im_start|>' ~ message.role ~ '\\n' ~ (message.content | default('', true)) ~ '<|im_end|>\\n' }}",
        "{{ '<|im_start|>' ~ message.role ~ '\\n' ~ (message.content | default('', true)) ~ ('!' if loop.last else '')"
        " ~ '<|im_end|>\\n' }}")
    r = tool_use_records[0]
    with pytest.raises(ChatTemplateError, match="not prefix-stable") as info:
        assistant_mask(bad, r.messages, r.tools)
    assert info.value.turn == 0
    bad.chat_template = None
    with pytest.raises(ChatTemplateError, match="no chat_template"):
        prompt_ids(bad, {"messages": r.messages[:2], "tools": []})


def test_as_ids_accepts_every_tokenizer_return_shape(tok):
    ids = encode(tok, "hello world")
    assert as_ids(tok("hello world", add_special_tokens=False)) == ids
    assert as_ids({"input_ids": [ids]}) == ids
    assert as_ids(ids) == ids
    with pytest.raises(ValueError, match="batch"):
        as_ids([ids, ids])
