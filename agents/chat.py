"""Chat rendering with the tokenizer's own chat template: prompts, completions and SFT loss masks.

Everything here goes through ``tokenizer.apply_chat_template(..., tokenize=False)`` and then
``tokenizer(text, add_special_tokens=False)``, which is exactly what ``apply_chat_template(tokenize=True)``
does inside (and sidesteps its return type, a list or a ``BatchEncoding`` depending on the version).
The model therefore always sees the format it was trained on, tools included.

Three token views of one conversation, all cut from the same renders::

    prompt_ids(tok, obs)            <|im_start|>system ... <|im_start|>assistant\\n       (state s_t)
    completion_ids(tok, obs, msg)   {content}<tool_call>{...}</tool_call><|im_end|>       (action a_t)
    assistant_mask(tok, msgs, ...)  1 on every assistant turn's completion tokens, 0 elsewhere

A completion is what the template renders for the assistant message after the generation prompt, up to and
including the first end-of-turn token (:func:`end_of_turn_ids`); whatever the template adds after it (the
ChatML newline) belongs to neither the completion nor the mask, as in ``{% generation %}`` markers. This
needs a *prefix-stable* template: rendering a conversation and then appending a message must not change
the tokens already rendered. Templates that rewrite history (Qwen3 drops the reasoning of earlier turns)
are not prefix-stable over a whole conversation; :func:`assistant_mask` then raises
:class:`ChatTemplateError` naming the turn, and per-turn training (``prompt_ids`` + ``completion_ids``, what
PivotRL uses) still works.

OpenAI messages are adapted to what templates expect by :func:`to_template_messages`: tool-call
``arguments`` become dicts (Qwen/Hermes templates ``tojson`` them), content parts become text, and
``reasoning_content`` is dropped unless asked for (the label of a PivotRL state never includes reasoning).

>>> from agents.tiny import build_tiny_tokenizer      # doctest: +SKIP
>>> tok = build_tiny_tokenizer()                      # doctest: +SKIP
>>> msg = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
...        "function": {"name": "f", "arguments": '{"x": 1}'}}]}
>>> action_text(tok, msg)                             # doctest: +SKIP
'<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pivot_envs.actions import Action

# End-of-turn tokens of common chat formats (ChatML, Llama 3, Gemma, Phi, gpt-oss, plain eos).
_END_OF_TURN_STRINGS = (
    "<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|return|>", "<|endoftext|>",
    "<|end_of_text|>", "</s>",
)
_REASONING_MODES = ("drop", "keep")


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot give the token view asked for.

    Attributes:
        turn: The assistant turn (0-based) where the problem showed, when there is one.
    """

    def __init__(self, message: str, *, turn: int | None = None):
        super().__init__(message)
        self.turn = turn


# ---------------------------------------------------------------------------------------------------
# Messages


def to_template_messages(messages: Sequence[Mapping[str, Any]], *, reasoning: str = "drop") -> list[dict[str, Any]]:
    """OpenAI chat messages in the shape chat templates read.

    * ``tool_calls[*].function.arguments`` given as a JSON string becomes a dict (a string that is not a
      JSON object is kept as written, so a malformed call still renders);
    * ``content`` given as a list of text parts becomes one string, and ``None`` becomes ``""`` (templates
      such as Qwen3's apply string operations to it);
    * ``reasoning_content`` is removed (``reasoning="drop"``, the default) or kept for templates that
      render it (``reasoning="keep"``).

    The input is not modified.
    """
    if reasoning not in _REASONING_MODES:
        raise ValueError(f"reasoning={reasoning!r}; expected one of {_REASONING_MODES}")
    out = []
    for message in messages:
        m = {k: v for k, v in message.items() if v is not None}
        m.setdefault("content", "")
        if isinstance(m.get("content"), list):
            m["content"] = "".join(p.get("text", "") for p in m["content"] if isinstance(p, dict))
        if reasoning == "drop":
            m.pop("reasoning_content", None)
        if m.get("tool_calls"):
            m["tool_calls"] = [_template_call(c) for c in m["tool_calls"]]
        out.append(m)
    return out


