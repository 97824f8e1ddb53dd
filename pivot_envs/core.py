"""TrajectoryEnv: each expert trajectory becomes a Gymnasium environment that can restore any turn.

>>> import gymnasium as gym, pivot_envs
>>> env = gym.make("pivot/ToolUse-v0")
>>> obs, info = env.reset(seed=0, options={"turn": 2})
>>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.expected_action().to_text())
>>> reward, terminated, info["verdict"].category
(1.0, True, 'EQUIVALENT')

Turn ``k`` is the k-th assistant message of the record (0-based). ``reset(options={"trajectory": id,
"turn": k})`` gives the message prefix before turn k *and* a sandbox in the state the demonstration had
there: the recorded actions 0..k-1 are replayed through the sandbox, each result is compared with the
recorded tool output (mismatches are listed in ``info["divergence"]``; ``strict=True`` raises), and a
snapshot is cached under the hash of (env spec, actions[:k]) so trajectories that share a prefix share
snapshots and a second reset to the same turn costs one restore. A reset starts from the longest cached
prefix and replays only the turns after it; the cache is bounded by a byte budget, and an evicted state
is rebuilt the same way (see :class:`TrajectoryEnv`).

Two modes:

* ``mode="pivot"``: one step; reward = the verifier's score of the action against the demonstrated one;
  ``info["verdict"]`` is the :class:`~verifiers.core.Verdict`. This is PivotRL's local rollout.
* ``mode="episode"``: tool calls run in the sandbox and their outputs come back as observations; when the
  agent's user turn closes, the next recorded user turn is replayed (``info["user"] == "replayed"``); the
  episode ends when no user turn is left (reward = the task's outcome) or after ``max_turns``
  (truncated).

A user turn closes when the agent sends a message without tool calls, or, where the record's own user
turn ends after tool calls (no closing message: the next user message or the end of the record closes
it), once the agent has taken as many steps in it as the demonstration did. Each time one closes, the
domain's ``turn_success`` hook (if any) judges the world; ``info["turn_success"]`` carries the result and
the episode succeeds only if every result is true and the whole-episode outcome holds.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from pivot_envs.actions import Action
from pivot_envs.domain import Domain
from pivot_envs.restore import (
    DEFAULT_SNAPSHOT_BUDGET_BYTES,
    RestoreDivergenceError,
    SnapshotCache,
    compute_prefix_keys,
    copy_messages,
    outputs_match,
)
from pivot_envs.spaces import AssistantTurn, Chat
from pivot_envs.trajectory import Trajectory, content_text, load_trajectories
from sandboxes.core import Sandbox, Snapshot, canonical_json
from verifiers.core import Verdict, Verifier, VerifierLike, VerifyContext, make_verifier, verifier_label

MODES = ("pivot", "episode")


@dataclass(frozen=True)
class UserTurns:
    """How a record's assistant turns group into user turns (episode mode's turn protocol).

    ``of_turn[k]``: the user turn of assistant turn k (0-based among the record's user messages; turns
    before the first user message belong to user turn 0). Per user turn u: ``first_turn[u]``, ``steps[u]``
    (assistant turns in it) and ``ends_with_calls[u]`` (its last assistant turn calls tools, so no closing
    message ends it: the next user message or the end of the record does).
    """

    of_turn: tuple[int, ...]
    first_turn: tuple[int, ...]
    steps: tuple[int, ...]
    ends_with_calls: tuple[bool, ...]


def user_turns(traj: Trajectory) -> UserTurns:
    """The :class:`UserTurns` of ``traj``."""
    of_turn, users = [], 0
    last_call: dict[int, bool] = {}
    for m in traj.messages:
        role = m.get("role")
        if role == "user":
            users += 1
        elif role == "assistant":
            u = max(users - 1, 0)
            of_turn.append(u)
            last_call[u] = bool(m.get("tool_calls"))
    n = max(of_turn, default=0) + 1
    first = [next((k for k, u in enumerate(of_turn) if u == i), len(of_turn)) for i in range(n)]
    steps = [sum(1 for u in of_turn if u == i) for i in range(n)]
    return UserTurns(tuple(of_turn), tuple(first), tuple(steps), tuple(last_call.get(i, False) for i in range(n)))



class TrajectoryEnv(gym.Env[dict, str]):
    """A Gymnasium env over a set of trajectories of one domain (see the module docstring).

    Args:
        trajectories: A JSONL path, a list of :class:`Trajectory`, or None for the domain's bundled data.
        domain: A registered domain name or env id, or a :class:`Domain`. Records whose own ``domain`` is
            registered use that domain; others use this one.
        mode: ``"pivot"`` or ``"episode"``.
        verifier: A verifier name, ``(name, kwargs)``, instance or factory; default = each record's domain's.
        strict: Raise :class:`RestoreDivergenceError` when a replay differs from the record.
        max_turns: Episode-mode turn budget; default twice the demonstration's remaining turns plus 2.
        cache_size: Snapshot cache capacity in entries (0 disables caching: every reset replays from
            turn 0). The least recently used snapshots beyond it are freed at once (Docker snapshots,
            workspace copies).
        snapshot_budget_bytes: Snapshot cache capacity in bytes (default 1 GiB; None: no byte bound; 0
            disables caching), counted by each snapshot's ``nbytes`` (serialized state, copied files,
            archive); least recently used snapshots are evicted until both bounds hold.
        render_mode: None or ``"ansi"``.

    Restoring turn k (``reset``) looks up the longest prefix h_j (j <= k) of its actions that any
    trajectory left in the cache, restores that snapshot (or builds turn 0's world), and replays turns
    j..k-1 only. An evicted state is thus rebuilt transparently, with the same digest, from the nearest
    surviving prefix. Snapshots cost a copy each, so a replay does not take one at every turn: it
    snapshots the requested turn k always, the turns on the way only while the cache has room for them
    without evicting anything, and every ``cache.checkpoint_every``-th turn (0, 8, 16, ...) always, so a
    full cache replays fewer than 8 turns from a surviving checkpoint. ``env.cache.stats()`` reports
    entries, bytes held, hits (turn cached), prefix_hits, misses, replayed_turns, evictions and bytes
    in/out.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        trajectories: str | Path | Sequence[Trajectory] | None = None,
        *,
        domain: str | Domain = "generic",
        mode: str = "pivot",
        verifier: VerifierLike | None = None,
        strict: bool = False,
        max_turns: int | None = None,
        cache_size: int = 4096,
        snapshot_budget_bytes: int | None = DEFAULT_SNAPSHOT_BUDGET_BYTES,
        render_mode: str | None = None,
    ):
        from pivot_envs.registration import get_domain

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.domain = domain if isinstance(domain, Domain) else get_domain(domain)
        self.load_errors: list = []
        if trajectories is None:
            records = self.domain.load(strict=strict)
        elif isinstance(trajectories, (str, Path)):
            result = load_trajectories(trajectories, strict=strict, tool_schemas=self.domain.schema_map())
            records = result.trajectories
            self.load_errors = result.errors
        else:
            records = list(trajectories)
        if not records:
            raise ValueError("no trajectories to build an environment from (empty file or all records invalid)")
        self.trajectories: dict[str, Trajectory] = {t.id: t for t in records}
        self.ids = list(self.trajectories)
        self.mode, self.strict, self.max_turns, self.render_mode = mode, strict, max_turns, render_mode
        self._verifier_spec = verifier
        self._verifiers: dict[str, Verifier] = {}
        caching = cache_size > 0 and snapshot_budget_bytes != 0
        self.cache = SnapshotCache(cache_size, on_evict=self._discard,
                                   max_bytes=snapshot_budget_bytes) if caching else None
        self._keys: dict[str, list[str]] = {}
        self._tools_json: dict[int, tuple[list[dict[str, Any]], str]] = {}
        tool_names = sorted({n for t in records for n in t.tool_names})
        self.observation_space = Chat()
        self.action_space = AssistantTurn(tool_names)
        self.sandbox: Sandbox | None = None
        self._retired: list[Sandbox] = []  # kept open: they own cached snapshots
        self._owns_cache = True
        self._traj: Trajectory | None = None
        self._turn = 0
        self._messages: list[dict[str, Any]] = []
        self._done = True

    # -- domain plumbing ----------------------------------------------------------------------------

    def domain_of(self, traj: Trajectory) -> Domain:
        from pivot_envs.registration import find_domain

        return find_domain(traj.domain) or self.domain

    def verifier_for(self, traj: Trajectory) -> Verifier:
        """The verifier judging ``traj``: the env's, else its domain's (built once per spec)."""
        spec = self._verifier_spec if self._verifier_spec is not None else self.domain_of(traj).verifier
        if isinstance(spec, Verifier):
            return spec
        key = verifier_label(spec)
        if key not in self._verifiers:
            self._verifiers[key] = make_verifier(spec)
        return self._verifiers[key]

    # -- the Gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Restore the state before assistant turn ``options["turn"]`` of ``options["trajectory"]``.

        Omitted trajectory: sampled with the seeded generator. Omitted turn: 0. ``turn="random"``:
        sampled. Returns the observation ``{"messages", "tools"}`` and an info dict with the trajectory
        id, the turn, the state digest, how the world was restored and any replay divergence.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"trajectory", "turn"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'trajectory' and/or 'turn'")
        traj_id = options.get("trajectory")
        if traj_id is None:
            traj_id = self.ids[int(self.np_random.integers(len(self.ids)))]
        if traj_id not in self.trajectories:
            raise KeyError(f"no trajectory {traj_id!r} in this env ({len(self.ids)} loaded, e.g. {self.ids[:3]})")
        traj = self.trajectories[traj_id]
        turn = options.get("turn", 0)
        if turn == "random":
            turn = int(self.np_random.integers(traj.num_turns))
        if not isinstance(turn, int) or not 0 <= turn < traj.num_turns:
            raise ValueError(f"turn must be an int in [0, {traj.num_turns - 1}] for {traj_id!r}, got {turn!r}")
        restored_from, divergence, digest = self._restore(traj, turn)
        self._traj, self._turn, self._done = traj, turn, False
        self._messages = copy_messages(traj.prefix(turn))
        self._turns_taken = 0
        self._user_queue = copy_messages([m for m in traj.messages[traj.assistant_indices[turn]:] if m.get("role") == "user"])
        self._user_turns = user_turns(traj)
        self._user_turn = self._user_turns.of_turn[turn]
        # steps the agent has taken in the current user turn (the demonstration's, before ``turn``)
        self._steps_in_user_turn = turn - self._user_turns.first_turn[self._user_turn]
        self._turn_results: dict[int, bool | None] = {}
        self._budget = self.max_turns or 2 * (traj.num_turns - turn) + 2
        info = {"trajectory_id": traj.id, "turn": turn, "num_turns": traj.num_turns, "restored_from": restored_from,
                "divergence": divergence, "state_digest": digest or self.state_digest()}
        return self._obs(), info

    def step(self, action: str | dict[str, Any] | Action) -> tuple[dict, float, bool, bool, dict]:
        """Take one assistant turn (raw text, an assistant message dict, or an :class:`Action`)."""
        if self._traj is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset() before step()")
        traj = self._traj
        act = Action.coerce(action, self.domain_of(traj).action_format)
        if self.mode == "pivot":
            verdict = self.verify(act)
            self._messages.append(act.to_message(id_prefix=f"call_t{self._turn}"))
            self._done = True
            info = {"verdict": verdict, "trajectory_id": traj.id, "turn": self._turn}
            return self._obs(), verdict.score, True, False, info
        return self._episode_step(act)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = []
        for m in self._messages:
            text = content_text(m.get("content"))
            for c in m.get("tool_calls") or []:
                text += f" <call {c['function']['name']}({c['function']['arguments']})>"
            lines.append(f"[{m['role']}] {text}")
        return "\n".join(lines)

    def close(self) -> None:
        """Close the sandbox (and any retired ones that owned cached snapshots); the cache is emptied."""
        for sb in [self.sandbox, *self._retired]:
            if sb is not None:
                sb.close()
        self.sandbox = None
        self._retired = []
        if self.cache is not None and self._owns_cache:
            self.cache.clear()

    # -- PivotRL helpers -----------------------------------------------------------------------------

    def expected_action(self) -> Action:
        """The demonstrated action at the current turn (what pivot-mode rewards are judged against)."""
        if self._traj is None:
            raise RuntimeError("call reset() first")
        return self._traj.action(self._turn)

    def verify(self, action: str | dict[str, Any] | Action) -> Verdict:
        """Score an action against the demonstration at the current state without taking a step."""
        if self._traj is None:
            raise RuntimeError("call reset() first")
        act = Action.coerce(action, self.domain_of(self._traj).action_format)
        return self.verifier_for(self._traj).verify(self.expected_action(), act, self.verify_context())

    def verify_context(self) -> VerifyContext:
        """What verifiers may know at the current state: tools, record, turn, sandbox and executor."""
        if self._traj is None:
            raise RuntimeError("call reset() first")
        return VerifyContext(tools=self._traj.tools, trajectory=self._traj, turn=self._turn, sandbox=self.sandbox,
                             executor=self.domain_of(self._traj).execute)

    def observation(self, trajectory_id: str, turn: int) -> tuple[dict, dict]:
        """The observation ``reset(options={"trajectory": ..., "turn": ...})`` returns, without restoring.

        A pivot state's observation is the record's message prefix and tools, never the sandbox's
        contents, so a sampler can build prompts here while the world is restored once, where the
        samples are verified. Touches no sandbox, cache or episode state (safe beside a running reset).
        The info holds the trajectory id, turn and turn count; no digest (nothing was restored).
        """
        traj = self.trajectories[trajectory_id]
        if not isinstance(turn, int) or not 0 <= turn < traj.num_turns:
            raise ValueError(f"turn must be an int in [0, {traj.num_turns - 1}] for {trajectory_id!r}, got {turn!r}")
        obs = {"messages": copy_messages(traj.prefix(turn)), "tools": self._tools_copy(traj.tools)}
        return obs, {"trajectory_id": traj.id, "turn": turn, "num_turns": traj.num_turns}

    def fork(self, n: int = 1) -> list[TrajectoryEnv]:
        """``n`` independent envs in the current state (one per GRPO sample); each owns its sandbox."""
        if self._traj is None:
            raise RuntimeError("call reset() before fork()")
        sandboxes = self.sandbox.fork(n) if self.sandbox is not None else [None] * n
        forks = []
        for sb in sandboxes:
            clone = copy.copy(self)
            clone.sandbox = sb
            # A fork steps from this state; if it is reset, it replays (its snapshots would die with it).
            clone.cache, clone._retired, clone._owns_cache = None, [], False
            clone._messages = copy_messages(self._messages)
            clone._user_queue = copy_messages(self._user_queue)
            clone._turn_results = dict(getattr(self, "_turn_results", {}))
            clone._np_random = copy.deepcopy(self._np_random)
            forks.append(clone)
        return forks

    def state_digest(self) -> str:
        """Digest of the world (the sandbox's, or of the message prefix for text-only records)."""
        if self.sandbox is not None:
            return self.sandbox.state_digest()
        return hashlib.sha256(canonical_json(self._messages).encode()).hexdigest()

    @property
    def trajectory(self) -> Trajectory | None:
        return self._traj

    @property
    def turn(self) -> int:
        return self._turn

    # -- internals -----------------------------------------------------------------------------------

    def _obs(self) -> dict:
        tools = self._traj.tools if self._traj else []
        return {"messages": copy_messages(self._messages), "tools": self._tools_copy(tools)}

    def _tools_copy(self, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Tool schemas are nested and repeated in every observation; a JSON round trip of a memoised
        # string is several times faster than copy.deepcopy.
        key = id(tools)
        cached = self._tools_json.get(key)
        if cached is None or cached[0] is not tools:
            cached = self._tools_json[key] = (tools, json.dumps(tools))
        return json.loads(cached[1])

    def prefix_keys(self, traj: Trajectory, upto: int) -> list[str]:
        """Cache keys h_0..h_upto: h_0 hashes the env spec, h_{j+1} = H(h_j, action j's calls).

        Computed once per trajectory (all turns) and memoised, so a cached reset costs O(1) hashing.
        """
        keys = self._keys.get(traj.id)
        if keys is None:
            keys = self._keys[traj.id] = compute_prefix_keys(traj)
        return keys[: upto + 1]

    def _restore(self, traj: Trajectory, turn: int) -> tuple[str, list[dict[str, Any]], str | None]:
        """Bring the sandbox to the state before ``turn``: (how, divergence list, digest if known).

        Snapshots live only as long as the sandbox that took them (a workspace copy, a committed image),
        so the env keeps one long-lived sandbox per backend that owns every cached snapshot: a new
        record's turn-0 world is moved into it rather than replacing it.
        """
        domain = self.domain_of(traj)
        if traj.sandbox == "none":
            self._set_aside()
            return "text", [], None
        keys = self.prefix_keys(traj, turn)
        cache = self.cache
        start, snap = cache.longest_prefix(keys) if cache is not None else (0, None)
        digest = None  # the state's digest, when a snapshot of it was taken on the way
        if snap is not None:
            keeper = self._keeper_for(snap.backend)
            if keeper is None:
                raise RuntimeError("a cached snapshot outlived its sandbox; this is a bug in pivotrl, please report it")
            keeper.restore(snap)
        else:
            fresh = domain.make_sandbox(traj)
            assert fresh is not None, f"domain {domain.name!r} built no sandbox for a {traj.sandbox!r} record"
            keeper = self._keeper_for(fresh.backend) if self.cache is not None else None
            if keeper is None:
                self._set_aside()
                self.sandbox = fresh
            else:
                keeper.restore(fresh.snapshot())
                fresh.close()
            if cache is not None and cache.wants(0, turn):
                taken = self.sandbox.snapshot()
                cache.put(keys[0], taken)
                digest = taken.digest
        assert self.sandbox is not None
        divergence: list[dict[str, Any]] = []
        for t in range(start, turn):
            recorded = traj.tool_outputs(t)
            for call in traj.action(t).tool_calls:
                output, _ = domain.execute(self.sandbox, call)
                expected = recorded.get(call.id or "")
                if expected is not None and not outputs_match(expected, output):
                    d = {"turn": t, "tool_call_id": call.id, "expected": expected[:500], "got": output[:500]}
                    if self.strict:
                        raise RestoreDivergenceError(traj.id, d)
                    divergence.append(d)
            if cache is not None and cache.wants(t + 1, turn):
                taken = self.sandbox.snapshot()
                cache.put(keys[t + 1], taken)
                digest = taken.digest
        if cache is not None:
            cache.replayed_turns += turn - start
        if snap is not None and start == turn:
            return "cache", divergence, snap.digest
        # wants(turn, turn) is always true: the last snapshot taken, if any, is of the restored state.
        return ("replay" if snap is None else f"cache@{start}+replay"), divergence, digest

    def _keeper_for(self, backend: str) -> Sandbox | None:
        """Make the kept sandbox of ``backend`` current (it owns that backend's cached snapshots)."""
        if self.sandbox is not None and self.sandbox.backend == backend:
            return self.sandbox
        for sb in self._retired:
            if sb.backend == backend:
                self._retired.remove(sb)
                self._set_aside()
                self.sandbox = sb
                return sb
        return None

    def _discard(self, snap: Snapshot) -> None:
        """The cache evicted ``snap``: its owner (the kept sandbox of its backend) frees it now."""
        for sb in (self.sandbox, *self._retired):
            if sb is not None and sb.backend == snap.backend and not sb.closed:
                sb.discard(snap)
                return

    def _set_aside(self) -> None:
        """No current sandbox; keep the old one open if cached snapshots may depend on it."""
        if self.sandbox is None:
            return
        if self.cache is not None and self._owns_cache:
            self._retired.append(self.sandbox)
        else:
            self.sandbox.close()
        self.sandbox = None

    def _episode_step(self, act: Action) -> tuple[dict, float, bool, bool, dict]:
        traj = self._traj
        assert traj is not None
        domain = self.domain_of(traj)
        msg = act.to_message(id_prefix=f"call_t{self._turn + self._turns_taken}")
        self._messages.append(msg)
        info: dict[str, Any] = {"trajectory_id": traj.id}
        if act.malformed:
            info["invalid_action"] = act.malformed
        outputs = []
        for call, wire in zip(act.tool_calls, msg.get("tool_calls") or [], strict=True):
            if self.sandbox is not None:
                text, result = domain.execute(self.sandbox, call)
            else:
                text = self._replay_without_sandbox(traj, call)
            outputs.append(text)
            self._messages.append({"role": "tool", "tool_call_id": wire["id"], "content": text})
        info["tool_outputs"] = outputs
        self._turns_taken += 1
        info["turn"] = self._turn + self._turns_taken  # the turn the next step takes
        terminated = False
        if act.parse_error and not act.tool_calls:
            # A turn that did not parse is no message to the user: it must not end the episode with the
            # task's outcome (a world already in the success state would reward garbage, or a reply
            # over the size cap that still carries the facts). It ends the episode with reward 0.
            self._done = True
            info["success"] = False
            return self._obs(), 0.0, True, False, info
        self._steps_in_user_turn += 1
        u = self._user_turn
        closes = not act.tool_calls or (self._user_turns.ends_with_calls[u]
                                         and self._steps_in_user_turn >= self._user_turns.steps[u])
        if closes:
            result = domain.user_turn_success(traj, self.sandbox, self._messages, u)
            self._turn_results[u] = result
            info["turn_success"] = {"user_turn": u, "success": result}
            if self._user_queue:
                self._messages.append(self._user_queue.pop(0))
                info["user"] = "replayed"
                self._user_turn = min(u + 1, len(self._user_turns.steps) - 1)
                self._steps_in_user_turn = 0
            else:
                terminated = True
        truncated = not terminated and self._turns_taken >= self._budget
        reward = 0.0
        if terminated:
            success = domain.episode_success(traj, self.sandbox, self._messages)
            # Per-user-turn results join the outcome: any false one fails the episode; with no episode rule,
            # the turn results alone decide.
            judged = [r for r in self._turn_results.values() if r is not None]
            if judged:
                success = all(judged) and success is not False
            info["success"] = success
            reward = 1.0 if success else 0.0
        self._done = terminated or truncated
        return self._obs(), reward, terminated, truncated, info

    def _replay_without_sandbox(self, traj: Trajectory, call: Any) -> str:
        # Text-only records cannot execute anything: a call identical to the demonstration's call at
        # this turn gets the recorded output back; anything else gets an explanatory error.
        t = self._turn + self._turns_taken
        if t < traj.num_turns:
            for demo in traj.action(t).tool_calls:
                if demo.name == call.name and demo.arguments == call.arguments:
                    return traj.tool_outputs(t).get(demo.id or "", "")
        return "Error: this environment has no sandbox, so only the demonstrated tool calls can be answered"
