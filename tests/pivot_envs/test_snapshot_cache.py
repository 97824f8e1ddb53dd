"""The snapshot cache behind ``TrajectoryEnv.reset``: byte budget, longest-prefix restores, prefix sharing,
rebuilding evicted states by replay, and which turns a replay snapshots."""

from __future__ import annotations

import json
import random

import pytest

from pivot_envs import Domain, TrajectoryEnv, check_trajectory_env
from pivot_envs.restore import SnapshotCache, snapshot_nbytes
from pivot_envs.trajectory import record_from_dict
from sandboxes import InProcessSandbox, Snapshot

# -- SnapshotCache on its own --------------------------------------------------------------------------


def snap(name: str, nbytes: int | None) -> Snapshot:
    return Snapshot("test", name, payload=name, nbytes=nbytes)


def test_snapshot_keeps_its_three_argument_constructor_and_equality():
    old_style = Snapshot("inprocess", "d" * 64, {"x": 1})
    assert old_style.nbytes is None and snapshot_nbytes(old_style) is None
    assert Snapshot("inprocess", "d" * 64, {"x": 1}, nbytes=10) == old_style  # size is not identity


def test_payload_nbytes_counts_when_the_snapshot_has_none():
    class Archive:
        nbytes = 4096

    assert snapshot_nbytes(Snapshot("docker", "d", Archive())) == 4096
    assert snapshot_nbytes(Snapshot("docker", "d", Archive(), nbytes=7)) == 7


def test_byte_budget_evicts_least_recently_used_first_and_frees_each():
    freed: list[str] = []
    cache = SnapshotCache(100, on_evict=lambda s: freed.append(s.digest), max_bytes=300, entry_overhead=0)
    for name in "abc":
        assert cache.put(name, snap(name, 100))
    assert cache.bytes == 300 and not cache.has_room()
    assert cache.get("a") is not None  # a is now the most recently used: b goes first
    cache.put("d", snap("d", 150))
    assert freed == ["b", "c"] and set(cache._items) == {"a", "d"} and cache.bytes == 250
    stats = cache.stats()
    assert stats["evictions"] == 2 and stats["bytes_in"] == 450 and stats["bytes_out"] == 200
    assert stats["bytes"] == stats["bytes_in"] - stats["bytes_out"]
    json.dumps(stats)


def test_count_bound_still_holds_and_unsized_snapshots_count_zero_bytes():
    freed: list[str] = []
    cache = SnapshotCache(2, on_evict=lambda s: freed.append(s.digest), max_bytes=10, entry_overhead=0)
    cache.put("a", snap("a", None))
    cache.put("b", snap("b", None))
    cache.put("c", snap("c", 4))
    assert freed == ["a"] and len(cache) == 2 and cache.bytes == 4
    assert cache.stats()["unsized"] == 1


def test_a_snapshot_over_the_whole_budget_is_rejected_and_freed_without_evicting():
    freed: list[str] = []
    cache = SnapshotCache(10, on_evict=lambda s: freed.append(s.digest), max_bytes=100, entry_overhead=0)
    cache.put("a", snap("a", 60))
    assert cache.put("huge", snap("huge", 101)) is False
    assert freed == ["huge"] and "a" in cache and "huge" not in cache
    assert cache.rejected == 1 and cache.evictions == 0 and cache.bytes == 60


def test_each_entry_is_charged_an_overhead_so_tiny_or_unsized_snapshots_stay_bounded():
    cache = SnapshotCache(1000, max_bytes=1000, entry_overhead=100)
    for i in range(20):
        cache.put(f"k{i}", snap(str(i), None if i % 2 else 10))
    assert cache.bytes <= 1000 and len(cache) == 9 and cache.evictions == 11
    assert cache.bytes == 9 * 100 + 4 * 10 and cache.stats()["unsized"] == 5


def test_replacing_a_key_frees_the_old_snapshot_and_recounts_bytes():
    freed: list[str] = []
    cache = SnapshotCache(10, on_evict=lambda s: freed.append(s.digest), max_bytes=None, entry_overhead=0)
    cache.put("k", snap("old", 40))
    cache.put("k", snap("new", 10))
    assert freed == ["old"] and cache.bytes == 10 and len(cache) == 1
    cache.clear()
    assert freed == ["old", "new"] and cache.bytes == 0 and len(cache) == 0


def test_longest_prefix_counts_exact_and_prefix_hits_and_misses():
    cache = SnapshotCache(10, max_bytes=None)
    cache.put("h0", snap("s0", 1))
    cache.put("h2", snap("s2", 1))
    assert cache.longest_prefix(["h0", "h1", "h2", "h3"]) == (2, cache.get("h2"))
    assert cache.longest_prefix(["h0", "h1", "h2"])[0] == 2
    assert cache.longest_prefix(["x0", "x1"]) == (0, None)
    assert (cache.hits, cache.prefix_hits, cache.misses) == (1, 1, 1)


