"""Pipelined profiling: the same bytes as the sequential path, each state restored once, and real overlap.

The pipeline samples batch b+1 on the calling thread while a verification thread restores and scores
batch b. These tests assert behaviour only (which thread did what, in which order, how often a state was
restored); how much faster it is lives in ``benchmarks/profile_overlap.py``.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from agents.distributed import LocalVerifierPool
from agents.policies import RandomAgent, ReplayAgent
from agents.profile import ProfileConfig, profile
from pivot_envs import TrajectoryEnv, get_domain
from pivot_envs.trajectory import extract_candidates

DEMO_BASE = Path(__file__).resolve().parents[2] / "agents" / "demo_base"


class MixedAgent(RandomAgent):
    """The demonstration with probability 1/2, else a random turn; records the thread of every call."""

    name = "mixed"

    def __init__(self, records, seed=0):
        super().__init__(seed=seed)
        self.replay = ReplayAgent(records)
        self.threads: set[int] = set()
        self.calls = 0
        self.before_sample = None  # hook(call_index) run before sampling

    def sample(self, observations, n=1, infos=None):
        self.threads.add(threading.get_ident())
        if self.before_sample is not None:
            self.before_sample(self.calls)
        self.calls += 1
        rand = super().sample(observations, n, infos)
        gold = self.replay.sample(observations, n, infos)
        return [[g if self.rng.random() < 0.5 else r for g, r in zip(gs, rs, strict=True)]
                for gs, rs in zip(gold, rand, strict=True)]


class CountingEnv(TrajectoryEnv):
    """Counts real restores per state (every path to a world goes through ``_restore``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.restores: Counter[tuple[str, int]] = Counter()
        self.restore_threads: set[int] = set()

    def _restore(self, traj, turn):
        self.restores[(traj.id, turn)] += 1
        self.restore_threads.add(threading.get_ident())
        return super()._restore(traj, turn)


class HookedPool(LocalVerifierPool):
    """A local pool whose ``verify_states`` runs a hook first (to observe or to pace the pipeline)."""

    def __init__(self, env, hook):
        super().__init__(env)
        self.hook, self.calls, self.threads = hook, 0, set()

    def verify_states(self, requests):
        self.threads.add(threading.get_ident())
        self.hook(self.calls)
        self.calls += 1
        return super().verify_states(requests)


@pytest.fixture
def records(tool_use_records):
    return tool_use_records[:6]


def _env(records):
    return CountingEnv(records, domain="tool_use")


CFG = {"k": 4, "states_per_batch": 3, "seed": 7}


def test_pipelined_rows_are_the_sequential_rows_byte_for_byte(records, tmp_path):
    seq_env, pipe_env = _env(records), _env(records)
    seq = profile(seq_env, MixedAgent(records), tmp_path / "seq", ProfileConfig(**CFG, pipeline=False))
    pipe = profile(pipe_env, MixedAgent(records), tmp_path / "pipe", ProfileConfig(**CFG, pipeline=True))
    assert pipe.key == seq.key  # the pipeline flag is not part of the cache key: the rows are the same
    assert (pipe.directory / "rows.jsonl").read_bytes() == (seq.directory / "rows.jsonl").read_bytes()
    assert pipe.rows == seq.rows and len(seq.rows) == sum(t.num_turns for t in records)
    assert any(0 < r["var"] for r in seq.rows), "the comparison must include states with mixed rewards"
    assert pipe.generation_seconds > 0 and pipe.sandbox_seconds > 0
    seq_env.close()
    pipe_env.close()


@pytest.mark.parametrize("pipeline", [True, False])
def test_each_state_is_restored_once_on_the_verifying_side(records, tmp_path, pipeline):
    env = _env(records)
    policy = MixedAgent(records)
    pool = HookedPool(env, lambda _: None)
    result = profile(env, policy, tmp_path, ProfileConfig(**CFG, pipeline=pipeline), pool=pool)
    states = Counter((r["trajectory_id"], r["turn"]) for r in result.rows)
    assert env.restores == states and set(env.restores.values()) == {1}
    assert sorted((t, k) for t, k, n in pool.restore_counts() if n == 1) == sorted(states)
    main = threading.get_ident()
    assert policy.threads == {main}, "the policy is only ever called from the calling thread"
    if pipeline:
        assert env.restore_threads == pool.threads and main not in pool.threads
    else:
        assert env.restore_threads == pool.threads == {main}
    env.close()


def test_generation_of_the_next_batch_overlaps_verification(records, tmp_path):
    """Verification of batch 0 waits (up to 30 s) for batch 1's sampling to start: only a pipeline gets past."""
    env = _env(records)
    policy = MixedAgent(records)
    started: dict[int, threading.Event] = {i: threading.Event() for i in range(32)}
    policy.before_sample = lambda call: started[call].set()
    overlapped = []
    pool = HookedPool(env, lambda call: overlapped.append(started[call + 1].wait(timeout=30) if call == 0 else True))
    profile(env, policy, tmp_path / "p", ProfileConfig(**CFG), pool=pool)
    assert overlapped[0] is True
    env.close()


def test_sampling_runs_at_most_pipeline_depth_batches_ahead_of_the_rows_written(records, tmp_path):
    env = _env(records)
    policy = MixedAgent(records)
    release = threading.Event()
    written: list[int] = []
    ahead: list[int] = []

    def before_sample(call):
        ahead.append(call - len(written))  # batches sampled but not yet written when batch `call` starts
        if call == 2:
            release.set()

    policy.before_sample = before_sample
    # Verification of batch 0 is held back until batch 2's sampling starts: sampling runs 2 batches ahead.
    pool = HookedPool(env, lambda call: release.wait(timeout=30) if call == 0 else None)

    def on_batch(done, total):
        written.append(done)

    result = profile(env, policy, tmp_path, ProfileConfig(**CFG, pipeline_depth=2), pool=pool, on_batch=on_batch)
    assert release.is_set() and max(ahead) == 2, ahead
    assert written == list(range(1, len(written) + 1)) and len(result.rows) == sum(t.num_turns for t in records)
    env.close()


class ThreadLocalPool:
    """A pool that takes overlapping calls (as the Ray pool does): each verifying thread has its own env."""

    thread_safe = True

    def __init__(self, records, hook):
        self.records, self.hook, self.calls = records, hook, 0
        self.lock, self.local, self.envs = threading.Lock(), threading.local(), []

    def verify_states(self, requests):
        with self.lock:
            call, self.calls = self.calls, self.calls + 1
        self.hook(call)
        if not hasattr(self.local, "pool"):
            env = TrajectoryEnv(self.records, domain="tool_use")
            self.envs.append(env)
            self.local.pool = LocalVerifierPool(env)
        return self.local.pool.verify_states(requests)


def test_a_pool_taking_overlapping_calls_verifies_batches_at_once_and_rows_stay_in_order(records, tmp_path):
    started = [threading.Event() for _ in range(32)]
    overlapped = []

    def hook(call):
        started[call].set()
        if call == 0:  # the first verification waits for a second one to start beside it
            overlapped.append(started[1].wait(timeout=30))

    pool = ThreadLocalPool(records, hook)
    seq = profile(_env(records), MixedAgent(records), tmp_path / "seq", ProfileConfig(**CFG, pipeline=False))
    pipe = profile(_env(records), MixedAgent(records), tmp_path / "pipe", ProfileConfig(**CFG, pipeline_depth=2),
                   pool=pool)
    assert overlapped == [True] and len(pool.envs) == 2
    assert (pipe.directory / "rows.jsonl").read_bytes() == (seq.directory / "rows.jsonl").read_bytes()
    for env in pool.envs:
        env.close()


def test_interrupted_pipelined_run_resumes_to_the_same_rows(records, tmp_path):
    env = _env(records)
    full = profile(env, MixedAgent(records), tmp_path / "full", ProfileConfig(**CFG, pipeline=False))
    part = profile(env, MixedAgent(records), tmp_path / "b", ProfileConfig(**CFG), max_batches=2)
    assert 0 < len(part.rows) < len(full.rows)
    with open(part.directory / "rows.jsonl", "a") as fh:  # a kill in the middle of a write leaves a torn line
        fh.write('{"trajectory_id": "torn')
    resumed = profile(env, MixedAgent(records), tmp_path / "b", ProfileConfig(**CFG))
    assert resumed.resumed_from == len(part.rows)
    assert (resumed.directory / "rows.jsonl").read_bytes() == (full.directory / "rows.jsonl").read_bytes()
    env.close()


def test_a_verification_error_stops_the_pipeline_and_leaves_whole_batches(records, tmp_path):
    env = _env(records)
    full = profile(env, MixedAgent(records), tmp_path / "full", ProfileConfig(**CFG, pipeline=False))

    def fail_at_third(call):
        if call == 2:
            raise RuntimeError("sandbox lost")

    policy = MixedAgent(records)
    with pytest.raises(RuntimeError, match="sandbox lost"):
        profile(env, policy, tmp_path / "b", ProfileConfig(**CFG), pool=HookedPool(env, fail_at_third))
    assert policy.calls <= 2 + 1 + ProfileConfig().pipeline_depth  # sampling stopped soon after the error
    rows_file = next((tmp_path / "b").glob("*/rows.jsonl"))
    written = rows_file.read_bytes()
    assert full.directory.joinpath("rows.jsonl").read_bytes().startswith(written)
    assert written.count(b"\n") == 2 * CFG["states_per_batch"]  # batches 0 and 1, verified before the error
    resumed = profile(env, MixedAgent(records), tmp_path / "b", ProfileConfig(**CFG))
    assert resumed.rows == full.rows
    env.close()


def test_observation_is_the_reset_observation_without_a_restore(records):
    env = _env(records)
    for tid in env.ids:
        for turn in range(env.trajectories[tid].num_turns):
            obs, info = env.observation(tid, turn)
            assert not env.restores[(tid, turn)]
            reset_obs, reset_info = env.reset(options={"trajectory": tid, "turn": turn})
            assert obs == reset_obs
            assert info == {k: reset_info[k] for k in ("trajectory_id", "turn", "num_turns")}
    with pytest.raises(ValueError, match="turn must be"):
        env.observation(env.ids[0], 99)
    with pytest.raises(KeyError):
        env.observation("no-such-record", 0)
    env.close()


def test_pipelined_rows_with_the_tiny_hf_model(tmp_path):
    """The demo's tiny base model, really sampling (seeded per batch): pipelined = sequential, byte for byte."""
    torch = pytest.importorskip("torch")
    from agents.core import make_policy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from more; on a busy 2-core machine they spin
    try:
        _tiny_hf_rows_match(make_policy, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _tiny_hf_rows_match(make_policy, tmp_path):

    records = get_domain("tool_use").load(strict=True)[:2]
    cfg = {"k": 2, "states_per_batch": 2, "seed": 3}
    candidates = extract_candidates(records, ProfileConfig(**cfg).candidates)[0][:6]
    paths = []
    for pipeline in (False, True):
        policy = make_policy(f"hf:{DEMO_BASE}", max_new_tokens=12, temperature=1.0)
        env = TrajectoryEnv(records, domain="tool_use")
        result = profile(env, policy, tmp_path / str(pipeline), ProfileConfig(**cfg, pipeline=pipeline),
                         candidates=candidates)
        env.close()
        paths.append(result.directory / "rows.jsonl")
        assert result.generated_tokens > 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert len(set(paths[0].read_bytes().splitlines())) > 1
