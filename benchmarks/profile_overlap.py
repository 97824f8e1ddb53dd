"""Profiling overlap: pipelined wall-clock against pure generation and pure verification of the same samples.

    python benchmarks/profile_overlap.py [--domain terminal] [--trajectories 8] [--backend docker]
    python benchmarks/profile_overlap.py --actors 1 2      # verification on 1 then 2 local Ray actors

Profiling samples K actions at each candidate state with the demo's tiny base model
(``agents/demo_base``, loaded as ``hf:PATH``) and verifies them. The benchmark runs the same job twice on
fresh environments (cold snapshot caches both times, after one untimed warm-up batch that loads the model
and the sandbox image):

* sequential (``ProfileConfig(pipeline=False)``): sampling and verification take turns, so its two
  timers are the *pure* generation time and the *pure* verification time (restores included);
* pipelined (the default): the wall-clock, to compare with ``max(generation, verification)``.

``ratio = pipelined wall / max(generation, verification)``; the goal is <= 1.1 (1.0 = perfect overlap; the
sequential path scores about ``1 + min/max``). Where both sides need the CPU, no schedule beats the
machine's CPU either: ``cpu_bound_s`` is the CPU every process of the machine used during the sequential
run divided by the cores, and ``ratio_to_cpu_bound = pipelined wall / max(generation, verification,
cpu_bound_s)`` says how close the pipeline comes to what the machine allows. The two runs' rows must be byte-identical; the result says
whether they were. Every figure comes from one machine at one load (``os.getloadavg`` is reported): on a
machine with fewer cores than the two sides need, they compete for CPU and the ratio shows it.

``bench_verification_scaling`` verifies one fixed set of samples on pools of 1, 2, ... Ray actors
(``VerifierPool``, each with its own sandboxes; states routed by trajectory) and reports the speedup.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

DEMO_BASE = Path(__file__).resolve().parents[1] / "agents" / "demo_base"


@contextlib.contextmanager
def _shell_backend(domain: str, backend: str | None) -> Iterator[str]:
    """Shell domains' sandbox backend for this process (``auto``: Docker when a daemon answers, else local)."""
    from pivot_envs.domains.terminal import sandbox as shell

    old = shell.BACKEND
    if backend is not None:
        shell.BACKEND = backend
    try:
        chosen = shell.BACKEND
        if chosen == "auto":
            chosen = "docker" if shell.docker_problem() is None else "local"
        yield chosen if domain in ("terminal", "swe") else "in-process"
    finally:
        shell.BACKEND = old


def machine_cpu_s() -> float | None:
    from agents.bench_docker import machine_cpu_s as cpu_s  # noqa: PLC0415 - Linux /proc/stat reader

    return cpu_s()


def _setup(domain: str, trajectories: int, model: str | Path, max_new_tokens: int, k: int) -> tuple[Any, Any, Any]:
    from agents.core import make_policy
    from pivot_envs import get_domain
    from pivot_envs.trajectory import CandidateOptions, extract_candidates

    records = get_domain(domain).load()[:trajectories]
    policy = make_policy(f"hf:{model}", max_new_tokens=max_new_tokens, temperature=1.0)
    candidates, _ = extract_candidates(records, CandidateOptions())
    return records, policy, candidates


