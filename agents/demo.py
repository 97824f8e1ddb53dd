"""``pivotrl demo``: a miniature of the PivotRL paper's experiment, on CPU, in minutes.

    pivotrl demo [--quick] [--random-turns] [--exact-match-reward] [--out runs/demo]

1. **Sanity**: the demonstration (replay policy) and a random policy on every bundled env.
2. **Base model**: a small Llama trained from scratch, here, on a general mix: agentic conversations of
   both domains generated with *another* seed than the bundled data, plus the out-of-domain (OOD) tasks of
   :mod:`agents.ood`. It is cached (``~/.cache/pivotrl/demo``) so later runs skip this stage.
3. **Methods**, per bundled domain, all from the same base on the same training split:
   SFT (:mod:`agents.sft`), PivotRL (:mod:`agents.pivotrl`: profile, filter, single-turn GRPO) and
   end-to-end RL (:mod:`agents.e2e`). The ablations (``--random-turns``, ``--exact-match-reward``) add
   PivotRL variants on the tool-use domain, as the paper ablates on tau2.
4. **Evaluation** on held-out trajectories: per-turn functional accuracy and whole-episode task success
   (:mod:`agents.evaluate`), and OOD retention before and after each method (:mod:`agents.ood`).
5. **Report**: tables shaped like the paper's Tables 1 and 2, compute per method, plots; written to
   ``report.md`` / ``report.json`` / ``*.png`` in the output directory and printed.

Every stage is seeded; the numbers are whatever this run measures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from agents.evaluate import evaluate_episodes, evaluate_turns
from agents.ood import eval_items, evaluate_ood, ood_items
from pivot_envs.core import TrajectoryEnv
from pivot_envs.registration import get_domain
from pivot_envs.trajectory import Trajectory, record_from_dict, save_trajectories

DOMAINS = ("tool_use", "terminal")


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of every stage. :data:`FULL` is ``make demo``; :data:`QUICK` is ``--quick``."""

    # base model (cached)
    hidden_size: int = 64
    layers: int = 2
    vocab_size: int = 2048
    base_records: int = 120
    """Generated agentic conversations per domain in the base mix (seed 1; the bundled data is seed 0)."""
    base_steps: int = 1500
    base_batch: int = 4
    """Agentic conversations per base step (each step also trains on ``base_ood_batch`` OOD items)."""
    base_ood_batch: int = 32
    base_lr: float = 3e-3
    # data split
    heldout: tuple[tuple[str, int], ...] = (("tool_use", 30), ("terminal", 6))
    """Held-out trajectories per domain (terminal turns are scored by running both actions in Docker
    forks, about a second per turn, so that domain gets fewer everywhere)."""
    train_limit: tuple[tuple[str, int], ...] = (("tool_use", 30), ("terminal", 8))
    """Training trajectories per domain (taken after the held-out ones; 0 = all the rest). Every method
    trains on the same ones: SFT on their assistant turns, PivotRL profiles all their turns, E2E plays them."""
    # SFT
    sft_steps: int = 150
    sft_batch: int = 4
    sft_lr: float = 1e-3
    max_length: int = 1600
    # PivotRL
    profile_k: int = 8
    pivot_steps: tuple[tuple[str, int], ...] = (("tool_use", 20), ("terminal", 4))
    """GRPO steps per domain."""
    pivots_per_step: int = 4
    group_size: int = 8
    pivot_lr: float = 2e-4
    # end-to-end RL
    e2e_steps: tuple[tuple[str, int], ...] = (("tool_use", 6), ("terminal", 2))
    e2e_tasks: int = 2
    e2e_group: int = 4
    e2e_lr: float = 1e-4
    # generation and evaluation
    max_new_tokens: int = 96
    """Token budget of one assistant turn (the bundled actions: 99% of tool-use ones fit in 68, 96% of terminal ones in 96)."""
    ood_per_family: int = 10

    def per_domain(self, field: str, domain: str) -> int:
        return dict(getattr(self, field))[domain]

    def key(self, seed: int = 0) -> str:
        """Identifies the base model these sizes and ``seed`` train (the base cache's key)."""
        base = {k: v for k, v in asdict(self).items() if k.startswith(("hidden", "layers", "vocab", "base_", "max_length"))}
        return hashlib.sha256(json.dumps({**base, "seed": seed}, sort_keys=True).encode()).hexdigest()[:12]


FULL = DemoPlan()
QUICK = DemoPlan(  # the same base model as FULL (the built-in one); smaller everything after it
    heldout=(("tool_use", 6), ("terminal", 3)), train_limit=(("tool_use", 16), ("terminal", 6)),
    sft_steps=20, sft_batch=2,
    profile_k=4,
    pivot_steps=(("tool_use", 2), ("terminal", 1)), pivots_per_step=2, group_size=4,
    e2e_steps=(("tool_use", 1), ("terminal", 1)), e2e_tasks=1, e2e_group=2, max_new_tokens=32, ood_per_family=4,
)

METHODS = ("base", "sft", "pivotrl", "e2e")
LABELS = {"base": "Base", "sft": "SFT", "pivotrl": "PivotRL", "e2e": "E2E RL",
          "pivotrl_random_turns": "PivotRL, random turns", "pivotrl_exact_match": "PivotRL, exact-match reward"}


# ---------------------------------------------------------------------------------------------------
# Progress and plain-words narration


@dataclass(frozen=True)
class Stage:
    """One line of the demo's stage list: ``cost`` is its expected seconds (only the ratios matter)."""

    key: str
    label: str
    cost: float


class _Amount(ProgressColumn):
    """``done/total`` for a stage's bar; a percentage for the overall bar (its units are expected seconds)."""

    def render(self, task: Task) -> Text:
        if task.fields.get("overall"):
            return Text(f"{task.percentage:3.0f}%", style="progress.percentage")
        total = "?" if task.total is None else f"{task.total:.0f}"
        return Text(f"{task.completed:.0f}/{total}", style="progress.download")


