"""Tiny chat models built offline: a BPE tokenizer trained on the fly and a small Llama from a config.

Tests and the CPU demo need a model that costs seconds and no download. :func:`build_tiny` makes one
from the bundled tool-use trajectories::

    tokenizer, model = build_tiny()                       # ~0.2M parameters, random weights
    save_tiny(model, tokenizer, "runs/tiny")              # a normal checkpoint directory
    policy = HFPolicy.from_pretrained("runs/tiny")        # or make_policy("hf:runs/tiny")

The tokenizer is byte-level BPE (every string round-trips exactly) with ChatML special tokens and the
Hermes tags ``<tool_call>``, ``</tool_call>``, ``<think>``, ``</think>`` as single (non-special, like
Qwen's) tokens. Its :data:`CHAT_TEMPLATE` is ChatML with tools, with ``{% generation %}`` markers around
each assistant turn (content, tool calls and ``<|im_end|>``), so
``apply_chat_template(..., return_assistant_tokens_mask=True)`` works and can check
:func:`agents.chat.assistant_mask`. Tools render *compactly*, one line per tool, instead of the JSON
schemas most templates paste (ten of those are over a thousand tokens)::

    # Tools
    Call a tool with <tool_call>{"name": NAME, "arguments": {...}}</tool_call>; ? marks optional arguments.
    - list_user_orders(user_id: string, status?: "pending"|"delivered", limit?: integer): List a user's orders.

Tool calls render exactly as :meth:`pivot_envs.actions.Action.to_text` writes them, and tool results
as a ChatML ``tool`` turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TAG_TOKENS = ("<tool_call>", "</tool_call>", "<think>", "</think>")
EOS_TOKEN = "<|im_end|>"  # end of an assistant turn: generate() stops there, as with Qwen2.5-Instruct
PAD_TOKEN = "<|endoftext|>"

# Written without newlines in the Jinja source (transformers renders with trim_blocks/lstrip_blocks):
# every newline of the output is an explicit '\n' string.
CHAT_TEMPLATE = (
    "{%- macro type_of(spec) -%}"
    "{%- if spec is not mapping -%}{{ 'any' }}"
    "{%- elif spec.enum is defined -%}{{ spec.enum | map('tojson') | join('|') }}"
    "{%- elif spec.type == 'array' -%}{{ type_of(spec['items'] | default({}, true)) ~ '[]' }}"
    "{%- elif spec.type == 'object' and spec.properties is defined -%}"
    "{%- set req = spec.required | default([], true) -%}"
    "{{ '{' }}{%- for k, v in spec.properties.items() -%}"
    "{{ (', ' if not loop.first else '') ~ k ~ ('' if k in req else '?') ~ ': ' ~ type_of(v) }}"
    "{%- endfor -%}{{ '}' }}"
    "{%- elif spec.type == 'object' and spec.additionalProperties is mapping -%}"
    "{{ 'dict[' ~ type_of(spec.additionalProperties) ~ ']' }}"
    "{%- else -%}{{ spec.type | default('any', true) }}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set ns = namespace(start=0, system='') -%}"
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set ns.start = 1 -%}{%- set ns.system = messages[0].content | default('', true) -%}"
    "{%- endif -%}"
    "{%- if ns.system or tools -%}"
    "{{ '<|im_start|>system\\n' ~ ns.system }}"
    "{%- if tools -%}"
    "{{ ('\\n\\n' if ns.system else '') ~ '# Tools\\nCall a tool with <tool_call>{\"name\": NAME, \"arguments\": {...}}"
    "</tool_call>; ? marks optional arguments.' }}"
    "{%- for tool in tools -%}"
    "{%- set fn = tool.function if tool.function is defined else tool -%}"
    "{%- set params = fn.parameters | default({}, true) -%}"
    "{%- set req = params.required | default([], true) -%}"
    "{{ '\\n- ' ~ fn.name ~ '(' }}"
    "{%- for k, v in (params.properties | default({}, true)).items() -%}"
    "{{ (', ' if not loop.first else '') ~ k ~ ('' if k in req else '?') ~ ': ' ~ type_of(v) }}"
    "{%- endfor -%}"
    "{{ ')' ~ (': ' ~ fn.description if fn.description else '') }}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for message in messages[ns.start:] -%}"
    "{%- if message.role == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- generation -%}"
    "{%- if message.reasoning_content -%}{{ '<think>' ~ message.reasoning_content ~ '</think>\\n' }}{%- endif -%}"
    "{%- set content = message.content | default('', true) -%}"
    "{{ content }}"
    "{%- for tc in message.tool_calls | default([], true) -%}"
    "{%- set fn = tc.function if tc.function is defined else tc -%}"
    "{{ ('\\n' if (content or not loop.first) else '') ~ '<tool_call>{\"name\": ' ~ (fn.name | tojson)"
    " ~ ', \"arguments\": ' ~ (fn.arguments | default({}, true) | tojson) ~ '}</tool_call>' }}"
    "{%- endfor -%}"
    "{{ '<|im_end|>' }}"
    "{%- endgeneration -%}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' ~ message.role ~ '\\n' ~ (message.content | default('', true)) ~ '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def _as_record(record: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if isinstance(record, Mapping):
        return list(record["messages"]), list(record.get("tools") or [])
    return list(record.messages), list(record.tools)


def _byte_level_bpe(vocab: dict[str, int] | None = None, merges: list | None = None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: PLC0415

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges) if vocab is not None else models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def _wrap(backend: Any) -> Any:
    from tokenizers import AddedToken  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
    )


def tiny_corpus(records: Iterable[Any]) -> list[str]:
    """Training texts for the tokenizer: each trajectory rendered through :data:`CHAT_TEMPLATE`.

    ``records`` are :class:`~pivot_envs.trajectory.Trajectory` objects or dicts with ``messages`` and
    ``tools``. Reasoning is added as separate texts (prompts never contain it; labels may, on request).
    """
    from agents.chat import render  # noqa: PLC0415

    # Rendering needs only the template: a byte-level tokenizer with no merges carries it.
    renderer = _wrap(_byte_level_bpe({}, []))
    texts = []
    for record in records:
        messages, tools = _as_record(record)
        texts.append(render(renderer, messages, tools))
        texts.extend(m["reasoning_content"] for m in messages if m.get("reasoning_content"))
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Any:
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast`` with the chat template.

    ``vocab_size`` counts the learned vocabulary with the three special tokens; the four tag tokens come
    on top. Deterministic for the same texts.
    """
    from tokenizers import pre_tokenizers, trainers  # noqa: PLC0415

    # Tags are single added tokens: keep them out of the merges so the vocabulary goes to real text.
    def clean(text: str) -> str:
        for t in (*SPECIAL_TOKENS, *TAG_TOKENS):
            text = text.replace(t, "\n")
        return text

    backend = _byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator((clean(t) for t in texts), trainer=trainer)
    return _wrap(backend)


