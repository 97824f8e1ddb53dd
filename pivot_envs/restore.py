"""Restoring turn k: replay checks, prefix hashes and the snapshot cache behind ``TrajectoryEnv.reset``."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pivot_envs.trajectory import Trajectory
from sandboxes.core import Snapshot, canonical_json


class RestoreDivergenceError(RuntimeError):
    """Replaying a demonstration did not reproduce a recorded tool output (raised in strict mode)."""

    def __init__(self, trajectory_id: str, divergence: dict[str, Any]):
        super().__init__(
            f"trajectory {trajectory_id!r}, turn {divergence['turn']}: replay gave {divergence['got']!r}, "
            f"recorded {divergence['expected']!r}. The environment spec or the tools differ from the ones "
            "that produced the record; pass strict=False to continue with the replayed state."
        )
        self.trajectory_id = trajectory_id
        self.divergence = divergence


def copy_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A deep copy of OpenAI message dicts, much faster than ``copy.deepcopy`` for this fixed shape.

    Observations are rebuilt on every reset and step, so this is on the hot path of restoring a turn.
    """
    out = []
    for m in messages:
        m = dict(m)
        calls = m.get("tool_calls")
        if calls:
            m["tool_calls"] = [{**c, "function": dict(c["function"])} for c in calls]
        if isinstance(m.get("content"), list):
            m["content"] = [dict(p) if isinstance(p, dict) else p for p in m["content"]]
        out.append(m)
    return out


def outputs_match(recorded: str, produced: str) -> bool:
    """Tool outputs agree when equal after stripping, or equal as parsed JSON."""
    a, b = recorded.strip(), produced.strip()
    if a == b:
        return True
    try:
        return json.loads(a) == json.loads(b)
    except (ValueError, RecursionError, MemoryError):  # not JSON, too deep or a huge integer: texts differ
        return False


def compute_prefix_keys(traj: Trajectory) -> list[str]:
    """h_0..h_T for every turn of ``traj`` (see :meth:`TrajectoryEnv.prefix_keys`).

    Only what changes the world enters the hash: the env spec and each turn's calls (names and
    arguments), never call ids, text or reasoning, so trajectories that act alike share snapshots.
    """
    h = hashlib.sha256(canonical_json({"env": traj.env, "domain": traj.domain}).encode()).hexdigest()
    keys = [h]
    for t in range(traj.num_turns):
        calls = [[c.name, c.arguments if c.arguments is not None else c.raw_arguments] for c in traj.action(t).tool_calls]
        h = hashlib.sha256((h + canonical_json(calls)).encode()).hexdigest()
        keys.append(h)
    return keys


class SnapshotCache:
    """LRU map from prefix hash to sandbox snapshot, shared by an env and its forks.

    ``on_evict(snapshot)`` is called for each snapshot pushed out past ``max_size`` (and for one
    replaced under the same key), so its owner can free it: a Docker snapshot is an image, a local one
    a directory copy.
    """

    def __init__(self, max_size: int = 4096, on_evict: Callable[[Snapshot], None] | None = None):
        self.max_size = max_size
        self.on_evict = on_evict
        self._items: OrderedDict[str, Snapshot] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str) -> Snapshot | None:
        snap = self._items.get(key)
        if snap is not None:
            self._items.move_to_end(key)
        return snap

    def put(self, key: str, snap: Snapshot) -> None:
        old = self._items.get(key)
        self._items[key] = snap
        self._items.move_to_end(key)
        if old is not None and old is not snap:
            self._evict(old)
        while len(self._items) > self.max_size:
            self._evict(self._items.popitem(last=False)[1])

    def _evict(self, snap: Snapshot) -> None:
        self.evictions += 1
        if self.on_evict is not None:
            self.on_evict(snap)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
