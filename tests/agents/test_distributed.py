"""Routing on Ray actors (a trajectory's states always on one actor, restored once) and the trainer's overlap.

The Ray tests start a local ``ray.init(num_cpus=2)`` once for the module; without the ``[ray]`` extra they
skip locally and fail under CI (as in test_ray.py).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter

import pytest

from agents.distributed import LocalVerifierPool, VerifierPool
from agents.policies import RandomAgent, ReplayAgent
from agents.profile import ProfileConfig, profile
from pivot_envs import TrajectoryEnv, get_domain

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class MixedAgent(RandomAgent):
    """The demonstration with probability 1/2, else a random turn: states with reward variance."""

    name = "mixed"

    def __init__(self, records, seed=0):
        super().__init__(seed=seed)
        self.replay = ReplayAgent(records)

    def sample(self, observations, n=1, infos=None):
        rand = super().sample(observations, n, infos)
        gold = self.replay.sample(observations, n, infos)
        return [[g if self.rng.random() < 0.5 else r for g, r in zip(gs, rs, strict=True)]
                for gs, rs in zip(gold, rand, strict=True)]


@pytest.fixture(scope="module")
def ray_session():
    if IN_CI:
        import ray
    else:
        ray = pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install 'pivotrl[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def records():
    return get_domain("tool_use").load(strict=True)[:5]


def _states(records):
    return [(t.id, turn) for t in records for turn in range(t.num_turns)]


def test_every_state_of_a_trajectory_goes_to_one_fixed_actor(ray_session, records):
    with VerifierPool(records, "tool_use", num_actors=2, num_cpus=0.5, chunk_size=2) as pool:
        owners = {t.id: pool.actor_of(t.id) for t in records}
        assert sorted(Counter(owners.values()).values()) == [2, 3]  # dealt round-robin: balanced
        states = _states(records)
        for batch in (states[::2], states[1::2], states[::-1]):  # three calls, different mixes and orders
            groups = pool.verify_states([(tid, turn, ["Hello.", "Hello."]) for tid, turn in batch])
            assert [len(g) for g in groups] == [2] * len(batch)
        counts = pool.restore_counts()
        for actor, served in enumerate(counts):
            assert {tid for tid, _, _ in served} == {tid for tid, a in owners.items() if a == actor}
        per_state = Counter()
        for served in counts:
            per_state.update({(tid, turn): n for tid, turn, n in served})
        assert per_state == Counter({s: 2 for s in states})  # the two calls that held each state, one restore each
        assert [s["trajectories"] for s in pool.stats()] == [len({t for t, _, _ in served}) for served in counts]


def test_profiling_on_actors_restores_each_state_once_and_writes_the_local_rows(ray_session, records, tmp_path):
    driver_restores: Counter = Counter()

    class DriverEnv(TrajectoryEnv):
        def _restore(self, traj, turn):
            driver_restores[(traj.id, turn)] += 1
            return super()._restore(traj, turn)

    cfg = ProfileConfig(k=4, states_per_batch=4, seed=5)
    local_env = TrajectoryEnv(records, domain="tool_use")
    local = profile(local_env, MixedAgent(records), tmp_path / "local", cfg, pool=LocalVerifierPool(local_env))
    env = DriverEnv(records, domain="tool_use")
    with VerifierPool.from_env(env, num_actors=2, num_cpus=0.5) as pool:
        remote = profile(env, MixedAgent(records), tmp_path / "ray", cfg, pool=pool)
        counts = pool.restore_counts()
    assert (remote.directory / "rows.jsonl").read_bytes() == (local.directory / "rows.jsonl").read_bytes()
    assert not driver_restores, "the driver only builds prompts; restores happen on the actors"
    restored = Counter()
    for served in counts:
        restored.update({(tid, turn): n for tid, turn, n in served})
    assert restored == Counter({s: 1 for s in _states(records)})
    assert all(served for served in counts), "both actors worked"
    local_env.close()
    env.close()


def test_unknown_trajectories_still_route_and_fail_with_their_error(ray_session, records):
    with VerifierPool(records, "tool_use", num_actors=2, num_cpus=0.5) as pool:
        assert pool.actor_of("no-such-record") == pool.actor_of("no-such-record") in (0, 1)
        with pytest.raises(KeyError, match="no-such-record"):
            pool.verify_states([("no-such-record", 0, ["hi"])])


# ---------------------------------------------------------------------------------------------------
# The trainer: verification of chunk c overlaps the sampling of chunk c + 1, within one step


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    pytest.importorskip("torch")
    from agents.tiny import build_tiny, save_tiny

    tok, model = build_tiny(get_domain("tool_use").load()[:40], seed=0)
    return str(save_tiny(model, tok, tmp_path_factory.mktemp("tiny") / "base"))


def _train(tiny_path, out, **kw):
    from agents.pivotrl import TrainConfig, train

    cfg = TrainConfig(model=tiny_path, out_dir=str(out), max_trajectories=3, profile_k=2, random_turns=True,
                      max_pivots=4, steps=1, pivots_per_step=4, group_size=2, lr=1e-3, max_new_tokens=12,
                      tensorboard=False, profile_states_per_batch=8, **kw)
    train(cfg, log=lambda *_: None)
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_step_verifies_one_chunk_while_it_samples_the_next(tiny_path, tmp_path, monkeypatch):
    """Verifying chunk 0 waits (up to 30 s) until chunk 1's sampling starts: only an overlapped step gets past."""
    from agents.policies.hf import HFPolicy

    sampled = {"calls": 0}
    more = threading.Condition()
    original = HFPolicy.sample

    def counting_sample(self, *args, **kwargs):
        with more:
            sampled["calls"] += 1
            more.notify_all()
        return original(self, *args, **kwargs)

    waited = []
    original_verify = LocalVerifierPool.verify_states

    def waiting_verify(self, requests):
        if threading.current_thread().name.startswith("pivotrl-verify") and not waited:  # the step's chunk 0
            at_entry = sampled["calls"]
            with more:
                waited.append(more.wait_for(lambda: sampled["calls"] > at_entry, timeout=30))
        return original_verify(self, requests)

    monkeypatch.setattr(HFPolicy, "sample", counting_sample)
    monkeypatch.setattr(LocalVerifierPool, "verify_states", waiting_verify)
    metrics = _train(tiny_path, tmp_path / "run", generation_batch_size=4)  # 2 pivots x 2 samples per chunk
    assert waited == [True]
    assert metrics[0]["rollout/groups"] == 4 and metrics[0]["time/rollout_s"] > 0


def test_one_chunk_steps_are_the_steps_without_overlap(tiny_path, tmp_path):
    keys = ("rollout/reward", "verify/", "loss/policy", "loss/grad_norm")
    on = _train(tiny_path, tmp_path / "on", generation_batch_size=32)  # 4 pivots x 2 samples: one chunk
    off = _train(tiny_path, tmp_path / "off", generation_batch_size=32, overlap_verification=False)
    assert [{k: v for k, v in r.items() if k.startswith(keys)} for r in on] == \
        [{k: v for k, v in r.items() if k.startswith(keys)} for r in off]
