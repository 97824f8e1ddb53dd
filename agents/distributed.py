"""Scale-out: restore and verify pivot states on Ray actors, each with its own sandboxes.

Profiling and the trainer do two kinds of environment work per candidate state: restore it to read the
observation the policy samples from, and restore it again to score the K sampled actions with the
domain's verifier. Generation stays where the model is (the driver, or a vLLM server); this module moves
the environment work to a *pool*:

* :class:`LocalVerifierPool` runs it in-process on an existing :class:`~pivot_envs.core.TrajectoryEnv`,
  exactly as ``profile()`` and the trainer always did (the default, no Ray needed);
* :class:`VerifierPool` runs it on Ray actors. Each actor builds its own ``TrajectoryEnv`` from the same
  records (shipped once through Ray's object store as plain dicts), so each actor owns its sandboxes
  and snapshot cache: a sandbox pool per actor, and actors are spread over the cluster's nodes.

Both have one interface (:class:`StatePool`), so callers have a single code path::

    >>> from pivot_envs import TrajectoryEnv, get_domain
    >>> env = TrajectoryEnv(get_domain("tool_use").load()[:2], domain="tool_use")
    >>> pool = make_verifier_pool(env, ray_address=None)       # or "auto", or "ray://head:10001"
    >>> gold = env.trajectories[env.ids[0]].action(0).to_message()
    >>> [v.category for v in pool.verify_states([(env.ids[0], 0, [gold, "Hello."])])[0]]
    ['EQUIVALENT', 'WRONG_KIND']

Verdicts are the same wherever they are computed: verifiers are deterministic and every state is
restored from the same records, so rows profiled on a cluster equal rows profiled locally (tested).

Routing: every request goes to the actor that owns its trajectory, a fixed assignment made once when the
pool starts (records dealt round-robin in file order), so it is stable across batches and calls. The G
samples of a state are one request, and all turns of a trajectory share the snapshot chain
h_0..h_T (:meth:`~pivot_envs.core.TrajectoryEnv.prefix_keys`), so a state's restore finds its own
trajectory's earlier snapshots in that actor's cache instead of replaying from turn 0 on another actor.
(Different records rarely share a prefix: the bundled terminal and tool_use records have pairwise
distinct h_0, so routing by prefix key would place them exactly as routing by trajectory does.)

Observations need no restore: a pivot state's prompt is the record's message prefix, so ``profile()``
and the trainer build prompts with :meth:`~pivot_envs.core.TrajectoryEnv.observation` and each state is
restored once, on the verifying side. :meth:`StatePool.observe` (a full ``reset``) remains for callers
that need the restored info (digest, divergence).

Every node needs the same ``pivotrl`` installation (``pip install 'pivotrl[ray]'``), since actors import
the domains, sandboxes and verifiers by name; a custom :class:`~pivot_envs.domain.Domain` or
:class:`~verifiers.core.Verifier` instance is pickled to the actors instead.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from pivot_envs.actions import Action
from pivot_envs.core import TrajectoryEnv
from pivot_envs.domain import Domain
from pivot_envs.trajectory import Trajectory, record_from_dict
from verifiers.core import Verdict, Verifier, make_verifier

RAY_INSTALL_HINT = "pip install 'pivotrl[ray]' (make setup installs it)"


class RayUnavailableError(ImportError):
    """Ray was asked for (``--ray``) but is not installed."""


class PoolError(RuntimeError):
    """The pool cannot do its work: Ray is not connected, an actor died, or the pool is closed."""


class VerifyRequest(NamedTuple):
    """Score ``actions`` (raw texts, assistant message dicts or :class:`Action`) at one state."""

    trajectory_id: str
    turn: int
    actions: Sequence[str | dict[str, Any] | Action]


class StatePool(Protocol):
    """What ``profile()`` and the trainer need from a pool (local or Ray)."""

    def observe(self, states: Sequence[tuple[str, int]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``env.reset`` to each ``(trajectory_id, turn)``: the ``(observation, info)`` pairs, in order.

        A full restore; to build prompts only, ``TrajectoryEnv.observation`` gives the same observation
        without touching a sandbox (what ``profile()`` and the trainer do).
        """
        ...

    def verify_states(self, requests: Sequence[VerifyRequest | tuple[str, int, Sequence[Any]]]) -> list[list[Verdict]]:
        """One list of verdicts per request, aligned with its actions, requests in order."""
        ...

    def close(self) -> list[dict[str, Any]]:
        """Close every sandbox the pool opened; returns what each worker closed."""
        ...