def build_tiny_model(
    tokenizer: Any,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 2048,
) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` sized for ``tokenizer`` (tied embeddings, fp32, eval mode).

    ``intermediate_size`` defaults to ``2 * hidden_size``. The same ``seed`` gives the same weights.
    """
    import torch  # noqa: PLC0415
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM  # noqa: PLC0415

    if hidden_size % heads:
        raise ValueError(f"hidden_size={hidden_size} must be divisible by heads={heads}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model.eval()


def build_tiny_tokenizer(records: Sequence[Any] | None = None, vocab_size: int = 2048) -> Any:
    """:func:`train_tokenizer` on :func:`tiny_corpus` of ``records`` (default: the bundled tool-use data)."""
    if records is None:
        from pivot_envs import get_domain  # noqa: PLC0415

        records = get_domain("tool_use").load()
    return train_tokenizer(tiny_corpus(records), vocab_size=vocab_size)


def build_tiny(records: Sequence[Any] | None = None, *, vocab_size: int = 2048, **model_kwargs: Any) -> tuple[Any, Any]:
    """``(tokenizer, model)``: a tokenizer trained on ``records`` and a random tiny model for it."""
    tokenizer = build_tiny_tokenizer(records, vocab_size=vocab_size)
    return tokenizer, build_tiny_model(tokenizer, **model_kwargs)


def save_tiny(model: Any, tokenizer: Any, path: str | Path) -> Path:
    """Save as a normal checkpoint directory (safetensors + tokenizer + chat template) and return it.

    Load it back with ``HFPolicy.from_pretrained(path)`` or ``AutoModelForCausalLM.from_pretrained``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "pivotrl_tiny.json").write_text(json.dumps({"built_by": "agents.tiny", "vocab": len(tokenizer)}) + "\n")
    return path


def measure_tiny(tokenizer: Any, model: Any, records: Sequence[Any], *, rows: int = 32, new_tokens: int = 64,
                 seed: int = 0) -> dict[str, Any]:
    """CPU cost figures for a tiny model on ``records`` (for ``pivotrl bench`` and sizing the demo).

    Returns ``params``; ``prompt_tokens`` (median, p90, max over every state of ``records``, and the tools
    block alone); ``generate_tokens_per_s`` (``rows`` samples of ``new_tokens`` from real prompts, forced
    to run to ``new_tokens``); ``train_step_s`` (AdamW forward+backward+step, batch 8 x 256 tokens, median
    of 5).
    """
    import statistics  # noqa: PLC0415
    import time  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from agents.chat import encode, prompt_ids, render  # noqa: PLC0415

    recs = [_as_record(r) for r in records]
    lengths = sorted(
        len(prompt_ids(tokenizer, {"messages": msgs[:i], "tools": tools}))
        for msgs, tools in recs for i, m in enumerate(msgs) if m.get("role") == "assistant"
    )
    msgs, tools = recs[0]
    head = msgs[:1]
    tools_block = len(encode(tokenizer, render(tokenizer, head, tools))) - len(encode(tokenizer, render(tokenizer, head)))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        states = [{"messages": m[:i], "tools": t} for m, t in recs for i, x in enumerate(m) if x.get("role") == "assistant"]
        prompts = [prompt_ids(tokenizer, states[k % len(states)]) for k in range(rows)]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id)
        gen_s = time.perf_counter() - start

        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: measures the step, leaves the weights
        x = torch.randint(0, len(tokenizer), (8, 256), device=device)
        times = []
        for _ in range(6):
            start = time.perf_counter()
            model(input_ids=x, labels=x).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        model.train(was_training)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "prompt_tokens": {"median": lengths[len(lengths) // 2], "p90": lengths[int(0.9 * (len(lengths) - 1))],
                          "max": lengths[-1], "states": len(lengths), "tools_block": tools_block},
        "generate_tokens_per_s": rows * new_tokens / gen_s,
        "generate_setting": f"{rows} rows x {new_tokens} new tokens, prompts of ~{statistics.mean(len(p) for p in prompts):.0f} tokens",
        "train_step_s": statistics.median(times[1:]),
        "torch_threads": torch.get_num_threads(),
    }