class _Remaining(ProgressColumn):
    """ETA. The overall bar extrapolates its elapsed time (elapsed x remaining cost / done cost), which
    corrects itself for a faster or slower machine; a stage's bar uses rich's speed estimate."""

    max_refresh = 1.0

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        if task.fields.get("overall"):
            done = task.completed / task.total if task.total else 0.0
            left = task.elapsed * (1 - done) / done if task.elapsed and done >= 0.01 else None
        if left is None or not task.started:
            return Text("ETA -:--:--", style="progress.remaining")
        return Text(f"ETA {timedelta(seconds=int(left))}", style="progress.remaining")


class Narrator:
    """Says what the demo does in plain words and shows its progress.

    Inside :meth:`live`: one overall bar over the stage list (each stage weighted by its expected cost, so
    elapsed time and ETA cover the whole demo), the current stage's own bars beneath it, and a line with
    the measured time as each stage ends. Outside it (``build_base`` alone), each ``stage`` is its own bar.
    """

    def __init__(self, console: Console):
        self.console = console
        self.stages_planned: list[Stage] = []
        self.done: dict[str, float] = {}
        """Fraction done per stage key."""
        self.seconds: dict[str, float] = {}
        """Measured seconds per finished stage."""
        self._started: dict[str, float] = {}
        self._progress: Progress | None = None
        self._overall: TaskID | None = None

    def say(self, text: str) -> None:
        self.console.print(text)  # above the live display while one runs

    def _columns(self) -> list[ProgressColumn]:
        return [TextColumn("  {task.description}"), BarColumn(), _Amount(), TimeElapsedColumn(), _Remaining()]

    @contextmanager
    def live(self, stages: list[Stage]) -> Iterator[None]:
        """The one live display of a run (rich allows one at a time); prints the stage list first."""
        self.stages_planned = list(stages)
        total = sum(s.cost for s in stages)
        table = Table(title="Stages (the overall bar weighs each by its expected share of the time)", title_justify="left")
        for col in ("#", "stage", "expected share"):
            table.add_column(col, justify="right" if col != "stage" else "left")
        for i, s in enumerate(stages, 1):
            table.add_row(str(i), s.label, f"{100 * s.cost / total:.0f}%")
        self.console.print(table)
        with Progress(*self._columns(), console=self.console) as progress:
            self._progress = progress
            self._overall = progress.add_task(self._overall_text(), total=total, overall=True)
            try:
                yield
            finally:
                self._progress = self._overall = None

    @property
    def fraction_done(self) -> float:
        """The overall bar's position: finished and partial stages weighted by their expected cost."""
        total = sum(s.cost for s in self.stages_planned)
        return sum(s.cost * self.done.get(s.key, 0.0) for s in self.stages_planned) / total if total else 0.0

    def _stage(self, key: str) -> Stage | None:
        return next((s for s in self.stages_planned if s.key == key), None)

    def _overall_text(self, key: str | None = None) -> str:
        n = len(self.stages_planned)
        if key is None or (stage := self._stage(key)) is None:
            return f"[bold]overall[/bold] ({n} stages)"
        return f"[bold]overall[/bold], stage {self.stages_planned.index(stage) + 1}/{n}: {stage.label}"

    def advance(self, key: str, fraction: float) -> None:
        """Stage ``key`` is ``fraction`` done (monotone; its clock starts at the first call)."""
        self._started.setdefault(key, time.perf_counter())
        self.done[key] = max(self.done.get(key, 0.0), min(fraction, 1.0))
        if self._progress is not None and self._overall is not None:
            completed = sum(s.cost * self.done.get(s.key, 0.0) for s in self.stages_planned)
            self._progress.update(self._overall, completed=completed, description=self._overall_text(key))

    def finish(self, key: str) -> None:
        """Stage ``key`` is done: print its measured time (this is how the stage list reads in a log)."""
        self.advance(key, 1.0)
        if key in self.seconds:
            return
        self.seconds[key] = time.perf_counter() - self._started[key]
        stage = self._stage(key)
        if stage is not None:
            self.say(f"  [green]done[/green] {stage.label} in {timedelta(seconds=round(self.seconds[key]))}")

    @contextmanager
    def step(self, key: str) -> Iterator[None]:
        """A whole stage of the list: started on entry, finished on a normal exit."""
        self.advance(key, 0.0)
        yield
        self.finish(key)

    @contextmanager
    def stage(self, description: str, total: int | None, key: str | None = None,
              share: float = 1.0) -> Iterator[Callable[..., None]]:
        """One progress bar; yields ``update(done, total=None)``. With ``key``, the bar's fraction moves
        that stage of the list by up to ``share`` of it (a stage may show several bars in turn)."""
        with self.stages([(description, total, key, share)]) as (update,):
            yield update

    @contextmanager
    def stages(self, bars: list[tuple[str, int | None, str | None, float]]) -> Iterator[list[Callable[..., None]]]:
        """Several bars in one display: ``(description, total, stage key or None, share of that stage)``."""
        own = self._progress is None
        progress = Progress(*self._columns(), console=self.console) if own else self._progress
        assert progress is not None
        with progress if own else contextlib.nullcontext():
            # later bars start their clocks (elapsed, ETA) at their first update, not now
            tasks = [progress.add_task(desc, total=total, start=i == 0) for i, (desc, total, _, _) in enumerate(bars)]
            bases = {key: self.done.get(key, 0.0) for _, _, key, _ in bars if key}

            def updater(task: TaskID, key: str | None, share: float) -> Callable[..., None]:
                def update(done: int, total: int | None = None) -> None:
                    # progress.tasks is a list by position, not by id (ids outlive removed bars)
                    state = next(t for t in progress.tasks if t.id == task)
                    if not state.started:
                        progress.start_task(task)
                    progress.update(task, completed=done, **({"total": total} if total is not None else {}))
                    bar_total = state.total
                    if key and bar_total:
                        self.advance(key, bases[key] + share * done / bar_total)
                return update

            try:
                yield [updater(t, key, share) for t, (_, _, key, share) in zip(tasks, bars, strict=True)]
            finally:
                if not own:
                    for t in tasks:
                        progress.remove_task(t)