# ---------------------------------------------------------------------------------------------------
# The work itself, shared by the local pool and the actors


class _StateWorker:
    """Restores and verifies states on one ``TrajectoryEnv``; a Ray actor class, or used in-process."""

    def __init__(self, env: TrajectoryEnv, verifier: Verifier | None = None):
        self.env, self.verifier = env, verifier
        self.requests = self.verdicts = 0
        self.restores: Counter[tuple[str, int]] = Counter()  # resets per state, for stats and tests
        self._sandboxes: dict[int, Any] = {}  # every sandbox that was current, to check close() closed them

    def _reset(self, trajectory_id: str, turn: int) -> tuple[dict[str, Any], dict[str, Any]]:
        out = self.env.reset(options={"trajectory": trajectory_id, "turn": turn})
        self.restores[(trajectory_id, turn)] += 1
        if self.env.sandbox is not None:
            self._sandboxes[id(self.env.sandbox)] = self.env.sandbox
        return out

    def observe(self, states: Sequence[tuple[str, int]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [self._reset(tid, turn) for tid, turn in states]

    def verify(self, requests: Sequence[tuple[str, int, Sequence[Any]]]) -> list[list[Verdict]]:
        # The same steps as profile() and the trainer: restore, parse with the record's domain format,
        # one verify_batch per state (execution verifiers run the demonstration once per state).
        out = []
        for tid, turn, actions in requests:
            self._reset(tid, turn)
            traj = self.env.trajectory
            fmt = self.env.domain_of(traj).action_format
            candidates = [Action.coerce(a, fmt) for a in actions]
            verifier = self.verifier or self.env.verifier_for(traj)
            out.append(verifier.verify_batch(self.env.expected_action(), candidates, self.env.verify_context()))
            self.requests += 1
            self.verdicts += len(candidates)
        return out

    def verify_dicts(self, requests: Sequence[tuple[str, int, Sequence[Any]]]) -> list[list[dict[str, Any]]]:
        # Verdicts cross process boundaries as plain dicts: no pickled classes that could differ by version.
        return [[v.to_dict() for v in group] for group in self.verify(requests)]

    def node_id(self) -> str:
        return "local"

    def stats(self) -> dict[str, Any]:
        return {"node_id": self.node_id(), "pid": os.getpid(), "requests": self.requests, "verdicts": self.verdicts,
                "restores": sum(self.restores.values()), "trajectories": len({t for t, _ in self.restores})}

    def restore_counts(self) -> list[tuple[str, int, int]]:
        """``(trajectory_id, turn, resets)`` for every state this worker restored."""
        return [(t, k, n) for (t, k), n in sorted(self.restores.items())]

    def close(self) -> dict[str, Any]:
        self.env.close()
        sandboxes = list(self._sandboxes.values())
        self._sandboxes.clear()
        return {**self.stats(), "sandboxes": len(sandboxes), "left_open": sum(not sb.closed for sb in sandboxes)}

    def ready(self) -> bool:
        return True


def _as_request(r: VerifyRequest | tuple[str, int, Sequence[Any]]) -> tuple[str, int, list[Any]]:
    tid, turn, actions = r
    if isinstance(actions, str):
        raise TypeError(f"request for {tid!r} turn {turn}: actions must be a list of actions, got one string")
    return str(tid), int(turn), list(actions)


# ---------------------------------------------------------------------------------------------------
# Pools


class LocalVerifierPool:
    """The in-process pool: works on ``env`` itself, as ``profile()`` and the trainer did without a pool.

    Args:
        env: The environment holding the trajectories (not closed by :meth:`close` unless ``owns_env``).
        verifier: A verifier name or instance overriding the env's per-record default.
        owns_env: Close ``env`` in :meth:`close`.
    """

    thread_safe = False
    """One env, one current state: calls must not overlap (profiling verifies one batch at a time here)."""

    def __init__(self, env: TrajectoryEnv, verifier: str | Verifier | None = None, *, owns_env: bool = False):
        self._worker = _StateWorker(env, make_verifier(verifier) if isinstance(verifier, str) else verifier)
        self.owns_env = owns_env
        self.num_workers = 1

    def observe(self, states: Sequence[tuple[str, int]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return self._worker.observe(states)

    def verify_states(self, requests: Sequence[VerifyRequest | tuple[str, int, Sequence[Any]]]) -> list[list[Verdict]]:
        return self._worker.verify([_as_request(r) for r in requests])

    def stats(self) -> list[dict[str, Any]]:
        return [self._worker.stats()]

    def restore_counts(self) -> list[tuple[str, int, int]]:
        """``(trajectory_id, turn, resets)`` for every state the pool restored."""
        return self._worker.restore_counts()

    def close(self) -> list[dict[str, Any]]:
        return [self._worker.close()] if self.owns_env else [self._worker.stats()]

    def __enter__(self) -> LocalVerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VerifierPool:
    """Ray actors, each holding its own ``TrajectoryEnv`` (and so its own sandboxes) over ``trajectories``.

    Args:
        trajectories: The records; every actor gets all of them.
        domain: Domain name (or a :class:`Domain`, pickled to the actors).
        verifier: Verifier name or instance; None = each record's domain default (as ``TrajectoryEnv``).
        num_actors: Actors to start; default = the CPUs Ray reports free divided by ``num_cpus``, at
            least 1 (other pools and tasks may hold some of the cluster's CPUs).
        num_cpus: CPUs Ray reserves for each actor (fractions allowed).
        chunk_size: States per remote call within one actor's share of a call; default = the whole share
            (one remote call per actor).
        cache_size, snapshot_budget_bytes, strict: Passed to each actor's ``TrajectoryEnv`` (the budget is
            per actor: a node's memory holds its actors' budgets).
        startup_timeout: Seconds to wait for every actor to build its env before failing.

    Call :func:`connect` first. The actors are spread over nodes (Ray's ``SPREAD`` strategy). Each
    trajectory belongs to one actor (see the module docstring, "Routing"): :meth:`actor_of`.
    """

    thread_safe = True
    """Calls from several threads may overlap (each actor runs its calls in arrival order), so pipelined
    profiling keeps up to ``pipeline_depth`` batches verifying at once: no actor idles at a batch's tail."""

    def __init__(
        self,
        trajectories: Sequence[Trajectory],
        domain: str | Domain = "generic",
        verifier: str | Verifier | None = None,
        *,
        num_actors: int | None = None,
        num_cpus: float = 1.0,
        chunk_size: int | None = None,
        cache_size: int = 4096,
        snapshot_budget_bytes: int | None = 1 << 30,
        strict: bool = False,
        startup_timeout: float = 120.0,
    ):
        ray = _import_ray()
        if not ray.is_initialized():
            raise PoolError("Ray is not connected: call agents.distributed.connect(ADDRESS) first "
                            "(ADDRESS = 'auto' for a running cluster or a local one)")
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        if num_actors is None:
            free = float(ray.available_resources().get("CPU", 0.0))
            num_actors = max(1, int(free // num_cpus)) if num_cpus > 0 else 1
        if num_actors < 1:
            raise ValueError(f"num_actors={num_actors}: a pool needs at least one actor")
        if num_actors * num_cpus > cpus:
            raise ValueError(f"num_actors={num_actors} x num_cpus={num_cpus} exceeds the {cpus:g} CPUs the Ray "
                             "cluster has, so some actors would never start; ask for fewer actors or lower num_cpus")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be >= 1 (or None for one chunk per actor)")
        self.chunk_size = chunk_size
        # Stable routing: the i-th record's states always go to actor i mod n (balanced counts, and
        # neighbouring records, which one profiling batch holds together, land on different actors).
        self._owner = {t.id: i % num_actors for i, t in enumerate(trajectories)}
        self._ray = ray
        records = ray.put([t.to_dict() for t in trajectories])  # shipped once, not once per actor
        actor_cls = ray.remote(_RayWorker).options(num_cpus=num_cpus, scheduling_strategy="SPREAD")
        self._actors = [actor_cls.remote(records, domain, verifier, cache_size, strict, snapshot_budget_bytes)
                        for _ in range(num_actors)]
        try:
            ray.get([a.ready.remote() for a in self._actors], timeout=startup_timeout)
        except ray.exceptions.GetTimeoutError as exc:
            self._kill()
            free = ray.available_resources().get("CPU", 0.0)
            raise PoolError(f"{num_actors} actors did not start within {startup_timeout:g} s; the cluster has "
                            f"{free:g} of {cpus:g} CPUs free (another pool may hold them: close it, or ask for "
                            "fewer actors or a lower num_cpus)") from exc
        except BaseException:
            self._kill()
            raise

    @classmethod
    def from_env(cls, env: TrajectoryEnv, verifier: str | Verifier | None = None, **kwargs: Any) -> VerifierPool:
        """A pool over ``env``'s records, domain and verifier (``verifier`` overrides the env's)."""
        from pivot_envs.registration import find_domain  # noqa: PLC0415

        domain: str | Domain = env.domain.name if find_domain(env.domain.name) is env.domain else env.domain
        # The env's own verifier setting (a name, an instance or None) has no public accessor yet.
        verifier = verifier if verifier is not None else env._verifier_spec
        kwargs.setdefault("cache_size", env.cache.max_size if env.cache is not None else 0)
        kwargs.setdefault("snapshot_budget_bytes", env.cache.max_bytes if env.cache is not None else 0)
        return cls(list(env.trajectories.values()), domain, verifier, strict=env.strict, **kwargs)

    @property
    def num_workers(self) -> int:
        return len(self._actors)

    def actor_of(self, trajectory_id: str) -> int:
        """Index of the actor that restores and verifies every state of ``trajectory_id``."""
        owner = self._owner.get(trajectory_id)
        if owner is None:  # not one of the pool's records (its actor will raise KeyError): a stable choice
            owner = int(hashlib.sha256(trajectory_id.encode()).hexdigest()[:8], 16) % max(len(self._actors), 1)
        return owner

    def observe(self, states: Sequence[tuple[str, int]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return self._map("observe", [(str(t), int(k)) for t, k in states])

    def verify_states(self, requests: Sequence[VerifyRequest | tuple[str, int, Sequence[Any]]]) -> list[list[Verdict]]:
        groups = self._map("verify_dicts", [_as_request(r) for r in requests])
        return [[Verdict(**d) for d in group] for group in groups]

    def stats(self) -> list[dict[str, Any]]:
        """Per actor: node id, pid, requests and verdicts served, restores and trajectories restored."""
        return self._get([a.stats.remote() for a in self._check_open()])

    def restore_counts(self) -> list[list[tuple[str, int, int]]]:
        """Per actor: ``(trajectory_id, turn, resets)`` for every state it restored."""
        return [[tuple(x) for x in counts] for counts in self._get([a.restore_counts.remote()
                                                                    for a in self._check_open()])]

    def close(self) -> list[dict[str, Any]]:
        """Close every actor's sandboxes, then end the actors. Idempotent."""
        if not self._actors:
            return []
        try:
            return self._get([a.close.remote() for a in self._actors])
        finally:
            self._kill()

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------------

    def _check_open(self) -> list[Any]:
        if not self._actors:
            raise PoolError("this VerifierPool is closed; build a new one")
        return self._actors

    def _map(self, method: str, items: list[Any]) -> list[Any]:
        """Call ``method`` on each item's owning actor (items start with a trajectory id); results in order."""
        actors = self._check_open()
        if not items:
            return []
        shares: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            shares.setdefault(self.actor_of(item[0]), []).append(i)
        calls: list[tuple[list[int], Any]] = []
        for a, share in shares.items():  # the actors work in parallel; one actor's calls run in order
            size = self.chunk_size or len(share)
            for s in range(0, len(share), size):
                part = share[s : s + size]
                calls.append((part, getattr(actors[a], method).remote([items[i] for i in part])))
        out: list[Any] = [None] * len(items)
        try:
            results = self._ray.get([ref for _, ref in calls])
        except self._ray.exceptions.RayActorError as exc:
            raise PoolError(f"a verifier actor died during {method} ({exc}); the pool is unusable, "
                            "close it and build a new one") from exc
        for (part, _), result in zip(calls, results, strict=True):
            for i, r in zip(part, result, strict=True):
                out[i] = r
        return out

    def _get(self, refs: list[Any]) -> list[Any]:
        try:
            return self._ray.get(refs)
        except self._ray.exceptions.RayActorError as exc:
            raise PoolError(f"a verifier actor died ({exc})") from exc

    def _kill(self) -> None:
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []


class _RayWorker(_StateWorker):
    """The actor: builds its own env from the records (so its sandboxes live in its process)."""

    def __init__(self, records: list[dict[str, Any]], domain: str | Domain, verifier: str | Verifier | None,
                 cache_size: int, strict: bool, snapshot_budget_bytes: int | None = 1 << 30):
        env = TrajectoryEnv([record_from_dict(r) for r in records], domain=domain, verifier=verifier,
                            cache_size=cache_size, snapshot_budget_bytes=snapshot_budget_bytes, strict=strict)
        super().__init__(env)

    def node_id(self) -> str:
        import ray  # noqa: PLC0415 - inside an actor, ray is there

        return ray.get_runtime_context().get_node_id()


# ---------------------------------------------------------------------------------------------------
# Connecting


def _import_ray() -> Any:
    try:
        import ray  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise RayUnavailableError(f"--ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from exc
    return ray


def connect(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Connect to Ray; returns whether Ray is in use.

    * ``None``: no Ray (nothing is imported); the caller uses :class:`LocalVerifierPool`.
    * ``"auto"``: the running cluster this machine belongs to (``ray start``, ``RAY_ADDRESS``), else a new
      local instance with ``num_cpus`` (default: every CPU of this machine).
    * anything else: ``ray.init(address=...)``, e.g. ``"ray://head:10001"`` or ``"10.0.0.1:6379"``.

    An already initialised Ray (a test fixture, a notebook) is reused as it is. The dashboard is not
    started and worker logs are not forwarded: verification failures are verdicts, not log lines.
    """
    if address is None:
        return False
    ray = _import_ray()
    if ray.is_initialized():
        return True
    options = {"include_dashboard": False, "log_to_driver": False}
    if address == "auto":
        try:
            ray.init(address="auto", **options)
        except ConnectionError:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **options)
    else:
        ray.init(address=address, **options)
    return True


def make_verifier_pool(env: TrajectoryEnv, *, ray_address: str | None = None, verifier: str | Verifier | None = None,
                       **ray_options: Any) -> LocalVerifierPool | VerifierPool:
    """The pool for ``--ray ADDRESS``: a :class:`VerifierPool` over ``env``'s records, or the local pool.

    ``ray_options`` go to :class:`VerifierPool` (``num_actors``, ``num_cpus``, ``chunk_size``, ...).
    """
    if not connect(ray_address):
        return LocalVerifierPool(env, verifier)
    return VerifierPool.from_env(env, verifier, **ray_options)


# ---------------------------------------------------------------------------------------------------
# Profiling through a pool


def profile_states(
    env: TrajectoryEnv,
    policy: Any,
    candidates: Sequence[Any],
    *,
    k: int,
    pool: StatePool,
    seed: int = 0,
    states_per_batch: int = 4,
    keep_samples: bool = True,
    observe_on_pool: bool = False,
) -> list[dict[str, Any]]:
    """The rows ``profile()`` computes for ``candidates`` (same seeds, same fields), scored by ``pool``.

    This is ``profile()``'s sequential sampling + verification loop without the cache directory; it shows
    the intended use of a pool there and in the trainer, and lets tests compare pools row for row.
    Prompts come from ``env.observation`` (no restore: each state is restored once, by the pool, to
    verify); ``observe_on_pool`` restores them on the pool instead (the old path, for comparison).
    """
    import numpy as np  # noqa: PLC0415

    rows: list[dict[str, Any]] = []
    for b, start in enumerate(range(0, len(candidates), states_per_batch)):
        batch = candidates[start : start + states_per_batch]
        states = [(c.trajectory_id, c.turn) for c in batch]
        if observe_on_pool:
            pairs = pool.observe(states)
        else:
            pairs = [env.observation(t, k_) for t, k_ in states]
        policy.reseed(seed * 1_000_003 + b)
        samples = policy.sample([o for o, _ in pairs], n=k, infos=[i for _, i in pairs])
        verdict_groups = pool.verify_states([VerifyRequest(t, k_, [s.text for s in group])
                                             for (t, k_), group in zip(states, samples, strict=True)])
        for cand, group, verdicts in zip(batch, samples, verdict_groups, strict=True):
            rewards = [float(v.score) for v in verdicts]
            row = {"trajectory_id": cand.trajectory_id, "turn": cand.turn, "depth": cand.depth,
                   "rewards": rewards, "mean": float(np.mean(rewards)), "var": float(np.var(rewards)),
                   "categories": [v.category for v in verdicts], "methods": [v.method for v in verdicts]}
            if keep_samples:
                row["samples"] = [s.text for s in group]
            rows.append(row)
    return rows
