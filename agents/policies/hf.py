"""HFPolicy: a transformers causal LM as a policy, plus the per-token log-probabilities GRPO needs.

Prompts are rendered with the tokenizer's own chat template (:func:`agents.chat.prompt_ids`), left-padded
into batches and sampled with ``model.generate``. Each :class:`~agents.core.Sample` carries

* ``token_ids``: the generated tokens, up to and including the end-of-turn token when one was produced
  (a turn cut by ``max_new_tokens`` has none);
* ``text``: those tokens decoded, without the end-of-turn token;
* ``logprobs``: for each generated token, its log-probability under the model's *plain* softmax
  (temperature 1, no top-p/top-k truncation), whatever ``temperature``/``top_p`` the tokens were sampled
  with. That is log pi_theta(token | prefix), the quantity in the GRPO/PPO ratio, and
  :func:`sequence_logprobs` recomputes it (differentiably) for the trainer. TRL and verl instead divide
  the logits by the sampling temperature in both places; pass ``temperature=`` to
  :func:`sequence_logprobs` to get that convention, and note that Sample.logprobs stays plain.

How the plain log-probabilities are had without a second forward pass: generation runs with neutral
warpers, and one logits processor of ours, the only one in the list, first records ``log_softmax`` of
the raw logits and then applies temperature, top-k and top-p itself. Sampling-related defaults from the
checkpoint's ``generation_config`` (Qwen ships ``top_k=20``, ``repetition_penalty=1.05``) are overridden,
so the policy samples exactly the distribution its own fields state.

Reproducibility: each :meth:`HFPolicy.sample` call seeds torch with ``seed + k`` (k = how many calls this
policy has made, see :meth:`HFPolicy.reseed`) inside ``torch.random.fork_rng``, so the global RNG is left
as it was, two policies built with the same seed give the same samples call for call, and successive
calls differ. Samples depend on the batch layout (``batch_size``) as well as the seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor

from agents.chat import end_of_turn_ids, prompt_ids
from agents.core import Policy, Sample


@contextlib.contextmanager
def _no_loading_bars() -> Iterator[None]:
    """Hide transformers' "Loading weights" tqdm bars while a checkpoint loads.

    They would interleave with the CLI's own progress display (eval, train, the demo) and say nothing the
    caller needs; the previous setting is restored, so a user's own ``enable_progress_bar`` still holds.
    """
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class PromptTooLongError(ValueError):
    """A prompt plus ``max_new_tokens`` does not fit the model's context window."""

    def __init__(self, message: str, *, index: int, prompt_tokens: int, limit: int):
        super().__init__(message)
        self.index, self.prompt_tokens, self.limit = index, prompt_tokens, limit


class _WarpAndRecord(LogitsProcessor):
    """Records plain log-probabilities of the sampled tokens, then applies the sampling warpers.

    ``generate`` calls processors with the raw logits of the next position; the token sampled at step s is
    the last column of ``input_ids`` at step s+1, so each call gathers the previous step's token and keeps
    only one step of log-softmax (B x V), not the whole history.
    """

    def __init__(self, temperature: float, top_k: int, top_p: float):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper  # noqa: PLC0415

        self.warpers: list[Any] = []
        if temperature > 0 and temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(temperature))
        if top_k > 0:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.previous: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """(B, new_tokens) plain log-probabilities of the generated tokens."""
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, sequences[:, -1:]).squeeze(1))
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(sequences.shape[0], 0)