def test_snapshot_policy_takes_the_target_and_checkpoints_always_and_others_only_with_room():
    cache = SnapshotCache(1, max_bytes=None, checkpoint_every=4)
    assert cache.wants(3, 9) and cache.wants(9, 9)  # room: every turn on the way
    cache.put("a", snap("a", 1))  # full
    assert [t for t in range(10) if cache.wants(t, 9)] == [0, 4, 8, 9]


# -- a bank of deposits: turn t's state holds t deposits -----------------------------------------------

SNAPSHOTS: list[int] = []  # the turn (number of deposits) of every snapshot a CountingSandbox took
CALLS: list[int] = []  # every executed deposit's amount


def deposit(state, account, amount):
    CALLS.append(amount)
    state["balances"][account] = state["balances"].get(account, 0) + amount
    state["log"].append(amount)
    return {"balance": state["balances"][account]}


class CountingSandbox(InProcessSandbox):
    def snapshot(self):
        SNAPSHOTS.append(len(self.state["log"]))
        return super().snapshot()


BANK = Domain(name="bank_cache_test", env_id="pivot/BankCacheTest-v0", tools={"deposit": deposit},
              sandbox_factory=lambda t: CountingSandbox(t.env["state"], tools={"deposit": deposit}))
TOOLS = [{"type": "function", "function": {"name": "deposit", "parameters": {"type": "object", "properties": {
    "account": {"type": "string"}, "amount": {"type": "number"}}, "required": ["account", "amount"]}}}]


def bank_record(rid: str, amounts: list[int], padding: int = 0):
    """A record of ``len(amounts)`` deposits then a closing message; ``padding`` bytes of state make
    its snapshots bigger."""
    state = {"balances": {"alice": 0}, "log": [], "padding": "x" * padding}
    msgs: list[dict] = [{"role": "user", "content": "deposit"}]
    total = 0
    for i, a in enumerate(amounts):
        total += a
        args = json.dumps({"account": "alice", "amount": a})
        msgs += [{"role": "assistant", "tool_calls": [{"id": f"c{i}", "type": "function",
                                                       "function": {"name": "deposit", "arguments": args}}]},
                 {"role": "tool", "tool_call_id": f"c{i}", "content": json.dumps({"balance": total})}]
    msgs.append({"role": "assistant", "content": f"done: {total}"})
    return record_from_dict({"id": rid, "domain": BANK.name, "tools": TOOLS, "messages": msgs,
                             "env": {"sandbox": "inprocess", "state": state}})


@pytest.fixture(autouse=True)
def _reset_counters():
    SNAPSHOTS.clear()
    CALLS.clear()


def test_restore_starts_from_the_longest_cached_prefix_and_replays_only_the_rest():
    env = TrajectoryEnv([bank_record("a", [1, 2, 3, 4, 5, 6])], domain=BANK)
    env.reset(options={"trajectory": "a", "turn": 2})
    CALLS.clear()
    _, info = env.reset(options={"trajectory": "a", "turn": 5})
    assert info["restored_from"] == "cache@2+replay" and CALLS == [3, 4, 5]
    CALLS.clear()
    _, info = env.reset(options={"trajectory": "a", "turn": 4})  # cached on the way to 5
    assert info["restored_from"] == "cache" and CALLS == []
    assert env.cache.stats()["replayed_turns"] == 2 + 3


def test_trajectories_that_share_their_first_turns_share_snapshots():
    a, b = bank_record("a", [1, 2, 3, 4]), bank_record("b", [1, 2, 30, 40])
    env = TrajectoryEnv([a, b], domain=BANK)
    env.reset(options={"trajectory": "a", "turn": 4})
    CALLS.clear()
    _, info = env.reset(options={"trajectory": "b", "turn": 4})
    assert info["restored_from"] == "cache@2+replay" and CALLS == [30, 40]  # b's first two turns were a's
    ka, kb = env.prefix_keys(a, 4), env.prefix_keys(b, 4)
    assert ka[:3] == kb[:3] and ka[3] != kb[3]
    assert all(env.cache.get(ka[j]) is env.cache.get(kb[j]) for j in range(3))  # one snapshot each, shared
    assert len(env.cache) == 5 + 2
    _, info = env.reset(options={"trajectory": "b", "turn": 1})
    assert info["restored_from"] == "cache" and env.sandbox.state["log"] == [1]


def test_a_full_cache_snapshots_only_the_requested_turn_and_checkpoints():
    env = TrajectoryEnv([bank_record("a", list(range(1, 21)))], domain=BANK, cache_size=2)
    env.cache.checkpoint_every = 8
    _, info = env.reset(options={"trajectory": "a", "turn": 19})
    # Room for two entries: turns 0 and 1 fill it, then only checkpoints (8, 16) and the target (19).
    assert SNAPSHOTS == [0, 1, 8, 16, 19] and info["restored_from"] == "replay"
    assert len(env.cache) == 2 and env.cache.evictions == 3
    SNAPSHOTS.clear()
    CALLS.clear()
    _, info = env.reset(options={"trajectory": "a", "turn": 18})  # from checkpoint 16, kept (most recent but one)
    assert info["restored_from"] == "cache@16+replay" and CALLS == [17, 18] and SNAPSHOTS == [18]


