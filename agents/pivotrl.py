"""PivotRL: profile -> filter -> single-turn GRPO on pivots. One readable file, top to bottom.

    pivotrl train --config examples/pivotrl_gpu.toml [--set key=value ...]
    accelerate launch --num_processes 8 -m agents.cli train --config ...   # data-parallel on 8 GPUs

1. The frozen starting policy pi_0 samples K actions at every candidate state; the verifier scores them
   (:mod:`agents.profile`, cached and resumable). Pivots = states with reward variance > 0 and mean
   below ``lambda_diff``.
2. Each step draws ``pivots_per_step`` pivots, restores each state, samples G actions from the current
   policy (a local rollout: ONE assistant turn, then stop), and scores them with the verifier.
3. Advantages are group-normalised (or leave-one-out); a malformed action gets ``invalid_advantage``.
4. Loss: PPO-style clipped ratio per token, averaged over all completion tokens of the step (token-level
   loss), optional k3 KL to the reference; one optimizer step per rollout batch.

Who samples (``sampler``): ``hf`` generates with the trained model itself; ``vllm`` runs an in-process
vLLM engine (:class:`~agents.policies.vllm.VLLMPolicy`) for profiling and rollouts, and the trainer copies
its weights into the engine after every optimizer step. The "old" log-probabilities of the ratio are
always the sampler's own per-token log-probabilities of the sampled tokens (plain softmax, temperature 1),
so with vLLM they come from vLLM's forward pass, not from the trained model: the ratio then also absorbs
the small numerical gap between the two engines (bf16 kernels on GPU), as in other vLLM-backed GRPO
trainers. Where a sample carries none, they are recomputed with the trained model before the update.

Precision (``bf16``): weights and AdamW state stay float32 (a bf16 weight cannot take a 1e-6 step);
sampling and the loss's forward pass run under ``torch.autocast(bfloat16)`` (on CUDA, and on CPU where
torch supports it). vLLM is given bfloat16 weights on GPU.

Several processes (``distributed=true``, or automatically under ``accelerate launch``/``torchrun``): the
model and optimizer go through ``accelerate.Accelerator.prepare`` (DDP: gradients are averaged across
ranks, and the loss is scaled so the result is the token-level mean over every rank's tokens). Rank 0
profiles and broadcasts the pivots; each step every rank draws the same pivots (seeded by step), keeps
its share (``chosen[rank::world]``), restores, samples and verifies those, and the metrics are gathered
over all ranks. Rank 0 writes metrics, TensorBoard, W&B and checkpoints. The single-process path is
unchanged and imports no accelerate. (Profiling on rank 0 alone leaves the other GPUs idle meanwhile; the
collective timeout is 6 hours so they wait for it.)

Deviations from the paper, stated: re-profiling is optional (every N steps or when the batch reward std
collapses) as in NVIDIA's production runs; the CPU config uses a tiny model and a higher learning rate
than the paper's 1e-6 so that two cores show learning in minutes; with several processes the pivot count
per step is rounded down to a multiple of the world size; ``sampler=vllm`` runs single-process only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.distributed import StatePool, VerifyRequest, make_verifier_pool
from agents.profile import FilterConfig, NoPivotsError, ProfileConfig, profile, select_pivots, write_report
from pivot_envs.actions import Action
from pivot_envs.core import TrajectoryEnv
from pivot_envs.trajectory import Candidate


@dataclass
class TrainConfig:
    """Every knob of a PivotRL run. Loadable from TOML/YAML; ``--set key=value`` overrides."""

    model: str = ""
    """Policy weights: a local path or hub id (``transformers`` format)."""
    domain: str = "tool_use"
    """Registered domain (its bundled data is used when ``trajectories`` is empty)."""
    trajectories: str = ""
    """JSONL of trajectory records; empty = the domain's bundled data."""
    max_trajectories: int = 0
    """Use only the first N trajectories (0 = all)."""
    verifier: str = ""
    """Verifier name; empty = the domain's default."""
    ray: str = ""
    """Restore and verify states on Ray actors: ``auto`` or a cluster address; empty = in-process."""
    out_dir: str = "runs/pivotrl"
    seed: int = 0

    # profiling and the pivot filter (PIVOTRL.md stage 2)
    profile_k: int = 8
    lambda_diff: float = 0.6
    band_lo: float = -1.0
    """With ``band_hi``, keep pivots whose mean lies in [band_lo, band_hi] instead (-1 = unused)."""
    band_hi: float = -1.0
    max_pivots: int = 0
    """Cap on the pivot count (0 = no cap); the easiest are dropped first."""
    random_turns: bool = False
    """Ablation: train on random candidate turns instead of pivots."""
    reprofile_every: int = 0
    """Re-profile with the current policy every N steps (0 = never)."""
    reprofile_std_below: float = 0.0
    """Re-profile when the batch reward std falls below this (0 = never)."""

    # GRPO (NVIDIA's recipes: 64 pivots x 16 samples, lr 1e-6, clip 0.2/0.28, no KL)
    steps: int = 20
    pivots_per_step: int = 8
    group_size: int = 8
    advantage: str = "group"
    """``group`` (mean/std over the G samples) or ``loo`` (leave-one-out baseline)."""
    lr: float = 1e-6
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_coef: float = 0.0
    invalid_advantage: float = -5.0
    """Advantage given to malformed actions (unparsable tool calls)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (pivots are split evenly)."""
    max_grad_norm: float = 1.0
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    generation_batch_size: int = 32
    """Rows (states x samples) per ``generate`` call of the HF sampler; raise it on a GPU."""
    overlap_verification: bool = True
    """Sample a step's pivots in chunks of ``generation_batch_size`` rows and verify each chunk while the
    next is sampled (same weights: within one step only); false = one sampling call, then verification."""
    profile_states_per_batch: int = 4
    """Candidate states sampled in one policy call while profiling (x ``profile_k`` rows)."""
    bf16: bool = False
    """bfloat16 autocast for sampling and the loss's forward pass; weights and optimizer stay float32."""
    device: str = "auto"
    sampler: str = "hf"
    """Who samples profiling and rollout turns: ``hf`` (the trained model, transformers ``generate``) or
    ``vllm`` (an in-process vLLM engine synced after every optimizer step; needs vLLM installed)."""
    vllm_gpu_memory: float = 0.4
    """Share of the GPU's memory the vLLM engine may take (GPU only); the trained model needs the rest."""
    distributed: bool = False
    """Data-parallel training through accelerate (on by itself under ``accelerate launch``/``torchrun``)."""
    checkpoint_every: int = 10
    """Save a checkpoint every N steps (and at the end); training resumes from the latest."""
    tensorboard: bool = True
    """Also write the metrics as TensorBoard logs to ``out_dir/tensorboard``."""
    wandb_project: str = ""
    """Also log metrics to this Weights & Biases project (``pip install wandb``; not a dependency)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model is required: a local checkpoint path or hub id (set model=... in the config)")
        if self.advantage not in ("group", "loo"):
            raise ValueError(f"advantage={self.advantage!r}: use 'group' or 'loo'")
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size}: GRPO needs at least 2 samples per pivot")
        if self.pivots_per_step % self.grad_accum:
            raise ValueError(f"pivots_per_step={self.pivots_per_step} must be divisible by grad_accum={self.grad_accum}")
        if not (0 < self.clip_low < 1 and 0 < self.clip_high):
            raise ValueError("clip_low must be in (0, 1) and clip_high > 0 (defaults 0.2 / 0.28)")
        if (self.band_lo < 0) != (self.band_hi < 0):
            raise ValueError("set both band_lo and band_hi, or neither")
        if self.profile_k < 2:
            raise ValueError("profile_k must be >= 2 (variance needs two samples)")
        if self.sampler not in ("hf", "vllm"):
            raise ValueError(f"sampler={self.sampler!r}: use 'hf' (transformers generate) or 'vllm' (vLLM engine)")
        if not 0 < self.vllm_gpu_memory <= 1:
            raise ValueError(f"vllm_gpu_memory={self.vllm_gpu_memory}: a share of GPU memory in (0, 1]")
        if self.wandb_project and not _importable("wandb"):
            raise ValueError(f"wandb_project={self.wandb_project!r} but the wandb package is not installed: "
                             "`pip install wandb` (and `wandb login`), or leave wandb_project empty")
        if self.distributed and not _importable("accelerate"):
            raise ValueError("distributed=true needs accelerate, which is not installed: "
                             "pip install 'pivotrl[train]' (or pip install accelerate)")

    @property
    def filter(self) -> FilterConfig:
        band = (self.band_lo, self.band_hi) if self.band_lo >= 0 else None
        return FilterConfig(lambda_diff=self.lambda_diff, band=band, cap=self.max_pivots or None,
                            random_turns=self.random_turns, seed=self.seed)


def _importable(name: str) -> bool:
    return name in sys.modules or importlib.util.find_spec(name) is not None


# ---------------------------------------------------------------------------------------------------
# The math


def group_advantages(rewards: torch.Tensor, mode: str = "group", eps: float = 1e-6) -> torch.Tensor:
    """Advantages for rewards of shape (P, G): P pivots, G samples each.

    ``group``: (r - mean) / (std + eps) over each row; a row with equal rewards gets 0 (no gradient,
    Proposition 3.1). ``loo``: r_i - mean of the other G-1 rewards.
    """
    if mode == "group":
        mean = rewards.mean(dim=1, keepdim=True)
        std = rewards.std(dim=1, keepdim=True, unbiased=False)
        return (rewards - mean) / (std + eps)
    g = rewards.shape[1]
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
    return rewards - others


def policy_loss(
    new_logp: torch.Tensor,  # (T,) log pi_theta of each completion token, all sequences concatenated
    old_logp: torch.Tensor,  # (T,) log pi_old (the sampling policy), no grad
    advantages: torch.Tensor,  # (T,) the sequence's advantage repeated on each of its tokens
    clip_low: float,
    clip_high: float,
    ref_logp: torch.Tensor | None = None,  # (T,) log pi_ref, when a KL penalty is used
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-level clipped surrogate (summed; the caller divides by the step's token count).

    The log-ratio is clamped to +-20 before ``exp``: an overflowing ratio (inf) would make the gradient
    0 * inf = NaN even where the clip selects the constant branch. Such a token is far outside the clip
    range either way, so it gives no gradient, as it would under the clip.
    """
    ratio = torch.exp((new_logp - old_logp).clamp(-20.0, 20.0))
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * advantages
    loss = -torch.minimum(unclipped, clipped)
    stats = {"clip_fraction": float(((ratio < 1 - clip_low) | (ratio > 1 + clip_high)).float().mean())}
    if ref_logp is not None and kl_coef > 0:
        # k3 estimator of KL(pi_theta || pi_ref): exp(ref - new) - (ref - new) - 1 >= 0
        delta = ref_logp - new_logp
        kl = torch.exp(delta) - delta - 1
        loss = loss + kl_coef * kl
        stats["kl"] = float(kl.mean())
    return loss.sum(), stats


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(out: Path, step: int, policy: Any, optimizer: torch.optim.Optimizer, pivots: list[dict]) -> Path:
    """Atomically write ``out/checkpoints/step-N`` (weights, tokenizer, optimizer, RNG states, pivots)."""
    final = out / "checkpoints" / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    policy.model.save_pretrained(tmp, safe_serialization=True)
    policy.tokenizer.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(), "python_rng": random.getstate()}, tmp / "trainer_state.pt")
    (tmp / "pivots.json").write_text(json.dumps(pivots))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


