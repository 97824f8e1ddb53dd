"""Ray scale-out: verdicts and profiling rows computed on Ray actors equal the in-process ones.

Runs on a local ``ray.init(num_cpus=2)`` (a few seconds to start, once per module). Ray comes with the
``[ray]`` extra, which ``make setup`` installs: without it these tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import ray  # CI installs the [ray] extra: a missing Ray must fail there, not skip
else:
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install 'pivotrl[ray]')")

from agents.distributed import (  # noqa: E402 - after the Ray check
    LocalVerifierPool,
    PoolError,
    RayUnavailableError,
    VerifierPool,
    VerifyRequest,
    connect,
    make_verifier_pool,
    profile_states,
)
from agents.policies import RandomAgent, ReplayAgent  # noqa: E402
from agents.profile import ProfileConfig, profile  # noqa: E402
from pivot_envs import TrajectoryEnv, get_domain  # noqa: E402
from pivot_envs.trajectory import extract_candidates  # noqa: E402

MALFORMED = [
    "",
    '<tool_call>{"name": "get_order", "arguments": ',
    '<tool_call>{"name": "get_order", "arguments": "W1"}</tool_call>',
    "<tool_call>not json at all</tool_call>",
    '<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>',
]


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
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def records():
    return get_domain("tool_use").load(strict=True)[:5]


@pytest.fixture(scope="module")
def pool(ray_session, records):
    # Half a CPU per actor leaves room on the 2-CPU test cluster for the pools other tests start.
    p = VerifierPool(records, "tool_use", num_actors=2, num_cpus=0.5)
    yield p
    p.close()


@pytest.fixture
def env(records):
    e = TrajectoryEnv(records, domain="tool_use")
    yield e
    e.close()


def _requests(env):
    """Every turn of every record: the demonstration (as a message and as text), 4 random turns, junk."""
    agent = RandomAgent(seed=3)
    reqs = []
    for tid in env.ids:
        traj = env.trajectories[tid]
        for turn in range(traj.num_turns):
            obs, _ = env.reset(options={"trajectory": tid, "turn": turn})
            gold = traj.action(turn)
            randoms = [s.text for s in agent.sample([obs], n=4)[0]]
            reqs.append(VerifyRequest(tid, turn, [gold.to_message(), gold.to_text(), *randoms, *MALFORMED]))
    return reqs


def test_pool_verdicts_equal_local_verdicts(pool, env):
    reqs = _requests(env)
    local = LocalVerifierPool(env).verify_states(reqs)
    before = sum(s["verdicts"] for s in pool.stats())
    remote = pool.verify_states(reqs)
    assert remote == local
    assert [len(g) for g in remote] == [len(r.actions) for r in reqs]
    categories = {v.category for g in remote for v in g}
    methods = {v.method for g in remote for v in g}
    assert "EQUIVALENT" in categories and "error" in methods and len(categories) >= 4, categories
    assert all(g[0].equivalent and g[1].equivalent for g in remote), "the demonstration must verify"
    stats = pool.stats()
    assert sum(s["verdicts"] for s in stats) - before == sum(len(r.actions) for r in reqs)
    assert all(s["requests"] > 0 for s in stats), "both actors must have worked"
    assert len({s["pid"] for s in stats}) == 2 and os.getpid() not in {s["pid"] for s in stats}


def test_order_is_preserved_with_dynamic_chunks(pool, env):
    reqs = _requests(env)
    expected = LocalVerifierPool(env).verify_states(reqs)
    perm = np.random.default_rng(0).permutation(len(reqs))
    pool.chunk_size = 1  # one state per remote call: results come back out of order, the pool reorders
    try:
        shuffled = pool.verify_states([reqs[i] for i in perm])
    finally:
        pool.chunk_size = None
    assert shuffled == [expected[i] for i in perm]
    assert pool.verify_states([]) == []


def test_profiling_rows_on_ray_equal_profile(pool, env, records, tmp_path):
    cfg = ProfileConfig(k=4, states_per_batch=3, seed=7)
    reference = profile(env, MixedAgent(records), tmp_path, cfg).rows
    candidates, _ = extract_candidates(records, cfg.candidates)
    kw = {"k": cfg.k, "seed": cfg.seed, "states_per_batch": cfg.states_per_batch}
    local = profile_states(env, MixedAgent(records), candidates, pool=LocalVerifierPool(env), **kw)
    on_ray = profile_states(env, MixedAgent(records), candidates, pool=pool, **kw)
    all_on_ray = profile_states(env, MixedAgent(records), candidates, pool=pool, observe_on_pool=True, **kw)
    assert local == reference
    assert on_ray == reference
    assert all_on_ray == reference
    assert any(0 < r["var"] for r in reference), "the comparison must include states with mixed rewards"


def test_observations_from_actors_equal_local(pool, env):
    states = [(tid, turn) for tid in env.ids for turn in range(env.trajectories[tid].num_turns)]
    local = LocalVerifierPool(env).observe(states)
    remote = pool.observe(states)
    assert [o for o, _ in remote] == [o for o, _ in local]
    assert [(i["trajectory_id"], i["turn"], i["state_digest"]) for _, i in remote] == \
        [(i["trajectory_id"], i["turn"], i["state_digest"]) for _, i in local]


def test_actor_errors_keep_their_type(pool, env):
    with pytest.raises(KeyError, match="no-such-record"):
        LocalVerifierPool(env).verify_states([("no-such-record", 0, ["hi"])])
    with pytest.raises(KeyError, match="no-such-record"):
        pool.verify_states([("no-such-record", 0, ["hi"])])
    with pytest.raises(TypeError, match="list of actions"):
        pool.verify_states([(env.ids[0], 0, "one string")])


def test_close_closes_every_actor_sandbox(ray_session, records):
    p = VerifierPool(records, "tool_use", num_actors=2, num_cpus=0.5)
    states = [(t.id, turn) for t in records for turn in range(t.num_turns)]
    p.verify_states([(tid, turn, ["Hello."]) for tid, turn in states])
    closed = p.close()
    assert len(closed) == 2
    assert all(c["sandboxes"] >= 1 for c in closed), closed  # each actor restored worlds in its own sandboxes
    assert all(c["left_open"] == 0 for c in closed), closed
    assert p.close() == []
    with pytest.raises(PoolError, match="closed"):
        p.verify_states([(records[0].id, 0, ["Hello."])])


def test_connect_none_is_the_local_pool(env, ray_session):
    assert connect(None) is False
    local = make_verifier_pool(env, ray_address=None)
    assert isinstance(local, LocalVerifierPool)
    gold = env.trajectories[env.ids[0]].action(0).to_message()
    assert local.verify_states([(env.ids[0], 0, [gold])])[0][0].equivalent
    assert local.close()[0]["node_id"] == "local"
    assert env.sandbox is not None, "the local pool does not close an env it does not own"
    # With Ray already initialised (here: by the fixture), "auto" reuses it.
    with make_verifier_pool(env, ray_address="auto", num_actors=1, num_cpus=0.5) as remote:
        assert isinstance(remote, VerifierPool) and remote.num_workers == 1
        assert remote.verify_states([(env.ids[0], 0, [gold])])[0][0].equivalent


def test_pool_arguments_are_checked(pool, records):
    with pytest.raises(ValueError, match="exceeds the 2 CPUs"):
        VerifierPool(records, "tool_use", num_actors=3)
    with pytest.raises(PoolError, match="did not start within"):  # the module's pool holds 1 CPU
        VerifierPool(records, "tool_use", num_actors=2, startup_timeout=2)
    with pytest.raises(ValueError, match="chunk_size"):
        VerifierPool(records, "tool_use", num_actors=1, chunk_size=0)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(RayUnavailableError, match=r"pivotrl\[ray\]"):
        connect("auto")
    assert connect(None) is False


def test_profile_with_a_ray_pool_writes_the_same_rows(ray_session, records, tmp_path):
    env = TrajectoryEnv(records, domain="tool_use")
    cfg = ProfileConfig(k=4, states_per_batch=3, seed=7)
    local = profile(env, MixedAgent(records), tmp_path / "a", cfg)
    with VerifierPool.from_env(env, num_actors=2, num_cpus=0.5) as p:
        remote = profile(env, MixedAgent(records), tmp_path / "b", cfg, pool=p)
    env.close()
    assert remote.rows == local.rows and remote.key == local.key


def test_training_with_ray_logs_the_same_rewards_and_verdicts(ray_session, records, tmp_path):
    import json

    pytest.importorskip("torch")  # the [train] extra, installed by make setup
    from agents.pivotrl import TrainConfig, train
    from agents.tiny import build_tiny, save_tiny

    tok, model = build_tiny(get_domain("tool_use").load()[:40], seed=0)
    tiny = str(save_tiny(model, tok, tmp_path / "tiny"))

    def run(name, **kw):
        cfg = TrainConfig(model=tiny, out_dir=str(tmp_path / name), max_trajectories=3, profile_k=4,
                          random_turns=True, max_pivots=4, steps=2, pivots_per_step=2, group_size=4, lr=1e-3,
                          max_new_tokens=24, tensorboard=False, **kw)
        train(cfg, log=lambda *_: None)
        rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k.startswith(("rollout/reward", "verify/", "loss/"))} for r in rows]

    assert run("local") == run("ray", ray="auto")