def test_an_unbounded_cache_still_snapshots_every_turn_on_the_way():
    env = TrajectoryEnv([bank_record("a", list(range(1, 11)))], domain=BANK, snapshot_budget_bytes=None)
    env.reset(options={"trajectory": "a", "turn": 10})
    assert SNAPSHOTS == list(range(11)) and env.cache.max_bytes is None


def test_a_zero_budget_disables_the_cache():
    env = TrajectoryEnv([bank_record("a", [1, 2])], domain=BANK, snapshot_budget_bytes=0)
    assert env.cache is None
    _, info = env.reset(options={"trajectory": "a", "turn": 2})
    assert info["restored_from"] == "replay" and SNAPSHOTS == []


def test_reported_digest_after_a_replay_is_the_live_worlds():
    env = TrajectoryEnv([bank_record("a", [1, 2, 3])], domain=BANK)
    for turn in (3, 0, 2):
        env.reset(options={"trajectory": "a", "turn": turn})  # fills the cache
    for turn in (1, 3):
        _, info = env.reset(options={"trajectory": "a", "turn": turn})
        assert info["state_digest"] == env.state_digest()


def random_restores(env: TrajectoryEnv, plain: TrajectoryEnv, rounds: int, seed: int) -> list[str]:
    """Restore random (trajectory, turn) pairs in ``env`` and check each against ``plain`` (no cache)."""
    rng = random.Random(seed)
    sources = []
    states = [(t.id, k) for t in env.trajectories.values() for k in range(t.num_turns)]
    want = {}
    for tid, k in states:
        obs, info = plain.reset(options={"trajectory": tid, "turn": k})
        want[tid, k] = (obs, info["state_digest"])
    for _ in range(rounds):
        tid, k = rng.choice(states)
        obs, info = env.reset(options={"trajectory": tid, "turn": k})
        assert (obs, info["state_digest"]) == want[tid, k], (tid, k, info["restored_from"])
        assert info["state_digest"] == env.state_digest() and info["divergence"] == []
        if env.cache.max_bytes is not None:
            assert env.cache.bytes <= env.cache.max_bytes
        sources.append(info["restored_from"])
    return sources


def test_a_tiny_budget_rebuilds_evicted_states_by_replay_with_identical_digests():
    records = [bank_record(f"r{i}", [i + 1] * 3 + [j + 10 * i for j in range(9)], padding=5000) for i in range(3)]
    one = TrajectoryEnv(records[:1], domain=BANK)
    one.reset(options={"trajectory": "r0", "turn": 0})
    size = one.cache.bytes  # one snapshot of this world
    budget = 4 * size + size // 2
    env = TrajectoryEnv(records, domain=BANK, snapshot_budget_bytes=budget)
    plain = TrajectoryEnv(records, domain=BANK, cache_size=0)
    sources = random_restores(env, plain, 150, seed=3)
    stats = env.cache.stats()
    assert stats["evictions"] > 50 and stats["bytes"] <= budget and stats["entries"] <= 4
    assert {"replay", "cache"} <= set(sources) and any(s.startswith("cache@") for s in sources)


def test_tool_use_with_a_tiny_budget(tool_use_records):
    records = tool_use_records[:4]
    env = TrajectoryEnv(records, domain="tool_use", snapshot_budget_bytes=6000)
    plain = TrajectoryEnv(records, domain="tool_use", cache_size=0)
    try:
        random_restores(env, plain, 80, seed=1)
        assert env.cache.evictions > 20 and env.cache.bytes <= 6000
    finally:
        env.close()
        plain.close()


def test_the_checker_passes_under_a_budget_that_forces_evictions(tool_use_records):
    env = TrajectoryEnv(tool_use_records[:3], domain="tool_use", snapshot_budget_bytes=5000)
    try:
        report = check_trajectory_env(env, gym_checks=False)
        assert report.trajectories == 3 and env.cache.evictions > 0
    finally:
        env.close()


def test_local_shell_with_a_tiny_budget(local_shell_worlds):
    from pivot_envs.domains.terminal.expert import generate

    records = [record_from_dict(r) for r in generate(2, seed=5)]
    env = TrajectoryEnv(records, domain="terminal")
    env.reset(options={"trajectory": records[0].id, "turn": 0})
    size = env.cache.bytes
    env.close()
    assert size >= 1024  # a tar-sized copy of the workspace
    budget = 3 * size
    env = TrajectoryEnv(records, domain="terminal", snapshot_budget_bytes=budget)
    plain = TrajectoryEnv(records, domain="terminal", cache_size=0)
    try:
        random_restores(env, plain, 16, seed=2)
        assert env.cache.evictions > 0
        assert len(env.sandbox._snapshots) == len(env.cache)  # evicted copies were deleted, none leaked
    finally:
        env.close()
        plain.close()
