"""Profiling (pivot filtering, PivotRL stage 2) and the pivot filter.

For every candidate state s_t, K actions are sampled from the frozen starting policy and scored by the
domain's verifier on the restored state; the mean mu(s) and variance var(s) of the K rewards decide
which states are *pivots*: ``var(s) > 0 and mu(s) < lambda_diff``. States where all K samples agree
carry no GRPO gradient (Proposition 3.1 of the paper), so training there wastes rollouts.

Profiling is a cached, resumable job. Its directory is keyed by (model fingerprint, data hash, verifier
config, K, seed); rows are appended one batch at a time with a flush + fsync, and each batch's sampling
seed depends only on its index, so a run killed midway and resumed writes exactly the rows an
uninterrupted run would.

Pipelined (``ProfileConfig.pipeline``, the default): the policy samples batch b+1 on the calling thread
while a verification thread restores and scores batch b (a Ray pool takes several batches at once), so
the wall-clock approaches
max(generation, verification) instead of their sum. The policy is only ever used from the calling
thread, in batch order, reseeded before each batch exactly as in the sequential path, and rows are
written in batch order, so both paths write the same bytes. Prompts are built from the records
(:meth:`TrajectoryEnv.observation`, no restore): each state is restored once, where it is verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.core import Policy
from agents.distributed import LocalVerifierPool, StatePool, VerifyRequest
from pivot_envs.core import TrajectoryEnv
from pivot_envs.trajectory import Candidate, CandidateOptions, Trajectory, extract_candidates
from sandboxes.core import canonical_json
from verifiers import make_verifier


@dataclass(frozen=True)
class ProfileConfig:
    """How to profile.

    Attributes:
        k: Samples per candidate state (the paper's K = 8).
        states_per_batch: Candidate states whose samples are generated in one policy call.
        seed: Sampling seed; batch i samples with ``seed * 1_000_003 + i``.
        verifier: Verifier name (None = the domain's default).
        candidates: Cleaning rules for candidate extraction.
        keep_samples: Store the sampled texts in the rows (for auditing reward hacking).
        pipeline: Sample the next batches while a thread verifies the current one (same rows as
            ``pipeline=False``, the sequential path kept for comparison). Not part of the cache key.
        pipeline_depth: Batches sampled but not yet written, at most (bounds memory and how far
            sampling runs ahead of verification); with a pool that takes overlapping calls (Ray), also
            how many batches verify at once.
    """

    k: int = 8
    states_per_batch: int = 4
    seed: int = 0
    verifier: str | None = None
    candidates: CandidateOptions = field(default_factory=CandidateOptions)
    keep_samples: bool = True
    pipeline: bool = True
    pipeline_depth: int = 2

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"k={self.k}: profiling needs at least 2 samples per state to see any variance")
        if self.states_per_batch < 1:
            raise ValueError("states_per_batch must be >= 1")
        if self.pipeline_depth < 1:
            raise ValueError(f"pipeline_depth={self.pipeline_depth} must be >= 1")


def data_hash(trajectories: Sequence[Trajectory]) -> str:
    """sha256 over the canonical JSON of the records, in order."""
    h = hashlib.sha256()
    for t in trajectories:
        h.update(canonical_json(t.to_dict()).encode())
    return h.hexdigest()


def cache_key(model_fingerprint: str, trajectories: Sequence[Trajectory], config: ProfileConfig, verifier: str) -> str:
    """The profiling cache key: what determines the rows, and nothing else."""
    cfg = {"k": config.k, "seed": config.seed, "states_per_batch": config.states_per_batch,
           "verifier": verifier, "candidates": asdict(config.candidates)}
    parts = [model_fingerprint, data_hash(trajectories), canonical_json(cfg)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows written so far; a torn last line (the run was killed mid-write) is dropped and truncated."""
    if not path.exists():
        return []
    rows, good_bytes = [], 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good_bytes += len(line)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    return rows


def _append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    with open(path, "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@dataclass
class ProfileResult:
    """All profiled rows plus where they live."""

    rows: list[dict[str, Any]]
    directory: Path
    key: str
    resumed_from: int = 0
    seconds: float = 0.0
    generated_tokens: int = 0
    sandbox_seconds: float = 0.0
    """Time spent restoring states and verifying samples (on the verification thread when pipelined)."""
    generation_seconds: float = 0.0
    """Time spent building prompts and sampling. Sequential: ``seconds`` is about the sum of the two;
    pipelined, the two overlap and ``seconds`` approaches the larger."""

    def summary(self, lambda_diff: float = 0.6) -> dict[str, Any]:
        return summarize(self.rows, lambda_diff)


def profile(
    env: TrajectoryEnv,
    policy: Policy,
    out_dir: str | Path,
    config: ProfileConfig | None = None,
    *,
    model_fingerprint: str | None = None,
    candidates: Sequence[Candidate] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    max_batches: int | None = None,
    pool: StatePool | None = None,
) -> ProfileResult:
    """Sample K actions at every candidate state and score them; resumable.

    Args:
        env: A pivot-mode env holding the trajectories.
        policy: The frozen starting policy pi_0.
        out_dir: Parent directory; the run lives in ``out_dir/<key[:16]>/``.
        config: See :class:`ProfileConfig`.
        model_fingerprint: Identifies the policy's weights (``HFPolicy.fingerprint()``); default = its name.
        candidates: Override the candidate list (default: every turn, cleaned by ``config.candidates``).
        on_batch: Progress callback ``(batches_done, batches_total)``.
        max_batches: Stop after this many new batches (used to simulate an interruption in tests).
        pool: Where states are restored and verified (:mod:`agents.distributed`; a Ray pool for
            ``--ray``); default = in-process on ``env``. A pool built with another verifier than
            ``config.verifier`` would write rows under the wrong cache key: build it with the same name.
    """
    config = config or ProfileConfig()
    records = list(env.trajectories.values())
    verifier_name = config.verifier or env.domain.verifier_name
    fingerprint = model_fingerprint or getattr(policy, "fingerprint", lambda: policy.name)()
    key = cache_key(fingerprint, records, config, verifier_name)
    run_dir = Path(out_dir) / key[:16]
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(run_dir / "meta.json", json.dumps({
        "key": key, "model_fingerprint": fingerprint, "data_hash": data_hash(records), "verifier": verifier_name,
        "config": {**asdict(config), "candidates": asdict(config.candidates)}}, indent=2))
    if candidates is None:
        candidates, _ = extract_candidates(records, config.candidates)
    rows_path = run_dir / "rows.jsonl"
    rows = _read_rows(rows_path)
    done = len(rows)
    batches = [candidates[i : i + config.states_per_batch] for i in range(0, len(candidates), config.states_per_batch)]
    # Rows are written a whole batch at a time, so the rows on disk always end on a batch boundary.
    first_batch = _batches_covered(batches, done)
    named_verifier = make_verifier(config.verifier) if config.verifier else None
    pool = pool or LocalVerifierPool(env, named_verifier)
    stop = len(batches) if max_batches is None else min(len(batches), first_batch + max_batches)
    seconds = {"generation": 0.0, "verification": 0.0}
    tokens = 0

    def generate(b: int) -> tuple[dict[int, list[Any]], dict[int, dict[str, Any]]]:
        # The calling thread only: the policy is never used from two threads.
        t = time.perf_counter()
        pairs = [env.observation(cand.trajectory_id, cand.turn) for cand in batches[b]]
        policy.reseed(config.seed * 1_000_003 + b)
        out = _sample_fitting(policy, pairs, config.k)
        seconds["generation"] += time.perf_counter() - t
        return out

    def verify(b: int, samples: dict[int, list[Any]],
               too_long: dict[int, dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        # The verification thread when pipelined: the only place that restores states (through the pool).
        t = time.perf_counter()
        kept = [i for i in range(len(batches[b])) if i not in too_long]
        groups = pool.verify_states([VerifyRequest(batches[b][i].trajectory_id, batches[b][i].turn,
                                                   [s.text for s in samples[i]]) for i in kept])
        seconds["verification"] += time.perf_counter() - t
        out = _rows(batches[b], samples, too_long, dict(zip(kept, groups, strict=True)), config.keep_samples)
        return out, sum(len(s.token_ids or ()) for i in kept for s in samples[i])

    def write(b: int, verified: tuple[list[dict[str, Any]], int]) -> None:
        nonlocal tokens
        out, batch_tokens = verified
        _append_rows(rows_path, out)
        rows.extend(out)
        tokens += batch_tokens
        if on_batch is not None:
            on_batch(b + 1, len(batches))

    start = time.perf_counter()
    if not config.pipeline:
        for b in range(first_batch, stop):
            write(b, verify(b, *generate(b)))
    else:
        # One verifying thread for an in-process pool (one env); a pool that takes overlapping calls (Ray
        # actors) gets up to pipeline_depth batches at once. Rows are written in batch order either way.
        workers = config.pipeline_depth if getattr(pool, "thread_safe", False) else 1
        verifier = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pivotrl-profile-verify")
        pending: deque[tuple[int, Future[tuple[list[dict[str, Any]], int]]]] = deque()
        try:
            for b in range(first_batch, stop):
                generated = generate(b)  # overlaps the verification of the batches still pending
                pending.append((b, verifier.submit(verify, b, *generated)))
                # Write, in batch order, whatever is verified; wait only when sampling is too far ahead.
                while pending and (len(pending) > config.pipeline_depth or pending[0][1].done()):
                    done_b, future = pending.popleft()
                    write(done_b, future.result())
            while pending:
                done_b, future = pending.popleft()
                write(done_b, future.result())
        finally:
            # On an error or interrupt: drop queued verifications, wait for the one running (its sandbox
            # work must end before the env is used again); rows already written stay a prefix of the run.
            verifier.shutdown(wait=True, cancel_futures=True)
    result = ProfileResult(rows, run_dir, key, resumed_from=done, seconds=time.perf_counter() - start,
                           generated_tokens=tokens, sandbox_seconds=seconds["verification"],
                           generation_seconds=seconds["generation"])
    if len(rows) == len(candidates):
        write_report(result)
    return result


def _rows(batch: Sequence[Candidate], samples: dict[int, list[Any]], too_long: dict[int, dict[str, Any]],
          verdicts: dict[int, list[Any]], keep_samples: bool) -> list[dict[str, Any]]:
    """One batch's rows, in candidate order."""
    out = []
    for i, cand in enumerate(batch):
        if i in too_long:
            # Counted, not fatal: one long prompt must not end a run over thousands of states.
            out.append({"trajectory_id": cand.trajectory_id, "turn": cand.turn, "depth": cand.depth,
                        "skipped": "prompt_too_long", **too_long[i], "rewards": [], "mean": 0.0, "var": 0.0,
                        "categories": [], "methods": []})
            continue
        group = samples[i]
        rewards = [float(vd.score) for vd in verdicts[i]]
        row = {"trajectory_id": cand.trajectory_id, "turn": cand.turn, "depth": cand.depth,
               "rewards": rewards, "mean": float(np.mean(rewards)), "var": float(np.var(rewards)),
               "categories": [vd.category for vd in verdicts[i]], "methods": [vd.method for vd in verdicts[i]]}
        if keep_samples:
            row["samples"] = [s.text for s in group]
        out.append(row)
    return out


def _sample_fitting(policy: Policy, pairs: list[tuple[dict[str, Any], dict[str, Any]]],
                    k: int) -> tuple[dict[int, list[Any]], dict[int, dict[str, Any]]]:
    """Sample ``k`` actions per state, leaving out prompts that do not fit the model's context.

    A policy reports such a prompt by raising an error carrying ``index``, ``prompt_tokens`` and ``limit``
    (:class:`agents.policies.hf.PromptTooLongError`); that state is set aside and the rest sampled again.
    Returns the samples by batch index and the skipped states' sizes by batch index.
    """
    todo = list(range(len(pairs)))
    too_long: dict[int, dict[str, Any]] = {}
    while todo:
        try:
            groups = policy.sample([pairs[i][0] for i in todo], n=k, infos=[pairs[i][1] for i in todo])
        except ValueError as exc:
            index = getattr(exc, "index", None)
            if not isinstance(index, int) or not hasattr(exc, "prompt_tokens") or not 0 <= index < len(todo):
                raise
            too_long[todo.pop(index)] = {"prompt_tokens": exc.prompt_tokens, "limit": getattr(exc, "limit", None)}
            continue
        return dict(zip(todo, groups, strict=True)), too_long
    return {}, too_long


def _batches_covered(batches: list[list[Candidate]], rows_done: int) -> int:
    covered = 0
    for i, batch in enumerate(batches):
        covered += len(batch)
        if covered > rows_done:
            return i
    return len(batches)


# ---------------------------------------------------------------------------------------------------
# The filter


class NoPivotsError(RuntimeError):
    """Profiling kept no pivot: every state's K rewards were all equal (or none passed the filter).

    A property of the data, the policy and the verifier together, not a crash: the CLI reports it in one line.
    """


@dataclass(frozen=True)
class FilterConfig:
    """Which profiled states become pivots.

    Attributes:
        lambda_diff: Keep states with ``var > 0 and mean < lambda_diff`` (PIVOTRL.md; NVIDIA's tau2 run
            kept mean <= 0.6).
        band: Instead, keep ``var > 0 and lo <= mean <= hi``.
        cap: Keep at most this many pivots.
        drop_easiest_first: When capping, drop the highest-mean pivots first (else drop at random).
        random_turns: The paper's ablation: ignore the statistics and pick random candidate states (as
            many as the filter would have kept, or ``cap``).
        seed: For random choices.
    """

    lambda_diff: float = 0.6
    band: tuple[float, float] | None = None
    cap: int | None = None
    drop_easiest_first: bool = True
    random_turns: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.lambda_diff <= 1.0:
            raise ValueError(f"lambda_diff={self.lambda_diff} must be in (0, 1]; 0.6 is the usual value")
        if self.band is not None and not 0.0 <= self.band[0] <= self.band[1] <= 1.0:
            raise ValueError(f"band={self.band} must satisfy 0 <= lo <= hi <= 1")
        if self.cap is not None and self.cap < 1:
            raise ValueError("cap must be >= 1 (or None for no cap)")


def is_pivot(row: dict[str, Any], config: FilterConfig) -> bool:
    if row["var"] <= 0:
        return False
    if config.band is not None:
        return config.band[0] <= row["mean"] <= config.band[1]
    return row["mean"] < config.lambda_diff


def select_pivots(rows: Sequence[dict[str, Any]], config: FilterConfig | None = None) -> list[dict[str, Any]]:
    """The pivots among profiled rows, in a deterministic order."""
    config = config or FilterConfig()
    rng = np.random.default_rng(config.seed)
    rows = [r for r in rows if not r.get("skipped")]  # never sampled: no statistics, never a pivot
    kept = [r for r in rows if is_pivot(r, config)]
    if config.random_turns:
        n = min(config.cap or len(kept) or len(rows), len(rows))
        idx = sorted(rng.choice(len(rows), size=n, replace=False).tolist())
        return [rows[i] for i in idx]
    if config.cap is not None and len(kept) > config.cap:
        if config.drop_easiest_first:
            kept = sorted(kept, key=lambda r: (r["mean"], r["trajectory_id"], r["turn"]))[: config.cap]
        else:
            idx = sorted(rng.choice(len(kept), size=config.cap, replace=False).tolist())
            kept = [kept[i] for i in idx]
    return kept


# ---------------------------------------------------------------------------------------------------
# Report


#: Verdict categories that mean the *model's output* could not be taken apart (not a verifier's judgement).
UNPARSABLE = frozenset({"BAD_FORMAT", "BAD_JSON", "EMPTY", "DEGENERATE"})


def summarize(rows: Sequence[dict[str, Any]], lambda_diff: float = 0.6) -> dict[str, Any]:
    """Zero-variance share, pivot yield, histogram of mu(s), verdict categories by method.

    Samples the model wrote unparsably (:data:`UNPARSABLE`) are counted apart from the verifier's
    rejections of parsed actions, and states skipped because their prompt did not fit are counted apart
    from the profiled ones.
    """
    skipped = [r for r in rows if r.get("skipped")]
    rows = [r for r in rows if not r.get("skipped")]
    n = len(rows)
    pivots = select_pivots(rows, FilterConfig(lambda_diff=lambda_diff))
    hist, edges = np.histogram([r["mean"] for r in rows] or [0.0], bins=10, range=(0.0, 1.0))
    by_method: dict[str, Counter[str]] = {}
    for r in rows:
        for m, c in zip(r["methods"], r["categories"], strict=True):
            by_method.setdefault(m, Counter())[c] += 1
    yield_ = len(pivots) / n if n else 0.0
    samples = sum(len(r["categories"]) for r in rows)
    unparsable = sum(c in UNPARSABLE for r in rows for c in r["categories"])
    rejected = sum(m != "error" and s < 1.0 for r in rows for m, s in zip(r["methods"], r["rewards"], strict=True))
    if not n:
        health = "empty"
    elif 0.03 <= yield_ <= 0.4:
        health = "ok"
    elif samples and unparsable > samples / 2:
        health = (f"suspicious: {unparsable / samples:.0%} of samples did not parse as an action (check the model's "
                  "tool-call format, its chat template, or raise --max-new-tokens)")
    else:
        health = "suspicious: check the policy and the verifier"
    return {
        "states": n,
        "skipped_prompt_too_long": len(skipped),
        "samples": samples,
        "unparsable_samples": unparsable,
        "verifier_rejections": rejected,
        "zero_variance_share": sum(1 for r in rows if r["var"] <= 0) / n if n else 0.0,
        "all_zero_share": sum(1 for r in rows if r["mean"] == 0) / n if n else 0.0,
        "all_one_share": sum(1 for r in rows if r["mean"] == 1) / n if n else 0.0,
        "mean_reward": float(np.mean([r["mean"] for r in rows])) if n else 0.0,
        "pivots": len(pivots),
        "pivot_yield": yield_,
        "yield_health": health,
        "lambda_diff": lambda_diff,
        "mean_histogram": {"edges": [round(float(e), 2) for e in edges], "counts": hist.tolist()},
        "categories_by_method": {m: dict(c.most_common()) for m, c in sorted(by_method.items())},
    }


def write_report(result: ProfileResult, lambda_diff: float = 0.6) -> dict[str, Any]:
    """``report.json``, ``report.md`` and (with matplotlib) ``mean_hist.png`` in the run directory."""
    s = result.summary(lambda_diff)
    _atomic_write(result.directory / "report.json", json.dumps(s, indent=2))
    lines = [
        "# Profiling report", "",
        f"- states profiled: {s['states']} ({s['skipped_prompt_too_long']} skipped: prompt longer than the "
        "model's context)",
        f"- samples: {s['samples']}: {s['unparsable_samples']} did not parse as an action (the model's output), "
        f"{s['verifier_rejections']} parsed but judged not equivalent (the verifier's rejections)",
        f"- zero-variance share: {s['zero_variance_share']:.1%} (all wrong {s['all_zero_share']:.1%}, "
        f"all right {s['all_one_share']:.1%})",
        f"- mean reward: {s['mean_reward']:.3f}",
        f"- pivots (var > 0 and mean < {lambda_diff}): {s['pivots']} = {s['pivot_yield']:.1%} yield "
        f"({s['yield_health']}; healthy is roughly 3-40%)",
        "", "| mean reward bin | states |", "|---|---:|",
    ]
    edges, counts = s["mean_histogram"]["edges"], s["mean_histogram"]["counts"]
    lines += [f"| {edges[i]:.1f}-{edges[i + 1]:.1f} | {c} |" for i, c in enumerate(counts)]
    lines += ["", "| method | category | verdicts |", "|---|---|---:|"]
    for m, cats in s["categories_by_method"].items():
        lines += [f"| {m} | {c} | {v} |" for c, v in cats.items()]
    _atomic_write(result.directory / "report.md", "\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return s
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([(edges[i] + edges[i + 1]) / 2 for i in range(len(counts))], counts, width=0.09)
    ax.axvline(lambda_diff, color="red", linestyle="--", label=f"lambda_diff={lambda_diff}")
    ax.set_xlabel("mean reward of K samples, mu(s)")
    ax.set_ylabel("states")
    ax.set_title(f"pivot yield {s['pivot_yield']:.1%}, zero-variance {s['zero_variance_share']:.1%}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(result.directory / "mean_hist.png", dpi=100)
    plt.close(fig)
    return s