def _template_call(call: Mapping[str, Any]) -> dict[str, Any]:
    call = dict(call)
    fn = call.get("function")
    if isinstance(fn, Mapping):
        fn = dict(fn)
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                parsed = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                fn["arguments"] = parsed
        call["function"] = fn
    return call


# ---------------------------------------------------------------------------------------------------
# Rendering


def render(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = False,
    reasoning: str = "drop",
) -> str:
    """The conversation as text, through the tokenizer's chat template."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ChatTemplateError(
            f"{type(tokenizer).__name__} has no chat_template; load an instruct/chat checkpoint or set "
            "tokenizer.chat_template (agents.tiny.CHAT_TEMPLATE is a ChatML template with tools)"
        )
    if not messages:
        raise ChatTemplateError("cannot render an empty conversation")
    text = tokenizer.apply_chat_template(
        to_template_messages(messages, reasoning=reasoning),
        tools=list(tools) if tools else None,
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
    )
    if not isinstance(text, str):  # some versions return a one-element list
        text = text[0]
    return text


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered text, the way ``apply_chat_template(tokenize=True)`` makes them."""
    return as_ids(tokenizer(text, add_special_tokens=False))


def as_ids(out: Any) -> list[int]:
    """A flat ``list[int]`` from whatever a tokenizer call returned (list, BatchEncoding, dict, tensor)."""
    if isinstance(out, Mapping) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    if hasattr(out, "tolist"):
        out = out.tolist()
    if out and isinstance(out[0], list):
        if len(out) != 1:
            raise ValueError(f"expected the ids of one sequence, got a batch of {len(out)}")
        out = out[0]
    return [int(i) for i in out]


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Ids that end an assistant turn: the eos token(s) and the known end-of-turn tokens in the vocab."""
    ids: list[int] = []
    eos = getattr(tokenizer, "eos_token_id", None)
    for i in eos if isinstance(eos, list) else [eos]:
        if i is not None and i not in ids:
            ids.append(int(i))
    unk = getattr(tokenizer, "unk_token_id", None)
    for s in _END_OF_TURN_STRINGS:
        i = tokenizer.convert_tokens_to_ids(s)  # unk (or None) when the vocabulary lacks it
        if i is not None and i != unk and i not in ids:
            ids.append(int(i))
    return ids


def _cut_after_end(ids: Sequence[int], end_ids: Sequence[int]) -> list[int]:
    for j, i in enumerate(ids):
        if i in end_ids:
            return list(ids[: j + 1])
    return list(ids)


def prompt_ids(tokenizer: Any, observation: Mapping[str, Any], *, reasoning: str = "drop") -> list[int]:
    """Token ids of the prompt for the next assistant turn: messages, tools and the generation prompt.

    ``observation`` is a :class:`~pivot_envs.core.TrajectoryEnv` observation ``{"messages", "tools"}``.
    """
    return encode(tokenizer, render(tokenizer, observation["messages"], observation.get("tools"),
                                    add_generation_prompt=True, reasoning=reasoning))


def completion_ids(
    tokenizer: Any, observation: Mapping[str, Any], assistant_message: Mapping[str, Any], *, reasoning: str = "drop"
) -> list[int]:
    """Token ids of one assistant turn exactly as the template renders it after :func:`prompt_ids`.

    Ends with the end-of-turn token when the template renders one. These are the SFT target tokens of the
    state; ``prompt_ids(...) + completion_ids(...)`` is a prefix of the full conversation's tokens.

    Raises:
        ChatTemplateError: The template renders the prompt differently once the assistant message follows
            (not prefix-stable), so no token split of "prompt | completion" exists.
    """
    messages, tools = list(observation["messages"]), observation.get("tools")
    prompt = prompt_ids(tokenizer, observation, reasoning=reasoning)
    full = encode(tokenizer, render(tokenizer, [*messages, dict(assistant_message)], tools, reasoning=reasoning))
    if full[: len(prompt)] != prompt:
        raise ChatTemplateError(_prefix_problem(tokenizer, prompt, full, "the prompt for the next assistant turn",
                                                "that turn appended"))
    return _cut_after_end(full[len(prompt):], end_of_turn_ids(tokenizer))


def action_text(
    tokenizer: Any, assistant_message: Mapping[str, Any], observation: Mapping[str, Any] | None = None
) -> str:
    """The text a model should generate for ``assistant_message`` (the completion, without the end token).

    ``Action.parse(action_text(tok, msg))`` gives back the message's tool calls. Templates may render a
    turn differently by position (Qwen3 adds an empty ``<think>`` block to the last turn); the default
    context is one short user message.
    """
    observation = observation or {"messages": [{"role": "user", "content": "Hi"}], "tools": []}
    ids = completion_ids(tokenizer, observation, assistant_message)
    if ids and ids[-1] in end_of_turn_ids(tokenizer):
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def parse_action(text: str) -> Action:
    """Model output text -> :class:`~pivot_envs.actions.Action` (Hermes ``<tool_call>`` format)."""
    return Action.parse(text)


def assistant_mask(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    reasoning: str = "drop",
) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and an SFT loss mask over them.

    The mask is 1 on exactly the tokens of every assistant turn as the template renders it (content, tool
    calls and the end-of-turn token), and 0 on everything else, including each turn's generation-prompt
    header (``<|im_start|>assistant\\n``). For templates with ``{% generation %}`` markers around the same
    span this equals ``apply_chat_template(..., return_assistant_tokens_mask=True)``; unlike that option it
    also works for templates without markers (most open models).

    Returns:
        ``(input_ids, mask)``, two lists of the same length.

    Raises:
        ChatTemplateError: The template is not prefix-stable over this conversation (it renders an earlier
            part differently once later messages follow), naming the assistant turn where that showed.
    """
    messages = list(messages)
    end_ids = end_of_turn_ids(tokenizer)
    full = encode(tokenizer, render(tokenizer, messages, tools, reasoning=reasoning))
    mask = [0] * len(full)
    turn = -1
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        turn += 1
        if i == 0:
            raise ChatTemplateError("a conversation cannot start with an assistant turn: there is no prompt "
                                    "to render before it; add the system or user message", turn=turn)
        prompt = encode(tokenizer, render(tokenizer, messages[:i], tools, add_generation_prompt=True,
                                          reasoning=reasoning))
        upto = encode(tokenizer, render(tokenizer, messages[: i + 1], tools, reasoning=reasoning))
        if upto[: len(prompt)] != prompt:
            raise ChatTemplateError(_prefix_problem(tokenizer, prompt, upto, f"the prompt of assistant turn {turn}",
                                                    "that turn appended"), turn=turn)
        completion = _cut_after_end(upto[len(prompt):], end_ids)
        end = len(prompt) + len(completion)
        if full[:end] != prompt + completion:
            raise ChatTemplateError(_prefix_problem(tokenizer, prompt + completion, full,
                                                    f"the conversation up to assistant turn {turn}",
                                                    "the later messages appended"), turn=turn)
        mask[len(prompt):end] = [1] * len(completion)
    return full, mask


def _prefix_problem(tokenizer: Any, prefix: list[int], full: list[int], what: str, after: str) -> str:
    j = next((k for k, (a, b) in enumerate(zip(prefix, full, strict=False)) if a != b), min(len(prefix), len(full)))
    got = tokenizer.decode(full[max(0, j - 8): j + 8], skip_special_tokens=False)
    want = tokenizer.decode(prefix[max(0, j - 8): j + 8], skip_special_tokens=False)
    return (f"chat template is not prefix-stable: {what} renders as {want!r} around token {j}, but as {got!r} "
            f"with {after}. The template rewrites earlier messages depending on what follows (e.g. it drops "
            "reasoning of earlier turns, or merges whitespace across the boundary). Train per turn with "
            "prompt_ids + completion_ids, or use a template whose rendering only appends.")