# Expected cost of each stage, in rough seconds. Only the ratios matter: the overall ETA rescales them by
# the speed it observes. First estimates, set from the stage times of one quick run on a loaded 2-core
# machine (local sandbox); `report.json` records each run's stage times to refine them.
_GEN_TURN_S = 0.04
"""One sampled assistant turn: prompt and batch overhead (generation is batched)."""
_GEN_TOKEN_S = 0.0012
"""Each token of the ``max_new_tokens`` budget of one sampled turn."""
_VERIFY_S = {"tool_use": 0.004, "terminal": 0.35}
"""Verifying one sampled action: terminal actions run in twin forks of the restored workspace."""
_EXEC_S = {"tool_use": 0.002, "terminal": 0.12}
"""Executing one episode turn in the sandbox."""
_UPDATE_S = 0.03
"""The GRPO/E2E loss and backward pass of one sampled sequence."""
_SFT_SEQ_S = 0.12
"""One SFT conversation (forward and backward)."""
_BASE_STEP_S = 0.45
_OOD_ITEM_S = 0.05
_EVAL_FACTOR = 2.0
"""Greedy scoring samples one action per state in small batches and episodes turn by turn: a scored turn
costs about twice a profiling sample."""
_E2E_FACTOR = 3.0
"""An E2E episode turn also re-encodes the growing episode for the loss: about three profiling samples."""
_SANITY_TURN_S = {"tool_use": 0.01, "terminal": 0.2}
"""Replay and random policies: restoring and verifying one held-out turn (no model)."""


def plan_stages(plan: DemoPlan, splits: dict[str, dict[str, Any]], variants: dict[str, list[str]],
                train_base: bool) -> tuple[list[Stage], dict[str, dict[str, float]]]:
    """The stage list of a run and each evaluation's split of cost between its bars (turns, tasks, OOD)."""
    sizes = {}
    for d in DOMAINS:
        held, train = splits[d]["heldout"], splits[d]["train"]
        sizes[d] = {"held_turns": sum(t.num_turns for t in held), "held": len(held),
                    "ep_turns": sum(t.num_turns for t in held) / max(len(held), 1),
                    "train_turns": sum(t.num_turns for t in train)}
    gen = _GEN_TURN_S + _GEN_TOKEN_S * plan.max_new_tokens
    ood = 3 * plan.ood_per_family * _OOD_ITEM_S

    def evaluation(domains: tuple[str, ...]) -> dict[str, float]:
        parts = {}
        for d in domains:
            z = sizes[d]
            parts[f"{d}/turn"] = z["held_turns"] * (_EVAL_FACTOR * gen + _VERIFY_S[d])
            parts[f"{d}/episode"] = z["held"] * z["ep_turns"] * (_EVAL_FACTOR * gen + _EXEC_S[d])
        parts["ood"] = ood
        return parts

    stages = [Stage("sanity", "sanity: replay and random policies on the held-out splits",
                    sum(2 * _SANITY_TURN_S[d] * sizes[d]["held_turns"] * 2 for d in DOMAINS))]
    if train_base:
        stages.append(Stage("base-train", "base model: training", plan.base_steps * _BASE_STEP_S))
    shares: dict[str, dict[str, float]] = {"eval:base": evaluation(DOMAINS)}
    stages.append(Stage("eval:base", "Base: held-out scoring", sum(shares["eval:base"].values())))
    for d in DOMAINS:
        z = sizes[d]
        shares[f"eval:{d}"] = evaluation((d,))
        eval_cost = sum(shares[f"eval:{d}"].values())
        stages += [Stage(f"sft:{d}", f"{d}: SFT", plan.sft_steps * plan.sft_batch * _SFT_SEQ_S),
                   Stage(f"eval:sft:{d}", f"{d}: SFT held-out scoring", eval_cost)]
        for v in ("pivotrl", *variants.get(d, [])):
            rollouts = plan.per_domain("pivot_steps", d) * plan.pivots_per_step * plan.group_size
            stages += [Stage(f"{v}-profile:{d}", f"{d}: {LABELS[v]} profiling",
                             z["train_turns"] * plan.profile_k * (gen + _VERIFY_S[d])),
                       Stage(f"{v}-grpo:{d}", f"{d}: {LABELS[v]} GRPO", rollouts * (gen + _VERIFY_S[d] + _UPDATE_S)),
                       Stage(f"eval:{v}:{d}", f"{d}: {LABELS[v]} held-out scoring", eval_cost)]
        episodes = plan.per_domain("e2e_steps", d) * plan.e2e_tasks * plan.e2e_group
        stages += [Stage(f"e2e:{d}", f"{d}: E2E RL", episodes * z["ep_turns"] * (_E2E_FACTOR * gen + _EXEC_S[d] + _UPDATE_S)),
                   Stage(f"eval:e2e:{d}", f"{d}: E2E RL held-out scoring", eval_cost)]
    return stages, shares


# ---------------------------------------------------------------------------------------------------
# Stages


def split_data(out: Path, plan: DemoPlan) -> dict[str, dict[str, Any]]:
    """Per domain: a seeded shuffle of the bundled records into held-out and training JSONL files."""
    splits = {}
    for name in DOMAINS:
        records = get_domain(name).load()
        order = np.random.default_rng(0).permutation(len(records))
        held = plan.per_domain("heldout", name)
        heldout = [records[i] for i in order[:held]]
        rest = [records[i] for i in order[held:]]
        train = rest[: plan.per_domain("train_limit", name) or None]
        paths = {"train": out / "data" / f"{name}-train.jsonl", "heldout": out / "data" / f"{name}-heldout.jsonl"}
        save_trajectories(train, paths["train"])
        save_trajectories(heldout, paths["heldout"])
        splits[name] = {"train": train, "heldout": heldout, "paths": paths}
    return splits


