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


#: Default byte budget of a :class:`SnapshotCache` (and of ``TrajectoryEnv(snapshot_budget_bytes=...)``).
DEFAULT_SNAPSHOT_BUDGET_BYTES = 1 << 30  # 1 GiB

#: What an entry costs beyond its snapshot's ``nbytes``: the key, the :class:`Snapshot` object and the
#: map slots (about 280 bytes measured on CPython 3.11), so a budget of tiny snapshots still bounds memory.
ENTRY_OVERHEAD_BYTES = 256

#: Default stride of the checkpoints a replay snapshots on its way once the cache is full (turns 0, 8, 16, ...).
DEFAULT_CHECKPOINT_EVERY = 8


def snapshot_nbytes(snap: Snapshot) -> int | None:
    """The bytes ``snap`` holds: its ``nbytes``, else its payload's ``nbytes`` (an in-memory archive), else None."""
    n = snap.nbytes
    if n is None:
        n = getattr(snap.payload, "nbytes", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None


class SnapshotCache:
    """LRU map from prefix hash to sandbox snapshot, bounded by a count and a byte budget.

    ``put`` evicts least-recently-used entries until both ``len(cache) <= max_size`` and
    ``cache.bytes <= max_bytes`` hold (``max_bytes=None``: no byte bound). An entry is charged its
    snapshot's :attr:`~sandboxes.core.Snapshot.nbytes` (see :func:`snapshot_nbytes`) plus ``entry_overhead``;
    one of unknown size is charged the overhead only (``stats()["unsized"]`` counts them; ``max_size``
    bounds them). A snapshot larger than the whole budget is not kept (``rejected``). ``on_evict(snapshot)`` is called for every snapshot the
    cache lets go of (evicted, replaced under its key, rejected, or cleared), so its owner frees it at once:
    a Docker snapshot is an archive or an image, a local one a directory copy.

    Which turns a replay snapshots is :meth:`wants`' policy: the requested turn always, the turns on the
    way only while the cache has room for them without evicting, and every ``checkpoint_every``-th turn
    (0, 8, 16, ... by default) always, so that a full cache still rebuilds any evicted state by replaying
    fewer than ``checkpoint_every`` turns from a surviving checkpoint.
    """

    def __init__(self, max_size: int = 4096, on_evict: Callable[[Snapshot], None] | None = None, *,
                 max_bytes: int | None = DEFAULT_SNAPSHOT_BUDGET_BYTES,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, entry_overhead: int = ENTRY_OVERHEAD_BYTES):
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1 (0 means no cache: pass cache=None), got {max_size}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 or None (no byte bound), got {max_bytes}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.max_size = max_size
        self.max_bytes = max_bytes
        self.checkpoint_every = checkpoint_every
        self.entry_overhead = entry_overhead
        self.on_evict = on_evict
        self._items: OrderedDict[str, Snapshot] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self.bytes = 0  # bytes held now
        self.bytes_in = self.bytes_out = 0  # bytes ever admitted / let go of since (bytes = bytes_in - bytes_out)
        self.hits = self.prefix_hits = self.misses = 0  # restores: exact turn cached / a shorter prefix / none
        self.replayed_turns = 0  # turns replayed by restores that went through this cache
        self.evictions = self.rejected = 0
        self._sized = 0  # entries of known size

    # -- lookups --------------------------------------------------------------------------------------

    def get(self, key: str) -> Snapshot | None:
        """The snapshot under ``key`` (marked most recently used), or None. Counts nothing."""
        snap = self._items.get(key)
        if snap is not None:
            self._items.move_to_end(key)
        return snap

    def longest_prefix(self, keys: list[str]) -> tuple[int, Snapshot | None]:
        """``(j, snapshot)`` for the largest j with ``keys[j]`` cached, or ``(0, None)``; counts the restore.

        ``keys`` are a trajectory's prefix hashes h_0..h_k, so the restore of turn k starts from the
        deepest state any trajectory with the same env spec and first j actions left in the cache.
        """
        k = len(keys) - 1
        for j in range(k, -1, -1):
            snap = self.get(keys[j])
            if snap is not None:
                if j == k:
                    self.hits += 1
                else:
                    self.prefix_hits += 1
                return j, snap
        self.misses += 1
        return 0, None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    # -- the snapshot policy -----------------------------------------------------------------------

    def has_room(self) -> bool:
        """True when one more entry of the mean size fits without evicting anything."""
        if len(self._items) >= self.max_size:
            return False
        if self.max_bytes is None:
            return True
        mean = self.bytes // len(self._items) if self._items else 0
        return self.bytes + mean <= self.max_bytes

    def wants(self, turn: int, target: int) -> bool:
        """Whether a replay towards turn ``target`` should snapshot the state before ``turn`` (see the class doc)."""
        return turn == target or turn % self.checkpoint_every == 0 or self.has_room()

    # -- updates ---------------------------------------------------------------------------------------

    def put(self, key: str, snap: Snapshot) -> bool:
        """Cache ``snap`` under ``key`` as the most recently used entry; returns False if it was not kept.

        Evicts least-recently-used entries until both bounds hold. A snapshot bigger than ``max_bytes``
        on its own is let go of at once (``on_evict``) and evicts nothing.
        """
        size = snapshot_nbytes(snap)
        nbytes = (size or 0) + self.entry_overhead
        old = self._items.get(key)
        if old is snap:
            self._items.move_to_end(key)
            return True
        if self.max_bytes is not None and nbytes > self.max_bytes:
            self.rejected += 1
            self._free(snap)
            return False
        if old is not None:
            self._remove(key)
            self.evictions += 1
            self._free(old)
        self._items[key] = snap
        self._sizes[key] = nbytes
        self.bytes += nbytes
        self.bytes_in += nbytes
        if size is not None:
            self._sized += 1
        while len(self._items) > self.max_size or (self.max_bytes is not None and self.bytes > self.max_bytes):
            lru = next(iter(self._items))
            victim = self._remove(lru)
            self.evictions += 1
            self._free(victim)
        return True

    def _remove(self, key: str) -> Snapshot:
        snap = self._items.pop(key)
        nbytes = self._sizes.pop(key)
        self.bytes -= nbytes
        self.bytes_out += nbytes
        if snapshot_nbytes(snap) is not None:
            self._sized -= 1
        return snap

    def _free(self, snap: Snapshot) -> None:
        if self.on_evict is not None:
            self.on_evict(snap)

    def clear(self) -> None:
        """Let go of every snapshot (``on_evict`` for each, not counted as evictions)."""
        while self._items:
            self._free(self._remove(next(iter(self._items))))

    def stats(self) -> dict[str, Any]:
        """Counters and sizes, JSON-able: entries, bytes (charged now: nbytes plus overhead), max_bytes, max_size, bytes_in,
        bytes_out, hits, prefix_hits, misses, replayed_turns, evictions, rejected, unsized."""
        return {"entries": len(self._items), "bytes": self.bytes, "max_bytes": self.max_bytes,
                "max_size": self.max_size, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "hits": self.hits, "prefix_hits": self.prefix_hits, "misses": self.misses,
                "replayed_turns": self.replayed_turns, "evictions": self.evictions, "rejected": self.rejected,
                "unsized": len(self._items) - self._sized}