class HFPolicy(Policy):
    """A transformers causal LM + tokenizer as a :class:`~agents.core.Policy`.

    Args:
        model: A ``*ForCausalLM`` model.
        tokenizer: Its tokenizer, with a chat template.
        temperature: Sampling temperature; 0 means greedy decoding (every one of the ``n`` samples is the same).
        top_p: Nucleus sampling mass (1.0 = off).
        top_k: Keep the k most likely tokens (0 = off).
        max_new_tokens: Budget per turn; a turn that runs out has no end-of-turn token.
        seed: Base seed (see the module docstring).
        batch_size: Rows (prompts x samples) per ``generate`` call.
        reasoning: ``"drop"`` or ``"keep"`` ``reasoning_content`` of past turns in prompts.
        name: Display name (default ``"hf:<model name>"``).
        autocast: A dtype (``torch.bfloat16``) to run generation under ``torch.autocast`` with, so float32
            weights sample at bf16 speed (the trainer's ``bf16=true``); None = the weights' own dtype.

    >>> from agents.tiny import build_tiny                     # doctest: +SKIP
    >>> policy = HFPolicy(*reversed(build_tiny()), max_new_tokens=16)  # doctest: +SKIP
    >>> [[s]] = policy.sample([{"messages": [{"role": "user", "content": "Hi"}], "tools": []}])  # doctest: +SKIP
    >>> len(s.token_ids) == len(s.logprobs) <= 16              # doctest: +SKIP
    True
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_new_tokens: int = 256,
        seed: int = 0,
        batch_size: int = 32,
        reasoning: str = "drop",
        name: str | None = None,
        autocast: torch.dtype | None = None,
    ):
        if temperature < 0:
            raise ValueError(f"temperature={temperature}; expected >= 0 (0 = greedy)")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p}; expected 0 < top_p <= 1")
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens}, batch_size={batch_size}; both must be >= 1")
        self.model, self.tokenizer = model, tokenizer
        self.temperature, self.top_p, self.top_k = float(temperature), float(top_p), int(top_k)
        self.max_new_tokens, self.batch_size, self.reasoning = int(max_new_tokens), int(batch_size), reasoning
        self.autocast = autocast
        self.end_ids = end_of_turn_ids(tokenizer)
        for i in _as_list(getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
            if i not in self.end_ids:
                self.end_ids.append(int(i))
        if not self.end_ids:
            raise ValueError("the tokenizer has no eos or end-of-turn token; generation would never stop a turn")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.end_ids[0]
        self.name = name or f"hf:{getattr(model.config, '_name_or_path', '') or type(model).__name__}"
        self.reseed(seed)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | Path, *, device: str | torch.device | None = None, dtype: Any = None, **kwargs: Any
    ) -> HFPolicy:
        """Load a checkpoint directory or hub id (model + tokenizer with its chat template).

        ``device`` (None or ``"auto"``) defaults to CUDA when available, else CPU; ``dtype`` defaults to float32 on CPU and the
        checkpoint's own dtype (``"auto"``) elsewhere. Other keyword arguments go to :class:`HFPolicy`.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

        kwargs.setdefault("name", f"hf:{path_or_id}")
        local = Path(path_or_id).expanduser()
        if not local.exists() and str(path_or_id).startswith(("/", "./", "../", "~", ".\\")):
            raise OSError(f"could not load model {str(path_or_id)!r}: no such checkpoint directory")
        if local.exists():
            path_or_id = local
        if device in (None, "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if dtype is None:
            dtype = torch.float32 if device.type == "cpu" else "auto"
        try:
            with _no_loading_bars():
                tokenizer = AutoTokenizer.from_pretrained(str(path_or_id))
                model = AutoModelForCausalLM.from_pretrained(str(path_or_id), dtype=dtype)
        except OSError as exc:
            raise OSError(
                f"could not load model {str(path_or_id)!r}: {exc}. Pass a local checkpoint directory (e.g. one "
                "written by agents.tiny.save_tiny or save_pretrained), or a hub id on a machine that can reach "
                "the hub (offline, set HF_HUB_OFFLINE=1 to fail fast instead of retrying)."
            ) from exc
        return cls(model.to(device).eval(), tokenizer, **kwargs)

    def reseed(self, seed: int) -> None:
        """Restart the per-call seed sequence at ``seed`` (the next call uses ``seed``, then ``seed + 1``, ...)."""
        self.seed, self._calls = int(seed), 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- sampling -----------------------------------------------------------------------------------

    def prompt_ids(self, observation: Mapping[str, Any]) -> list[int]:
        """The prompt tokens this policy samples from for ``observation``."""
        return prompt_ids(self.tokenizer, observation, reasoning=self.reasoning)

    def sample(
        self, observations: Sequence[Mapping[str, Any]], n: int = 1, infos: Sequence[Mapping[str, Any]] | None = None
    ) -> list[list[Sample]]:
        """``n`` sampled assistant turns per observation, with token ids and plain log-probabilities."""
        prompts = [self.prompt_ids(obs) for obs in observations]
        generated = self.generate(prompts, n)
        return [[self._to_sample(ids, lps) for ids, lps in rows] for rows in generated]

    def generate(self, prompts: Sequence[Sequence[int]], n: int = 1) -> list[list[tuple[list[int], list[float]]]]:
        """``n`` completions ``(token_ids, logprobs)`` for each prompt (token ids of a rendered prompt)."""
        if n < 1:
            raise ValueError(f"n={n}; expected >= 1")
        limit = getattr(self.model.config, "max_position_embeddings", None)
        for i, p in enumerate(prompts):
            if limit and len(p) + self.max_new_tokens > limit:
                raise PromptTooLongError(
                    f"prompt {i} has {len(p)} tokens; with max_new_tokens={self.max_new_tokens} that exceeds the "
                    f"model's {limit} positions. Shorten the prompt (fewer or compact tools, truncated tool "
                    "outputs) or lower max_new_tokens.", index=i, prompt_tokens=len(p), limit=limit)
        greedy = self.temperature == 0
        rows = [(i, p) for i, p in enumerate(prompts) for _ in range(1 if greedy else n)]
        out: list[list[tuple[list[int], list[float]]]] = [[] for _ in prompts]
        seed = self.seed + self._calls
        self._calls += 1
        was_training = self.model.training
        self.model.eval()
        device = self.device
        try:
            with (torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
                  torch.autocast(device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None)):
                torch.manual_seed(seed)
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start: start + self.batch_size]
                    for (i, _), result in zip(chunk, self._generate_batch([p for _, p in chunk]), strict=True):
                        out[i].append(result)
        finally:
            self.model.train(was_training)
        if greedy:
            out = [results * n for results in out]
        return out

    @torch.inference_mode()
    def _generate_batch(self, prompts: Sequence[Sequence[int]]) -> list[tuple[list[int], list[float]]]:
        from transformers import GenerationConfig  # noqa: PLC0415

        input_ids, attention_mask = _left_pad(prompts, self.pad_id, self.device)
        recorder = _WarpAndRecord(self.temperature, self.top_k, self.top_p)
        sampling = self.temperature > 0
        # Neutral values override the checkpoint's generation_config, so no other processor or warper
        # changes the distribution (min_p=0 leaves a no-op warper; None would let a checkpoint's min_p in).
        neutral = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, epsilon_cutoff=0.0,
                       eta_cutoff=0.0) if sampling else {}
        config = GenerationConfig(
            do_sample=sampling, max_new_tokens=self.max_new_tokens, eos_token_id=self.end_ids,
            pad_token_id=self.pad_id, bos_token_id=None, repetition_penalty=1.0, no_repeat_ngram_size=0,
            num_beams=1, num_return_sequences=1, min_new_tokens=0, renormalize_logits=False, **neutral,
        )
        sequences = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
            logits_processor=[recorder],
        )
        new = sequences[:, input_ids.shape[1]:]
        logprobs = recorder.finish(sequences)
        results = []
        for ids, lps in zip(new.tolist(), logprobs.tolist(), strict=True):
            end = next((j + 1 for j, t in enumerate(ids) if t in self.end_ids), len(ids))
            results.append((ids[:end], lps[:end]))
        return results

    def _to_sample(self, ids: list[int], logprobs: list[float]) -> Sample:
        body = ids[:-1] if ids and ids[-1] in self.end_ids else ids
        text = self.tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return Sample(text=text, token_ids=tuple(ids), logprobs=tuple(logprobs))

    # -- identity -----------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 of what determines this policy's samples, for profiling cache keys.

        Covers the model config, every parameter and buffer in the state dict (name, dtype, shape, bytes),
        the tokenizer (vocabulary, merges, special tokens, chat template) and the sampling settings
        (temperature, top_p, top_k, max_new_tokens, reasoning, autocast dtype). Not the seed or batch size:
        they change which samples are drawn, not their distribution. Training the model changes the fingerprint.
        Costs one pass over the weights (about a second per GB).
        """
        h = hashlib.sha256()
        config = self.model.config.to_dict()
        config.pop("transformers_version", None)
        config.pop("_name_or_path", None)
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        for name, tensor in self.model.state_dict().items():
            t = tensor.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        h.update((backend.to_str() if backend is not None else json.dumps(self.tokenizer.get_vocab(), sort_keys=True)).encode())
        h.update(str(self.tokenizer.chat_template).encode())
        h.update(json.dumps([self.temperature, self.top_p, self.top_k, self.max_new_tokens, self.reasoning]).encode())
        if self.autocast is not None:  # bf16 sampling draws from a slightly different distribution
            h.update(f"autocast|{self.autocast}".encode())
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Log-probabilities of given completions (the trainer's side of the GRPO ratio)


def completion_logprobs(
    model: Any,
    prompt_ids_batch: Sequence[Sequence[int]],
    completion_ids_batch: Sequence[Sequence[int]],
    *,
    temperature: float = 1.0,
    pad_id: int = 0,
    split_by_prompt_length: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of completions given prompts, batched and differentiable.

    Lays rows out as generation does (prompt left-padded to P, completion right-padded to C, position ids
    from the attention mask) and keeps only the last C+1 positions' logits, so long prompts cost no
    B x P x V logits.

    ``split_by_prompt_length`` runs one forward pass per distinct prompt length, so no row has left
    padding (default: on when gradients are taken on CUDA). Why: on an H100 with bf16 autocast, GRPO
    micro-batches that mixed two prompt lengths gave a finite loss but a NaN gradient norm (3 of 8
    steps of an 87M Llama, in two runs); with the split, 6 steps of 32 mixed micro-batches each stayed
    finite. A left-pad position attends to nothing (a fully masked attention row), the suspected source;
    a small unit test did not reproduce it, so the exact kernel condition is not pinned down. GRPO
    micro-batches hold the G samples of few states, so the split costs one or two extra passes at most.

    Returns:
        ``(logprobs, mask)``, both (B, C) on the model's device: ``logprobs[b, j]`` is
        log softmax(logits / temperature) of completion token j of row b; 0 where ``mask`` is 0 (padding).
    """
    if len(prompt_ids_batch) != len(completion_ids_batch):
        raise ValueError(f"{len(prompt_ids_batch)} prompts but {len(completion_ids_batch)} completions")
    device = next(model.parameters()).device
    if split_by_prompt_length is None:
        split_by_prompt_length = torch.is_grad_enabled() and device.type == "cuda"
    lengths = sorted({len(p) for p in prompt_ids_batch})
    if split_by_prompt_length and len(lengths) > 1:
        C = max(len(c) for c in completion_ids_batch)
        logprobs = torch.zeros(len(prompt_ids_batch), C, device=device)
        mask = torch.zeros(len(prompt_ids_batch), C, dtype=torch.long, device=device)
        for n in lengths:
            rows = [b for b, p in enumerate(prompt_ids_batch) if len(p) == n]
            lp, m = completion_logprobs(model, [prompt_ids_batch[b] for b in rows],
                                        [completion_ids_batch[b] for b in rows], temperature=temperature,
                                        pad_id=pad_id, split_by_prompt_length=False)
            index = torch.tensor(rows, device=device)
            logprobs = logprobs.index_copy(0, index, torch.nn.functional.pad(lp, (0, C - lp.shape[1])))
            mask = mask.index_copy(0, index, torch.nn.functional.pad(m, (0, C - m.shape[1])))
        return logprobs, mask
    B = len(prompt_ids_batch)
    P = max((len(p) for p in prompt_ids_batch), default=0)
    C = max((len(c) for c in completion_ids_batch), default=0)
    if B == 0 or C == 0:
        return torch.zeros(B, C, device=device), torch.zeros(B, C, dtype=torch.long, device=device)
    if any(len(p) == 0 for p in prompt_ids_batch):
        raise ValueError("every prompt needs at least one token (the first completion token is predicted from it)")
    input_ids = torch.full((B, P + C), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(B, P + C, dtype=torch.long)
    for b, (p, c) in enumerate(zip(prompt_ids_batch, completion_ids_batch, strict=True)):
        input_ids[b, P - len(p): P] = torch.as_tensor(list(p), dtype=torch.long)
        input_ids[b, P: P + len(c)] = torch.as_tensor(list(c), dtype=torch.long)
        attention_mask[b, P - len(p): P + len(c)] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       logits_to_keep=C + 1).logits                   # (B, C+1, V)
    except TypeError:  # models without logits_to_keep
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    logits = logits[:, -(C + 1): -1].float()                          # (B, C, V): position P-1+j predicts token P+j
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, P:]                                        # (B, C)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = attention_mask[:, P:]
    return logprobs * mask, mask


def sequence_logprobs(
    model: Any,
    prompt_ids_batch: Sequence[Sequence[int]],
    completion_ids_batch: Sequence[Sequence[int]],
    *,
    temperature: float = 1.0,
    pad_id: int = 0,
    split_by_prompt_length: bool | None = None,
) -> list[torch.Tensor]:
    """Per-token log-probabilities of each completion: a list of B 1-D tensors, row b of length
    ``len(completion_ids_batch[b])``, differentiable (see :func:`completion_logprobs` for the padded form).

    With ``temperature=1`` this recomputes :attr:`Sample.logprobs` of :class:`HFPolicy` samples.
    """
    logprobs, _ = completion_logprobs(model, prompt_ids_batch, completion_ids_batch, temperature=temperature,
                                      pad_id=pad_id, split_by_prompt_length=split_by_prompt_length)
    return [logprobs[b, : len(c)] for b, c in enumerate(completion_ids_batch)]


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for b, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {b} is empty")
        input_ids[b, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        attention_mask[b, width - len(p):] = 1
    return input_ids.to(device), attention_mask.to(device)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