def bench_profile_overlap(
    domain: str = "terminal",
    *,
    trajectories: int = 8,
    k: int = 8,
    states_per_batch: int = 4,
    max_new_tokens: int = 96,
    pipeline_depth: int = 2,
    backend: str | None = None,
    model: str | Path = DEMO_BASE,
    seed: int = 0,
    torch_threads: int | None = 1,
    repeats: int = 1,
) -> dict[str, Any]:
    """Pure generation, pure verification and pipelined profiling wall-clock on ``domain``'s first records.

    Args:
        domain: A registered domain (the terminal domain verifies by execution in sandboxes).
        trajectories: Records profiled (all their turns: the candidate states).
        k, states_per_batch, max_new_tokens: The profiling job (the demo profiles with K=8, 4 states per
            batch, up to 96 new tokens).
        pipeline_depth: ``ProfileConfig.pipeline_depth`` of the pipelined run.
        backend: Shell sandbox backend, ``docker``, ``local`` or None (``auto``).
        model: Checkpoint directory of the policy (default: the demo's tiny base).
        torch_threads: ``torch.set_num_threads`` while measuring (restored after; None = leave it). The
            sandbox side needs CPU too: with as many intra-op threads as cores, torch's threads spin against
            the verifier's processes, and on a 2-core machine under load the same samples took 21.8 s with
            2 threads against 2.7 s with 1 (the tiny model gains nothing from a second thread).

        repeats: Sequential and pipelined runs each, alternating which goes first; medians are reported
            (on a shared machine the load drifts between runs, and one pair can even show a ratio below 1).

    Returns a JSON-able dict: the seconds of each part (medians), ``ratio`` (pipelined wall / max(generation,
    verification)), ``sequential_ratio``, ``rows_identical``, sizes, backend and load averages.
    """
    import torch

    from agents.profile import ProfileConfig, profile
    from pivot_envs import TrajectoryEnv

    records, policy, candidates = _setup(domain, trajectories, model, max_new_tokens, k)
    base = {"k": k, "states_per_batch": states_per_batch, "seed": seed}
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="pivotrl-profile-overlap-"))
    threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        with _shell_backend(domain, backend) as chosen:
            # Warm-up, untimed: the model's first call, the sandbox image, the daemon's caches.
            env = TrajectoryEnv(records, domain=domain)
            profile(env, policy, work / "warmup", ProfileConfig(**base, pipeline=False), max_batches=1,
                    candidates=candidates)
            env.close()
            runs: dict[str, list[Any]] = {"sequential": [], "pipelined": []}
            cpu: dict[str, list[float]] = {"sequential": [], "pipelined": []}
            order = [("sequential", False), ("pipelined", True)]
            for r in range(repeats):  # alternating order: a load that drifts during the run favours neither
                for name, pipeline in order if r % 2 == 0 else order[::-1]:
                    env = TrajectoryEnv(records, domain=domain)  # a cold snapshot cache for each run
                    c0 = machine_cpu_s()
                    runs[name].append(profile(env, policy, work / f"{name}-{r}",
                                              ProfileConfig(**base, pipeline=pipeline, pipeline_depth=pipeline_depth),
                                              candidates=candidates))
                    c1 = machine_cpu_s()
                    if c0 is not None and c1 is not None:
                        cpu[name].append(c1 - c0)
                    env.close()
        first = (runs["sequential"][0].directory / "rows.jsonl").read_bytes()
        identical = all((res.directory / "rows.jsonl").read_bytes() == first for rs in runs.values() for res in rs)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)
    seq, pipe = runs["sequential"], runs["pipelined"]

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    generation, verification = median([x.generation_seconds for x in seq]), median([x.sandbox_seconds for x in seq])
    slowest = max(generation, verification, 1e-9)
    seq_s, pipe_s = median([x.seconds for x in seq]), median([x.seconds for x in pipe])
    # No schedule can beat the machine's CPU: the work of the sequential run (every process: the model,
    # the verifier, dockerd, the containers) spread over every core.
    cores = os.cpu_count() or 1
    cpu_bound = round(median(cpu["sequential"]) / cores, 3) if cpu["sequential"] else None
    return {
        "benchmark": "profile_overlap", "domain": domain, "backend": chosen, "model": str(model),
        "trajectories": len(records), "states": len(seq[0].rows), "samples": len(seq[0].rows) * k, "k": k,
        "states_per_batch": states_per_batch, "max_new_tokens": max_new_tokens, "pipeline_depth": pipeline_depth,
        "generated_tokens": seq[0].generated_tokens, "torch_threads": torch_threads or threads, "repeats": repeats,
        "generation_s": generation, "verification_s": verification, "sequential_s": seq_s, "pipelined_s": pipe_s,
        "pipelined_generation_s": median([x.generation_seconds for x in pipe]),
        "pipelined_verification_s": median([x.sandbox_seconds for x in pipe]),
        "ratio": round(pipe_s / slowest, 3), "sequential_ratio": round(seq_s / slowest, 3),
        "speedup_over_sequential": round(seq_s / max(pipe_s, 1e-9), 3),
        "machine_cpu_s": {name: median(v) if v else None for name, v in cpu.items()},
        "cpu_bound_s": cpu_bound,
        "ratio_to_cpu_bound": round(pipe_s / max(slowest, cpu_bound or 0.0), 3),
        "rows_identical": identical,
        "machine": {"cores": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
    }


def bench_verification_scaling(
    domain: str = "terminal",
    *,
    actors: Sequence[int] = (1, 2),
    trajectories: int = 8,
    k: int = 8,
    max_new_tokens: int = 96,
    num_cpus: float = 1.0,
    model: str | Path = DEMO_BASE,
    seed: int = 0,
) -> dict[str, Any]:
    """Verify one fixed set of profiling samples on pools of ``actors`` local Ray actors; seconds and speedup.

    The samples are generated once (untimed); each pool is new (cold snapshot caches in every actor) and
    gets one untimed warm-up state per actor first. Starts ``ray.init(num_cpus=max(actors) * num_cpus)``
    unless Ray is already initialised. Actors build their own sandboxes with the ``auto`` backend (Docker
    when a daemon answers).
    """
    import ray

    from agents.distributed import VerifierPool, VerifyRequest
    from pivot_envs import TrajectoryEnv

    records, policy, candidates = _setup(domain, trajectories, model, max_new_tokens, k)
    env = TrajectoryEnv(records, domain=domain)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # untimed, but on a busy machine two threads spin (see bench_profile_overlap)
    try:
        policy.reseed(seed)
        groups = policy.sample([env.observation(c.trajectory_id, c.turn)[0] for c in candidates], n=k)
    finally:
        torch.set_num_threads(threads)
    requests = [VerifyRequest(c.trajectory_id, c.turn, [s.text for s in g]) for c, g in zip(candidates, groups,
                                                                                             strict=True)]
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(1, int(max(actors) * num_cpus + 0.999)), include_dashboard=False, log_to_driver=False)
    rows, verdicts = [], None
    load_before = os.getloadavg()
    try:
        for n in actors:
            with VerifierPool.from_env(env, num_actors=n, num_cpus=num_cpus) as pool:
                # Warm-up, untimed: the first state each actor owns (the sandbox image, each process's
                # imports); the timed pool below is new, so its snapshot caches start cold.
                first = {}
                for r in requests:
                    first.setdefault(pool.actor_of(r.trajectory_id), r)
                pool.verify_states(list(first.values()))
            with VerifierPool.from_env(env, num_actors=n, num_cpus=num_cpus) as pool:
                t = time.perf_counter()
                out = pool.verify_states(requests)
                seconds = time.perf_counter() - t
            verdicts = verdicts or out
            differ = [(r.trajectory_id, r.turn, j, str(a)[:120], x.to_dict(), y.to_dict())
                      for r, xs, ys in zip(requests, verdicts, out, strict=True)
                      for j, (a, x, y) in enumerate(zip(r.actions, xs, ys, strict=True)) if x != y]
            rows.append({"actors": n, "seconds": round(seconds, 3), "verdicts": sum(len(g) for g in out),
                         "verdicts_per_s": round(sum(len(g) for g in out) / seconds, 2),
                         "differing_verdicts": len(differ), "differing_examples": differ[:3]})
    finally:
        env.close()
        if started:
            ray.shutdown()
    for row in rows:
        row["speedup"] = round(rows[0]["seconds"] / row["seconds"], 3)
    return {"benchmark": "verification_scaling", "domain": domain, "states": len(requests), "k": k, "rows": rows,
            "machine": {"cores": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
                        "load_after": [round(x, 2) for x in os.getloadavg()]}}


if __name__ == "__main__":
    # Run as a script, this folder comes first on sys.path, and its verifiers.py would shadow the package.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="terminal")
    parser.add_argument("--trajectories", type=int, default=8)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--states-per-batch", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--backend", choices=("docker", "local", "auto"), default=None)
    parser.add_argument("--torch-threads", type=int, default=1, help="0: leave torch's default")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--actors", type=int, nargs="*", help="instead: verification on 1, 2, ... Ray actors")
    args = parser.parse_args()
    if args.actors:
        out = bench_verification_scaling(args.domain, actors=args.actors, trajectories=args.trajectories, k=args.k,
                                         max_new_tokens=args.max_new_tokens)
    else:
        out = bench_profile_overlap(args.domain, trajectories=args.trajectories, k=args.k,
                                    states_per_batch=args.states_per_batch, max_new_tokens=args.max_new_tokens,
                                    backend=args.backend, torch_threads=args.torch_threads or None, repeats=args.repeats)
    print(json.dumps(out, indent=2))