def general_records(plan: DemoPlan) -> list[Trajectory]:
    """The base mix's agentic part: conversations of both domains generated with seed 1 (not the bundled seed 0)."""
    from pivot_envs.domains.terminal.expert import generate as terminal_generate
    from pivot_envs.domains.tool_use.expert import generate as tool_use_generate

    out = []
    for prefix, gen in (("general-tu", tool_use_generate), ("general-te", terminal_generate)):
        for i, rec in enumerate(gen(plan.base_records, seed=1)):
            out.append(record_from_dict({**rec, "id": f"{prefix}-{i:04d}"}))
    return out


SHIPPED_BASE = Path(__file__).parent / "demo_base"
"""The built-in base model: :func:`build_base` with :data:`FULL` and seed 0, shipped so that the demo
spends its minutes on post-training. ``python scripts/build_demo_base.py`` rebuilds it."""


def ready_base(plan: DemoPlan, cache_dir: Path, seed: int = 0, rebuild: bool = False) -> Path | None:
    """The directory of an already trained base model for ``plan`` and ``seed`` (built-in, else cached), or None."""
    if rebuild:
        return None
    key = plan.key(seed)
    shipped = SHIPPED_BASE / "base_stats.json"
    if shipped.exists() and json.loads(shipped.read_text()).get("plan_key") == key:
        return SHIPPED_BASE
    cached = cache_dir / f"base-{key}"
    return cached if (cached / "base_stats.json").exists() else None