# ---------------------------------------------------------------------------------------------------
# The loop


def _device(cfg: TrainConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_bf16(device: str) -> None:
    """bf16 autocast must work where the model runs; say so before a long run starts, not inside it."""
    kind = device.split(":")[0]
    try:
        with torch.autocast(kind, dtype=torch.bfloat16):
            x = torch.ones(2, 2, device=device)
            ok = (x @ x).dtype == torch.bfloat16
    except (RuntimeError, AssertionError) as exc:
        raise ValueError(f"bf16=true, but torch {torch.__version__} cannot autocast to bfloat16 on {device!r} "
                         f"({exc}); set bf16=false (float32) or run on a CUDA GPU") from exc
    if not ok:
        raise ValueError(f"bf16=true, but bfloat16 autocast on {device!r} did not run matrix products in "
                         "bfloat16 here; set bf16=false (float32) or run on a CUDA GPU")


def _accelerator(cfg: TrainConfig, device: str) -> Any:
    """An ``accelerate.Accelerator`` when asked for or launched with several processes; else None."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not (cfg.distributed or launched):
        return None
    try:
        from accelerate import Accelerator  # noqa: PLC0415 - only the multi-process path needs it
    except ImportError as exc:
        raise ImportError("several processes (distributed=true or WORLD_SIZE > 1) need accelerate: "
                          "pip install 'pivotrl[train]'") from exc
    if cfg.sampler == "vllm" and launched:
        raise NotImplementedError("sampler=vllm runs in one process only (one engine per rank is not wired); "
                                  "use sampler=hf with several processes, or one process with vLLM")
    from datetime import timedelta  # noqa: PLC0415

    from accelerate.utils import InitProcessGroupKwargs  # noqa: PLC0415

    # Our own autocast (bf16) wraps the same forward passes as in one process, so accelerate adds none.
    # Ranks 1.. wait in a collective while rank 0 profiles, which can take far longer than the default
    # collective timeout (10 min for NCCL); hence a long one.
    return Accelerator(cpu=device == "cpu", mixed_precision="no",
                       kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=6))])


def _vllm_sampler(cfg: TrainConfig, path: str, tokenizer: Any, device: str) -> Any:
    from agents.policies.vllm import VLLMPolicy  # noqa: PLC0415 - vLLM lives in its own environment

    engine: dict[str, Any] = {}
    if device.startswith("cuda"):
        engine = {"gpu_memory_utilization": cfg.vllm_gpu_memory, "dtype": "bfloat16" if cfg.bf16 else "float32"}
    return VLLMPolicy(path, tokenizer=tokenizer, temperature=cfg.temperature, top_p=cfg.top_p,
                      max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, name=f"vllm:{path}", **engine)


def _profile_pivots(cfg: TrainConfig, env: TrajectoryEnv, policy: Any, tag: str, log: Any,
                    pool: StatePool | None = None) -> tuple[list[dict], dict]:
    pcfg = ProfileConfig(k=cfg.profile_k, seed=cfg.seed, verifier=cfg.verifier or None,
                         states_per_batch=cfg.profile_states_per_batch, pipeline=cfg.overlap_verification)
    result = profile(env, policy, Path(cfg.out_dir) / "profile", pcfg, pool=pool,
                     on_batch=lambda done, total: log(f"profiling ({tag}): batch {done}/{total}"))
    summary = write_report(result, cfg.lambda_diff)
    pivots = select_pivots(result.rows, cfg.filter)
    return pivots, {"summary": summary, "seconds": result.seconds, "tokens": result.generated_tokens,
                    "sandbox_seconds": result.sandbox_seconds, "turns": len(result.rows) * cfg.profile_k,
                    "directory": str(result.directory)}


def _profile_on_main(accel: Any, cfg: TrainConfig, env: TrajectoryEnv, policy: Any, tag: str, log: Any,
                     pool: StatePool) -> tuple[list[dict], dict]:
    """Profile on rank 0 (one cache directory, one report) and hand every rank the same pivots."""
    if accel is None:
        return _profile_pivots(cfg, env, policy, tag, log, pool)
    from accelerate.utils import broadcast_object_list  # noqa: PLC0415

    box: list[Any] = [None]
    if accel.is_main_process:
        box = [_profile_pivots(cfg, env, policy, tag, log, pool)]
    broadcast_object_list(box, from_process=0)
    return box[0]


# Reductions over ranks; each is the identity in one process.
def _sum(accel: Any, x: float) -> float:
    return x if accel is None else float(accel.reduce(torch.tensor(float(x), device=accel.device), "sum"))


def _max(accel: Any, x: float) -> float:
    return x if accel is None else float(accel.gather(torch.tensor([float(x)], device=accel.device)).max())


def _gather_rows(accel: Any, t: torch.Tensor) -> torch.Tensor:
    return t if accel is None else accel.gather(t.to(accel.device)).cpu()


def _gather_counts(accel: Any, counts: Counter) -> Counter:
    if accel is None:
        return counts
    from accelerate.utils import gather_object  # noqa: PLC0415

    total: Counter = Counter()
    for c in gather_object([dict(counts)]):
        total.update(c)
    return total


EvalCallback = Callable[[int, Any, dict[str, float]], bool | None]
"""``on_eval(step, policy, compute)``: evaluate ``policy`` (an :class:`~agents.policies.hf.HFPolicy` around the
model being trained) after ``step`` optimizer steps; ``compute`` is the rollout turns, generated tokens and
wall-clock seconds spent so far (evaluation time left out). Returning True stops training there."""


def train(cfg: TrainConfig, log: Any = print, on_eval: EvalCallback | None = None,
          eval_every: int = 0) -> dict[str, Any]:
    """Run PivotRL; returns the final metrics and compute accounting. Resumes from the latest checkpoint.

    ``on_eval`` (one process only) is called after profiling (step 0), every ``eval_every`` steps and after
    the last step, for accuracy-versus-compute curves; the seconds it takes are not counted as training.
    """
    from agents.policies.hf import HFPolicy, sequence_logprobs

    wall_start = time.perf_counter()
    eval_s = 0.0  # seconds spent in on_eval

    def evaluate(step_done: int) -> bool:
        nonlocal eval_s
        t = time.perf_counter()
        stop = on_eval(step_done, policy, {**accounting, "wall_clock_s": t - wall_start - eval_s})
        eval_s += time.perf_counter() - t
        return bool(stop)

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = _device(cfg)
    accel = _accelerator(cfg, device)
    if accel is not None:
        device = str(accel.device)  # cuda:LOCAL_RANK under a launcher
    rank, world = (accel.process_index, accel.num_processes) if accel is not None else (0, 1)
    is_main = rank == 0
    if on_eval is not None and accel is not None:
        raise NotImplementedError("on_eval runs in one process only")
    if not is_main:
        log = _quiet
    if cfg.bf16:
        _check_bf16(device)
    amp = torch.bfloat16 if cfg.bf16 else None
    if is_main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    env = TrajectoryEnv(cfg.trajectories or None, domain=cfg.domain, verifier=cfg.verifier or None)
    if cfg.max_trajectories:
        keep = env.ids[: cfg.max_trajectories]
        env = TrajectoryEnv([env.trajectories[i] for i in keep], domain=cfg.domain, verifier=cfg.verifier or None)
    # Restoring and verifying states: in-process on env, or on Ray actors with their own sandboxes.
    pool = make_verifier_pool(env, ray_address=cfg.ray or None)

    checkpoints = _checkpoints(out)
    resume = checkpoints[-1] if checkpoints else None
    # float32 master weights whatever the checkpoint's dtype: bf16 is autocast, never the stored weights.
    policy = HFPolicy.from_pretrained(str(resume or cfg.model), device=device, dtype=torch.float32,
                                      max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                      top_p=cfg.top_p, batch_size=cfg.generation_batch_size, autocast=amp)
    model = policy.model  # the module that is trained; policy.model stays the bare module (generate, save)
    ref_model = None
    if cfg.kl_coef > 0:
        ref_model = HFPolicy.from_pretrained(cfg.model, device=device, dtype=amp or torch.float32).model.eval()
        ref_model.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sampler = policy if cfg.sampler == "hf" else _vllm_sampler(cfg, str(resume or cfg.model), policy.tokenizer, device)
    accounting = {"rollout_turns": 0, "generated_tokens": 0, "sandbox_seconds": 0.0}

    if resume is not None:
        state = torch.load(resume / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        start_step = state["step"]
        pivots = json.loads((resume / "pivots.json").read_text())
        log(f"resuming from {resume} at step {start_step}")
    else:
        start_step = 0
        pivots, info = _profile_on_main(accel, cfg, env, sampler, "pi_0", log, pool)
        accounting["rollout_turns"] += info["turns"]
        accounting["sandbox_seconds"] += info.get("sandbox_seconds", 0.0)
        accounting["generated_tokens"] += info["tokens"]
        s = info["summary"]
        log(f"profiled {s['states']} states: zero-variance {s['zero_variance_share']:.1%}, "
            f"{len(pivots)} pivots ({s['pivot_yield']:.1%} yield), report in {info['directory']}")
        if on_eval is not None:
            evaluate(0)  # the starting policy after profiling (even without pivots; cannot stop the run)
    if not pivots:
        raise NoPivotsError("no pivots: every profiled state had zero reward variance. Check the verifier "
                           "(profile report) or raise temperature / profile_k; random_turns=true trains anyway.")
    if accel is not None:
        model, optimizer = accel.prepare(model, optimizer)  # DDP across ranks; after the optimizer state loaded
    stop = False

    metrics_path = out / "metrics.jsonl"
    if is_main:
        _truncate_metrics(metrics_path, start_step)
    writer = tensorboard_writer(out) if cfg.tensorboard and is_main else None
    wandb_run = _wandb(cfg, out, start_step) if cfg.wandb_project and is_main else None
    last: dict[str, Any] = {}
    skipped_steps = 0
    for step in range(start_step, cfg.steps):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, step])  # the batch depends on (seed, step) only: exact resume
        size = min(cfg.pivots_per_step, len(pivots))
        size -= size % world  # every rank gets the same share, so every rank runs the same micro-batches
        if size == 0:
            raise RuntimeError(f"{len(pivots)} pivot(s) cannot be shared by {world} processes; "
                               "use fewer processes or keep more pivots")
        chosen = [pivots[i] for i in rng.choice(len(pivots), size=size, replace=False)][rank::world]
        cands = [Candidate(p["trajectory_id"], p["turn"], Action(), 0) for p in chosen]

        # -- rollout: one assistant turn per sample from each pivot state, then verification. Prompts come
        # from the records (no restore); the pool restores each state once, to verify. Pivots go in chunks
        # of generation_batch_size rows: one thread verifies chunk c while chunk c + 1 is sampled, all with
        # this step's weights (nothing overlaps the optimizer step). Chunk 0 keeps the step's seed.
        states = [(c.trajectory_id, c.turn) for c in cands]
        pairs = [env.observation(tid, turn) for tid, turn in states]
        observations, infos = [obs for obs, _ in pairs], [info for _, info in pairs]
        t_env = time.perf_counter() - t0
        model.eval()
        per_chunk = max(1, cfg.generation_batch_size // cfg.group_size) if cfg.overlap_verification else len(states)
        groups, verifying, t_gen, t2 = [], [], 0.0, time.perf_counter()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pivotrl-verify") as verifier:
            for c, lo in enumerate(range(0, len(states), per_chunk)):
                sampler.reseed(cfg.seed * 1_000_003 + step + rank * 7_919 + c * 2**32)
                t1 = time.perf_counter()
                chunk = sampler.sample(observations[lo : lo + per_chunk], n=cfg.group_size,
                                       infos=infos[lo : lo + per_chunk])
                t_gen += time.perf_counter() - t1
                groups += chunk
                verifying.append(verifier.submit(_timed, pool.verify_states, [
                    VerifyRequest(tid, turn, [s.text for s in group])
                    for (tid, turn), group in zip(states[lo : lo + per_chunk], chunk, strict=True)]))
            verified = [f.result() for f in verifying]
        t_rollout = time.perf_counter() - t2  # sampling and verification, overlapped
        t_ver = sum(seconds for _, seconds in verified)  # the verification thread's busy time
        rewards, invalid, categories = [], [], Counter()
        for verdicts in (v for out, _ in verified for v in out):
            rewards.append([v.score for v in verdicts])
            invalid.append([v.method == "error" for v in verdicts])
            categories.update(v.category for v in verdicts)
        accounting["sandbox_seconds"] += t_ver

        # -- advantages: (P, G), P = this rank's pivots
        r = torch.tensor(rewards, dtype=torch.float32)
        adv = group_advantages(r, cfg.advantage)
        adv = torch.where(torch.tensor(invalid), torch.full_like(adv, cfg.invalid_advantage), adv)

        # -- update: token-level clipped loss over every completion token of the step (all ranks)
        t3 = time.perf_counter()
        model.train()
        seqs = [(sampler.prompt_ids(obs), s, float(adv[i, j]))
                for i, (obs, group) in enumerate(zip(observations, groups, strict=True))
                for j, s in enumerate(group) if s.token_ids]
        local_tokens = sum(len(s.token_ids) for _, s, _ in seqs)
        total_tokens = int(_sum(accel, local_tokens)) or 1
        accounting["rollout_turns"] += int(_sum(accel, sum(len(g) for g in groups)))
        accounting["generated_tokens"] += total_tokens
        optimizer.zero_grad(set_to_none=True)
        loss_sum, clip_fracs, kls, max_log_ratio = 0.0, [], [], 0.0
        per_micro = math.ceil(len(seqs) / cfg.grad_accum) if seqs else 1
        micros = [seqs[i : i + per_micro] for i in range(0, len(seqs), per_micro)]
        for m, micro in enumerate(micros):
            prompts = [p for p, _, _ in micro]
            comps = [list(s.token_ids) for _, s, _ in micro]
            # DDP all-reduces gradients on the last micro-batch only.
            sync = accel is None or m == len(micros) - 1
            with (contextlib.nullcontext() if sync else accel.no_sync(model)):
                with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.bf16):
                    new = sequence_logprobs(model, prompts, comps)
                new_flat = torch.cat(new).float()
                # Old log-probs: the sampler's own (vLLM's or HF generate's); recomputed only where missing.
                old_flat = torch.cat([torch.tensor(s.logprobs, dtype=torch.float32) if s.logprobs else
                                      n.detach().float().cpu() for (_, s, _), n in zip(micro, new, strict=True)]
                                     ).to(new_flat.device)
                adv_flat = torch.cat([torch.full((len(s.token_ids),), a) for _, s, a in micro]).to(new_flat.device)
                # |log pi_theta - log pi_old| before any update: the sampler/trainer numerical gap (vLLM, bf16)
                max_log_ratio = max(max_log_ratio, float((new_flat.detach() - old_flat).abs().max()))
                ref_flat = None
                if ref_model is not None:
                    with torch.no_grad(), torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                                                         enabled=cfg.bf16):
                        ref_flat = torch.cat(sequence_logprobs(ref_model, prompts, comps)).float()
                loss, stats = policy_loss(new_flat, old_flat, adv_flat, cfg.clip_low, cfg.clip_high, ref_flat,
                                          cfg.kl_coef)
                # DDP averages gradients over ranks; x world makes that the mean over all ranks' tokens.
                scaled = loss * world / total_tokens
                if accel is None:
                    scaled.backward()
                else:
                    accel.backward(scaled)
            loss_sum += loss.item()
            clip_fracs.append(stats["clip_fraction"])
            if "kl" in stats:
                kls.append(stats["kl"])
        if accel is None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
        else:
            grad_norm = float(accel.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
        # A non-finite gradient would turn every weight into NaN; skip that step (the norm is the same on
        # every rank after the all-reduce, so all ranks skip together) and count it.
        if not math.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            skipped_steps += 1
            log(f"step {step + 1}: non-finite gradient norm ({grad_norm}); optimizer step skipped")
        else:
            optimizer.step()
        t_sync = 0.0
        if sampler is not policy:  # the engine samples the next step with the weights just updated
            t4 = time.perf_counter()
            sampler.load_weights(policy.model, digest=False)
            t_sync = time.perf_counter() - t4
        t_upd = time.perf_counter() - t3

        # -- metrics, over every rank's groups
        step_time = _max(accel, time.perf_counter() - t0)
        r_all = _gather_rows(accel, r)
        invalid_all = _gather_rows(accel, torch.tensor(invalid, dtype=torch.float32))
        categories = _gather_counts(accel, categories)
        t_gen, t_env, t_ver = _max(accel, t_gen), _max(accel, t_env), _max(accel, t_ver)
        batch_std = float(r_all.std(dim=1, unbiased=False).mean())
        last = {
            "step": step + 1,
            "rollout/reward": float(r_all.mean()),
            "rollout/reward_std": batch_std,
            "rollout/zero_variance_groups": float((r_all.std(dim=1, unbiased=False) == 0).float().mean()),
            "rollout/invalid_share": float(invalid_all.mean()),
            "rollout/groups": int(r_all.shape[0]),
            "rollout/tokens": total_tokens,
            "rollout/tokens_per_s": total_tokens / max(t_gen, 1e-9),
            "loss/policy": _sum(accel, loss_sum) / total_tokens,
            "loss/clip_fraction": _sum(accel, float(np.mean(clip_fracs)) if clip_fracs else 0.0) / world,
            "loss/kl": _sum(accel, float(np.mean(kls)) if kls else 0.0) / world,
            "loss/grad_norm": grad_norm,
            "loss/skipped_steps": skipped_steps,
            "loss/max_abs_log_ratio": _max(accel, max_log_ratio),
            "time/generation_s": t_gen, "time/environment_s": t_env, "time/verification_s": t_ver,
            "time/update_s": t_upd, "time/weight_sync_s": t_sync, "time/step_s": step_time,
            "time/rollout_s": _max(accel, t_rollout),
            **{f"verify/{cfg.domain}/{k}": v for k, v in sorted(categories.items())},
        }
        if device.startswith("cuda"):
            last["memory/gpu_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if is_main:
            _append_metrics(metrics_path, last)
        if writer is not None:
            for k, v in last.items():
                if k != "step":
                    writer.add_scalar(k, v, step + 1)
        if wandb_run is not None:
            wandb_run.log({k: v for k, v in last.items() if k != "step"}, step=step + 1)
        log(f"step {step + 1}/{cfg.steps}: reward {last['rollout/reward']:.3f} (std {batch_std:.3f}), "
            f"loss {last['loss/policy']:.4f}, {step_time:.1f}s")

        if ((cfg.reprofile_every and (step + 1) % cfg.reprofile_every == 0)
                or (cfg.reprofile_std_below and batch_std < cfg.reprofile_std_below)):
            new_pivots, info = _profile_on_main(accel, cfg, env, sampler, f"step {step + 1}", log, pool)
            accounting["rollout_turns"] += info["turns"]
            accounting["sandbox_seconds"] += info.get("sandbox_seconds", 0.0)
            accounting["generated_tokens"] += info["tokens"]
            if new_pivots:
                pivots = new_pivots
                log(f"re-profiled: {len(pivots)} pivots")
        if on_eval is not None and eval_every > 0 and ((step + 1) % eval_every == 0 or step + 1 == cfg.steps):
            stop = evaluate(step + 1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps or stop:
            if is_main:
                save_checkpoint(out, step + 1, policy, optimizer, pivots)
            if accel is not None:
                accel.wait_for_everyone()
        if stop:
            log(f"stopped after step {step + 1} (on_eval)")
            break
    if writer is not None:
        writer.close()
    if wandb_run is not None:
        wandb_run.finish()
    if sampler is not policy:
        sampler.close()
    pool.close()
    env.close()
    accounting["wall_clock_s"] = time.perf_counter() - wall_start - eval_s
    summary = {"final": last, "compute": accounting, "pivots": len(pivots), "world_size": world,
               "sampler": cfg.sampler, "steps_done": last.get("step", start_step), "eval_seconds": eval_s}
    if is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _quiet(*_: Any) -> None:
    """The log of ranks other than 0."""


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the seconds it took (run on the verification thread)."""
    t = time.perf_counter()
    return fn(*args), time.perf_counter() - t


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _truncate_metrics(path: Path, start_step: int) -> None:
    """On resume, drop metrics of steps after the checkpoint (they will be recomputed identically)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= start_step]
    path.write_text("".join(line + "\n" for line in keep))


def _wandb(cfg: TrainConfig, out: Path, start_step: int) -> Any:
    import wandb  # noqa: PLC0415 - optional; TrainConfig checked that it is installed

    return wandb.init(project=cfg.wandb_project, name=out.name, dir=str(out), config=asdict(cfg),
                      resume="allow" if start_step else None)


def tensorboard_writer(out: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` logging to ``out/tensorboard`` (all three trainers), or None without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))