def build_base(plan: DemoPlan, cache_dir: Path, narrator: Narrator, seed: int = 0,
               rebuild: bool = False) -> tuple[Path, dict[str, Any]]:
    """The base model for ``plan`` and ``seed``: the built-in one when it was trained with exactly these
    settings, else one from the cache, else one trained now (and cached). Returns its directory and stats."""
    import torch

    from agents.sft import sft_batches, sft_loss
    from agents.tiny import build_tiny_model, save_tiny, tiny_corpus, train_tokenizer

    key = plan.key(seed)
    ready = ready_base(plan, cache_dir, seed, rebuild)
    if ready is not None:
        where = ("the built-in base model" if ready == SHIPPED_BASE else "the cached base model")
        hint = "--rebuild-base trains it again here" if ready == SHIPPED_BASE else "delete it to retrain"
        narrator.say(f"  Using {where} ({ready}); {hint}.")
        return ready, json.loads((ready / "base_stats.json").read_text())
    path = cache_dir / f"base-{key}"
    start = time.perf_counter()
    general = general_records(plan)
    items = ood_items()
    ood_texts = [f"{i.question}\n{i.answer}" for i in items]
    tokenizer = train_tokenizer(tiny_corpus(general) + ood_texts * 3, vocab_size=plan.vocab_size)
    tokenizer.model_max_length = 4096
    model = build_tiny_model(tokenizer, hidden_size=plan.hidden_size, layers=plan.layers, heads=2, seed=seed,
                             max_position_embeddings=4096)
    agent_data = sft_batches(tokenizer, general, plan.max_length)
    ood_data = sft_batches(tokenizer, [SimpleNamespace(messages=i.messages(with_answer=True), tools=[]) for i in items], 64)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.base_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20))
    pad = tokenizer.pad_token_id
    model.train()
    losses = []
    with narrator.stage("base model: training", plan.base_steps, key="base-train") as update:
        for step in range(plan.base_steps):
            agent = [agent_data[i] for i in rng.choice(len(agent_data), plan.base_batch, replace=False)]
            ood = [ood_data[i] for i in rng.choice(len(ood_data), plan.base_ood_batch, replace=False)]
            loss_a, _ = sft_loss(model, agent, pad, "cpu")
            loss_o, _ = sft_loss(model, ood, pad, "cpu")
            loss = loss_a + loss_o
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            sched.step()
            losses.append((loss_a.item(), loss_o.item()))
            update(step + 1)
    narrator.finish("base-train")
    model.eval()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_tiny(model, tokenizer, tmp)
    stats = {"plan_key": key, "params": sum(p.numel() for p in model.parameters()), "steps": plan.base_steps,
             "general_records": len(general), "ood_items": len(items),
             "loss_agent_first_last": [losses[0][0], losses[-1][0]], "loss_ood_first_last": [losses[0][1], losses[-1][1]],
             "seconds": time.perf_counter() - start}
    (tmp / "base_stats.json").write_text(json.dumps(stats, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path, stats


_STEP_RE = re.compile(r"^step (\d+)/(\d+)")
_BATCH_RE = re.compile(r"profiling \(([^)]*)\): batch (\d+)/(\d+)")


def run_pivotrl(name: str, domain: str, base: Path, train_path: Path, out: Path, plan: DemoPlan,
                narrator: Narrator, **overrides: Any) -> dict[str, Any]:
    """Profile pi_0 on the training split, filter pivots, run single-turn GRPO (agents.pivotrl.train)."""
    from agents.pivotrl import TrainConfig, train
    from agents.profile import NoPivotsError

    shutil.rmtree(out, ignore_errors=True)
    steps = plan.per_domain("pivot_steps", domain)
    cfg = TrainConfig(model=str(base), domain=domain, trajectories=str(train_path), out_dir=str(out),
                      profile_k=plan.profile_k, steps=steps, pivots_per_step=plan.pivots_per_step,
                      group_size=plan.group_size, lr=plan.pivot_lr, max_new_tokens=plan.max_new_tokens,
                      checkpoint_every=steps, tensorboard=True, device="cpu", seed=0, **overrides)
    narrator.say(f"  {LABELS[name]}: sample {plan.profile_k} actions from the base at every expert turn, keep the turns "
                 "where it is sometimes right (pivots), then GRPO on single turns at the pivots.")
    profile_key, grpo_key = f"{name}-profile:{domain}", f"{name}-grpo:{domain}"
    bars = [(f"{LABELS[name]}: profiling (K={plan.profile_k})", None, profile_key, 1.0),
            (f"{LABELS[name]}: GRPO steps", steps, grpo_key, 1.0)]
    with narrator.stages(bars) as (profiling, grpo):
        def log(msg: Any) -> None:
            msg = str(msg)
            if (m := _BATCH_RE.search(msg)) and m.group(1) == "pi_0":
                profiling(int(m.group(2)), int(m.group(3)))
            elif m := _STEP_RE.search(msg):
                narrator.finish(profile_key)
                grpo(int(m.group(1)), int(m.group(2)))
            elif msg.startswith("profiled "):
                narrator.say(f"  {msg}")

        try:
            summary = train(cfg, log=log)
        except NoPivotsError:
            # Nothing to learn from: every profiled state is solved always or never by pi_0. The
            # result is pi_0 itself, at the cost of the profiling run; the report says so.
            narrator.finish(profile_key)
            narrator.finish(grpo_key)
            narrator.say(f"  [yellow]{LABELS[name]}: no pivots[/yellow] (every state had zero reward variance); "
                         "the policy stays the base model.")
            rows = sum(len(json.loads(line)["rewards"]) for f in (out / "profile").glob("*/rows.jsonl")
                       for line in f.read_text().splitlines() if line.strip())
            return {"model": str(base), "pivots": 0, "profile": _profile_summary(out), "curve": [],
                    "compute": {"rollout_turns": rows, "generated_tokens": 0, "sandbox_seconds": 0.0,
                                "wall_clock_s": 0.0}, "no_pivots": True}
    narrator.finish(profile_key)
    narrator.finish(grpo_key)
    summary["profile"] = _profile_summary(out)
    summary["curve"] = [json.loads(line)["rollout/reward"] for line in (out / "metrics.jsonl").read_text().splitlines()
                        if line.strip()]
    summary["model"] = str(out / "checkpoints" / f"step-{steps:06d}")
    return summary


def _profile_summary(out: Path) -> dict[str, Any]:
    reports = sorted((out / "profile").glob("*/report.json"))
    if not reports:
        return {}
    r = json.loads(reports[0].read_text())
    return {k: r[k] for k in ("states", "zero_variance_share", "pivots", "pivot_yield") if k in r}


def run_sft(domain: str, base: Path, train_path: Path, out: Path, plan: DemoPlan, narrator: Narrator) -> dict[str, Any]:
    from agents.sft import SFTConfig, train_sft

    shutil.rmtree(out, ignore_errors=True)
    cfg = SFTConfig(model=str(base), domain=domain, trajectories=str(train_path), out_dir=str(out),
                    steps=plan.sft_steps, batch_size=plan.sft_batch, lr=plan.sft_lr, max_length=plan.max_length,
                    device="cpu")
    narrator.say("  SFT: imitate the expert (next-token loss on its assistant turns only).")
    with narrator.step(f"sft:{domain}"), narrator.stage("SFT: steps", plan.sft_steps, key=f"sft:{domain}") as update:
        summary = train_sft(cfg, log=lambda _msg: None, on_step=lambda d, t: update(d, t))
    return summary


def run_e2e(domain: str, base: Path, train_path: Path, out: Path, plan: DemoPlan, narrator: Narrator) -> dict[str, Any]:
    from agents.e2e import E2EConfig, train_e2e

    shutil.rmtree(out, ignore_errors=True)
    steps = plan.per_domain("e2e_steps", domain)
    cfg = E2EConfig(model=str(base), domain=domain, trajectories=str(train_path), out_dir=str(out),
                    steps=steps, tasks_per_step=plan.e2e_tasks, group_size=plan.e2e_group, lr=plan.e2e_lr,
                    max_new_tokens=plan.max_new_tokens, device="cpu")
    narrator.say("  E2E RL: play whole tasks with the model; reward = did the task succeed (multi-turn GRPO).")
    with narrator.step(f"e2e:{domain}"), narrator.stage("E2E RL: steps", steps, key=f"e2e:{domain}") as update:
        summary = train_e2e(cfg, log=lambda _msg: None, on_step=lambda d, t: update(d, t))
    summary["curve"] = [json.loads(line)["rollout/episode_reward"]
                        for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return summary


def evaluate_model(model: Path, splits: dict[str, Any], plan: DemoPlan, narrator: Narrator, label: str,
                   domains: tuple[str, ...], key: str | None = None,
                   shares: dict[str, float] | None = None) -> dict[str, Any]:
    """Per-turn accuracy and episode success on each domain's held-out split, plus OOD retention; greedy.

    ``key`` names this evaluation's stage in the narrator's list; ``shares`` splits its cost between the
    bars (``<domain>/turn``, ``<domain>/episode``, ``ood``; see :func:`plan_stages`).
    """
    from agents.policies.hf import HFPolicy

    total = sum((shares or {}).values()) or 1.0

    def share(part: str) -> float:
        return (shares or {}).get(part, 0.0) / total

    with narrator.step(key) if key else contextlib.nullcontext():
        policy = HFPolicy.from_pretrained(str(model), device="cpu", temperature=0.0,
                                          max_new_tokens=plan.max_new_tokens, name=label)
        result: dict[str, Any] = {}
        narrator.say(f"  Scoring {label} on held-out data (greedy): one action at every restored turn, whole tasks, "
                     "and the OOD questions.")
        for name in domains:
            heldout = splits[name]["heldout"]
            env = TrajectoryEnv(heldout, domain=name)
            turns = sum(t.num_turns for t in heldout)
            try:
                with narrator.stage(f"{label}: held-out {name} turns", turns, key, share(f"{name}/turn")) as up:
                    done = [0]

                    def step(n: int, up: Callable = up, done: list = done) -> None:
                        done[0] += n
                        up(done[0])

                    per_turn = evaluate_turns(env, policy, on_progress=step)
            finally:
                env.close()
            with narrator.stage(f"{label}: held-out {name} tasks", len(heldout), key, share(f"{name}/episode")) as up:
                done = [0]

                def ep(n: int, up: Callable = up, done: list = done) -> None:
                    done[0] += n
                    up(done[0])

                episodes = evaluate_episodes(heldout, policy, domain=name, parallel=len(heldout), on_progress=ep)
            result[name] = {"turn": per_turn.to_dict(), "episode": episodes.to_dict()}
        result["ood"] = evaluate_ood(policy, eval_items(plan.ood_per_family))
    return result


def sanity(splits: dict[str, Any], narrator: Narrator) -> dict[str, Any]:
    """Replay and random policies on every bundled env's held-out split: 100% and about 0%."""
    from agents.policies import RandomAgent, ReplayAgent

    out = {}
    with narrator.step("sanity"):
        for i, name in enumerate(DOMAINS):
            heldout = splits[name]["heldout"]
            row = {}
            for policy in (ReplayAgent(heldout), RandomAgent(seed=0)):
                env = TrajectoryEnv(heldout, domain=name)
                try:
                    turn = evaluate_turns(env, policy)
                finally:
                    env.close()
                episode = evaluate_episodes(heldout, policy, domain=name, parallel=len(heldout))
                row[policy.name] = {"turn": turn.accuracy, "episode": episode.success_rate}
            out[name] = row
            narrator.advance("sanity", (i + 1) / len(DOMAINS))
            narrator.say(f"  {get_domain(name).env_id}: replay {row['replay']['turn']:.0%} per turn / "
                         f"{row['replay']['episode']:.0%} tasks; random {row['random']['turn']:.0%} / "
                         f"{row['random']['episode']:.0%}")
    return out


# ---------------------------------------------------------------------------------------------------
# The whole demo


def run_demo(out_dir: str | Path = "runs/demo", *, quick: bool = False, random_turns: bool = False,
             exact_match_reward: bool = False, seed: int = 0, plan: DemoPlan | None = None,
             cache_dir: str | Path | None = None, rebuild_base: bool = False,
             console: Console | None = None) -> dict[str, Any]:
    """Run the experiment and return the report (also written to ``out_dir``)."""
    plan = plan or (QUICK if quick else FULL)
    narrator = Narrator(console or Console())
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bars say what is happening
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "pivotrl" / "demo"
    wall = time.perf_counter()
    narrator.say("[bold]pivotrl demo[/bold]: a miniature of the PivotRL experiment on this CPU. A small base model "
                 "is post-trained on expert trajectories three ways (SFT, PivotRL, end-to-end RL) and each result "
                 "is scored on held-out tasks and on out-of-domain questions.")

    narrator.say("\n[bold]1. Data[/bold]: each bundled domain is split into training and held-out trajectories.")
    splits = split_data(out, plan)
    for name in DOMAINS:
        narrator.say(f"  {name}: {len(splits[name]['train'])} training, {len(splits[name]['heldout'])} held-out trajectories")
    ablations: list[tuple[str, dict[str, Any]]] = []
    if random_turns:
        ablations.append(("pivotrl_random_turns", {"random_turns": True}))
    if exact_match_reward:
        ablations.append(("pivotrl_exact_match", {"verifier": "exact"}))
    stages, shares = plan_stages(plan, splits, {"tool_use": [v for v, _ in ablations]},
                                 train_base=ready_base(plan, cache, seed, rebuild_base) is None)
    report: dict[str, Any] = {"quick": quick, "seed": seed, "plan": asdict(plan), "machine": _machine()}
    evals: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    with narrator.live(stages):
        narrator.say("  Sanity check: the demonstration itself must score 100%, a random policy about 0%.")
        report["sanity"] = sanity(splits, narrator)

        narrator.say("\n[bold]2. Base model[/bold]: a small Llama trained from scratch on a general mix (agentic "
                     "conversations generated with another seed, and the OOD questions).")
        base, base_stats = build_base(plan, cache, narrator, seed, rebuild=rebuild_base)
        report["base"] = {"path": str(base), **base_stats}
        narrator.say(f"  {base_stats['params']:,} parameters.")
        evals["base"] = evaluate_model(base, splits, plan, narrator, "Base", DOMAINS, "eval:base", shares["eval:base"])

        for i, name in enumerate(DOMAINS):
            env_id = get_domain(name).env_id
            narrator.say(f"\n[bold]3.{i + 1} {env_id}[/bold]: SFT, PivotRL and end-to-end RL from the same base, "
                         "on the same training trajectories.")
            train_path = splits[name]["paths"]["train"]
            variants = [("pivotrl", {}), *(ablations if name == "tool_use" else [])]
            sft = run_sft(name, base, train_path, out / name / "sft", plan, narrator)
            runs.setdefault("sft", {})[name] = sft
            evals.setdefault("sft", {})[name] = evaluate_model(Path(sft["model"]), splits, plan, narrator, "SFT",
                                                               (name,), f"eval:sft:{name}", shares[f"eval:{name}"])
            for variant, overrides in variants:
                piv = run_pivotrl(variant, name, base, train_path, out / name / variant, plan, narrator, **overrides)
                runs.setdefault(variant, {})[name] = piv
                evals.setdefault(variant, {})[name] = evaluate_model(
                    Path(piv["model"]), splits, plan, narrator, LABELS[variant], (name,), f"eval:{variant}:{name}",
                    shares[f"eval:{name}"])
            e2e = run_e2e(name, base, train_path, out / name / "e2e", plan, narrator)
            runs.setdefault("e2e", {})[name] = e2e
            evals.setdefault("e2e", {})[name] = evaluate_model(Path(e2e["model"]), splits, plan, narrator, "E2E RL",
                                                               (name,), f"eval:e2e:{name}", shares[f"eval:{name}"])
    total_cost = sum(st.cost for st in stages)
    report["stages"] = [{"key": st.key, "stage": st.label, "expected_share": st.cost / total_cost,
                         "seconds": narrator.seconds.get(st.key)} for st in stages]

    report["runs"] = _slim_runs(runs)
    report["tables"] = _tables(evals, runs)
    report["evals"] = evals
    report["wall_clock_s"] = time.perf_counter() - wall
    _write_report(out, report)
    narrator.say("")
    for table in _rich_tables(report["tables"]):
        narrator.console.print(table)
    narrator.say(f"\nDone in {report['wall_clock_s'] / 60:.1f} min. Report: {out / 'report.md'} "
                 f"(plots: {out / 'in_domain.png'}, {out / 'training.png'}).")
    return report


def _machine() -> dict[str, Any]:
    """What the demo's wall-clock depends on: cores, load when it started, and whether Docker runs the terminal tasks."""
    import os

    from pivot_envs.domains.terminal.sandbox import docker_problem

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on every platform
        load = None
    return {"cpu_count": os.cpu_count(), "load_average_1_5_15_min": load,
            "torch_threads": _torch_threads(), "docker": docker_problem() is None}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _slim_runs(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keep = ("compute", "curve", "profile", "pivots", "final_loss", "first_loss")
    return {m: {d: {k: v for k, v in s.items() if k in keep} for d, s in per.items()} for m, per in runs.items()}


def _tables(evals: dict[str, Any], runs: dict[str, Any]) -> dict[str, Any]:
    """The numbers of the report's tables (fractions in [0, 1]; compute in counts and seconds)."""
    methods = [m for m in (*METHODS, "pivotrl_random_turns", "pivotrl_exact_match") if m in evals]
    in_domain, ood, compute = [], [], []
    base_ood = evals["base"]["ood"]
    for m in methods:
        row: dict[str, Any] = {"method": m, "label": LABELS[m]}
        oods = []
        for d in DOMAINS:
            e = evals[m]
            if m != "base":
                e = e.get(d)
                if e is None:
                    continue
                oods.append(e["ood"])
            row[f"{d}/turn"] = e[d]["turn"]["accuracy"]
            row[f"{d}/episode"] = e[d]["episode"]["success_rate"]
        cols = [v for k, v in row.items() if "/" in k]
        row["average"] = sum(cols) / len(cols) if cols else None
        in_domain.append(row)
        oods = oods or [base_ood]
        fam = {f: float(np.mean([o["families"][f] for o in oods])) for f in base_ood["families"]}
        acc = float(np.mean([o["accuracy"] for o in oods]))
        ood.append({"method": m, "label": LABELS[m], **fam, "average": acc, "change": acc - base_ood["accuracy"]})
        if m != "base":
            for d, s in runs[m].items():
                c = s["compute"]
                compute.append({"method": m, "label": LABELS[m], "domain": d,
                                "rollout_turns": c.get("rollout_turns", 0), "generated_tokens": c.get("generated_tokens", 0),
                                "trained_tokens": c.get("trained_tokens"), "sandbox_s": c.get("sandbox_seconds", 0.0),
                                "wall_clock_s": c.get("wall_clock_s", 0.0)})
    return {"in_domain": in_domain, "ood": ood, "compute": compute}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _markdown(tables: dict[str, Any], report: dict[str, Any]) -> str:
    lines = ["# pivotrl demo: base vs SFT vs PivotRL vs end-to-end RL", "",
             f"Plan: {'quick' if report['quick'] else 'full'}; seed {report['seed']}; base model "
             f"{report['base']['params']:,} parameters; wall-clock {report['wall_clock_s'] / 60:.1f} min.", "",
             "## Sanity: replay and random policies on the held-out splits (per-turn / task success, %)", "",
             "| env | replay | random |", "|---|---:|---:|"]
    for d, row in report["sanity"].items():
        lines.append(f"| {get_domain(d).env_id} | {_pct(row['replay']['turn'])} / {_pct(row['replay']['episode'])} | "
                     f"{_pct(row['random']['turn'])} / {_pct(row['random']['episode'])} |")
    lines += ["", "## Table 1: in-domain, held-out trajectories (%, greedy)", "",
              "Per-turn: functional accuracy of one action at every restored held-out state. Tasks: whole "
              "episodes from turn 0 that reach the task's outcome.", "",
              "| method | " + " | ".join(f"{get_domain(d).env_id} per-turn | {get_domain(d).env_id} tasks" for d in DOMAINS)
              + " | average |", "|---|" + "---:|" * (2 * len(DOMAINS) + 1)]
    for r in tables["in_domain"]:
        cells = [f"{_pct(r.get(f'{d}/turn'))} | {_pct(r.get(f'{d}/episode'))}" for d in DOMAINS]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {_pct(r['average'])} |")
    lines += ["", "## Table 2: out-of-domain retention (exact match, %, averaged over the per-domain models)", "",
              "| method | arithmetic | strings | facts | average | change vs base |", "|---|---:|---:|---:|---:|---:|"]
    for r in tables["ood"]:
        change = "" if r["method"] == "base" else f"{100 * r['change']:+.1f}"
        lines.append(f"| {r['label']} | {_pct(r['arithmetic'])} | {_pct(r['strings'])} | {_pct(r['facts'])} | "
                     f"{_pct(r['average'])} | {change} |")
    lines += ["", "## Compute per method and domain", "",
              "| method | domain | rollout turns | generated tokens | sandbox s | wall-clock s |",
              "|---|---|---:|---:|---:|---:|"]
    for r in tables["compute"]:
        lines.append(f"| {r['label']} | {r['domain']} | {r['rollout_turns']:,} | {r['generated_tokens']:,} | "
                     f"{r['sandbox_s']:.1f} | {r['wall_clock_s']:.1f} |")
    lines += ["", "## PivotRL profiling", "", "| domain | states | zero-variance | pivots | yield |", "|---|---:|---:|---:|---:|"]
    for d, s in report["runs"].get("pivotrl", {}).items():
        p = s.get("profile") or {}
        if p:
            lines.append(f"| {d} | {p['states']} | {_pct(p['zero_variance_share'])}% | {p['pivots']} | {_pct(p['pivot_yield'])}% |")
    machine = report.get("machine") or {}
    if report.get("stages"):
        lines += ["", "## Where the time went", "",
                  f"{machine.get('cpu_count')} CPU cores, load average {machine.get('load_average_1_5_15_min')} at the "
                  f"start, {machine.get('torch_threads')} torch threads, terminal tasks in "
                  f"{'Docker' if machine.get('docker') else 'the local sandbox (no Docker daemon)'}.", "",
                  "| stage | expected share | measured s |", "|---|---:|---:|"]
        for st in report["stages"]:
            secs = "-" if st["seconds"] is None else f"{st['seconds']:.0f}"
            lines.append(f"| {st['stage']} | {100 * st['expected_share']:.0f}% | {secs} |")
    lines += ["", "Plots: `in_domain.png` (Table 1), `training.png` (PivotRL's and E2E RL's rewards per step, "
              "one panel each).", "",
              "Sizes are a miniature: the numbers show the pipeline's behaviour on a tiny model and are reported "
              "as measured, not as evidence about large models.", ""]
    return "\n".join(lines)


def _rich_tables(tables: dict[str, Any]) -> list[Table]:
    t1 = Table(title="Table 1: in-domain, held-out (%): per-turn accuracy / task success")
    t1.add_column("method")
    for d in DOMAINS:
        t1.add_column(get_domain(d).env_id, justify="right")
    t1.add_column("average", justify="right")
    for r in tables["in_domain"]:
        t1.add_row(r["label"], *[f"{_pct(r.get(f'{d}/turn'))} / {_pct(r.get(f'{d}/episode'))}" for d in DOMAINS],
                   _pct(r["average"]))
    t2 = Table(title="Table 2: out-of-domain retention (%)")
    for col in ("method", "arithmetic", "strings", "facts", "average", "change vs base"):
        t2.add_column(col, justify="left" if col == "method" else "right")
    for r in tables["ood"]:
        t2.add_row(r["label"], _pct(r["arithmetic"]), _pct(r["strings"]), _pct(r["facts"]), _pct(r["average"]),
                   "" if r["method"] == "base" else f"{100 * r['change']:+.1f}")
    t3 = Table(title="Compute")
    for col in ("method", "domain", "rollout turns", "generated tokens", "wall-clock s"):
        t3.add_column(col, justify="left" if col in ("method", "domain") else "right")
    for r in tables["compute"]:
        t3.add_row(r["label"], r["domain"], f"{r['rollout_turns']:,}", f"{r['generated_tokens']:,}", f"{r['wall_clock_s']:.1f}")
    return [t1, t2, t3]


def _write_report(out: Path, report: dict[str, Any]) -> None:
    for name, text in (("report.md", _markdown(report["tables"], report)), ("report.json", json.dumps(report, indent=2))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
    _plots(out, report)


def _plots(out: Path, report: dict[str, Any]) -> None:
    """``in_domain.png``: per domain, per-turn accuracy and task success side by side for every method, each
    bar labelled (a 0% bar is still a visible "0"). ``training.png``: one panel per reward, since PivotRL's
    per-turn functional reward and E2E RL's episode success are different quantities."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = report["tables"]["in_domain"]
    fig, axes = plt.subplots(1, len(DOMAINS), figsize=(5.5 * len(DOMAINS), 3.6), sharey=True, squeeze=False)
    x = np.arange(len(rows))
    width = 0.38
    for ax, d in zip(axes[0], DOMAINS, strict=True):
        for offset, kind, label, color in ((-width / 2, "turn", "per-turn accuracy", "#4878a8"),
                                           (width / 2, "episode", "task success", "#e08a3c")):
            vals = [100 * (r.get(f"{d}/{kind}") or 0) for r in rows]
            missing = [r.get(f"{d}/{kind}") is None for r in rows]
            bars = ax.bar(x + offset, vals, width, label=label, color=color)
            ax.bar_label(bars, labels=["-" if m else f"{v:.0f}" for v, m in zip(vals, missing, strict=True)],
                         fontsize=7, padding=1)
        ax.set_title(get_domain(d).env_id, fontsize=10)
        ax.set_xticks(x, [r["label"].replace(", ", "\n") for r in rows], fontsize=7, rotation=30, ha="right")
        ax.set_ylim(0, 110)
    axes[0][0].set_ylabel("% of held-out turns / tasks")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle("In-domain results (greedy, held-out trajectories)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "in_domain.png", dpi=100)
    plt.close(fig)

    panels = [("PivotRL: functional reward per step", "mean reward of the samples at the step's pivots",
               [m for m in report["runs"] if m.startswith("pivotrl")]),
              ("E2E RL: task success per step", "mean task success of the step's episodes", ["e2e"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 3.6), squeeze=False)
    for ax, (title, ylabel, methods) in zip(axes[0], panels, strict=True):
        drawn = 0
        for m in methods:
            for d, run in report["runs"].get(m, {}).items():
                if run.get("curve"):
                    ax.plot(range(1, len(run["curve"]) + 1), run["curve"], marker=".", label=f"{LABELS[m]} ({d})")
                    drawn += 1
        if not drawn:  # e.g. no pivots: say so instead of leaving a blank frame
            ax.text(0.5, 0.5, "no training steps in this run", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=100)
    plt.close(fig)


def plan_with(plan: DemoPlan, **changes: Any) -> DemoPlan:
    """A copy of ``plan`` with some sizes changed (tests use it to shrink the quick plan further)."""
    return replace(plan, **changes)
