"""The ``pivotrl`` command line (typer). Every command and option is documented in its ``--help``.

Exit status: 0 when the command did what was asked; 1 when it ran and found problems in the data
(``data validate``/``convert``) or the machinery failed (no Docker daemon, an image build); 2 for a
mistake in the command or its input (an unknown option, name or id, a missing or empty input file,
nothing usable in it, a bad config key). Mistakes get one line on stderr, never a traceback; a
traceback means a bug in pivotrl.
"""

from __future__ import annotations

import enum
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

try:  # recent typer carries its own copy of click; older releases use click itself
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _click_errors

# emoji=False: user data (paths, record fields, "file.jsonl:100: ...") is printed as written; rich would
# turn ":100:" into an emoji. Markup in user data is escaped where it is printed (rich.markup.escape).
console = Console(emoji=False)
# soft_wrap: an error stays one line whatever the terminal's width (rich would break it at 80 columns)
err = Console(stderr=True, soft_wrap=True, emoji=False)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The project's typed exceptions that mean "the input or the command is wrong" (exit 2).

    Imported lazily (``pivotrl --help`` must not import torch) and only from modules that are cheap.
    """
    from agents.config import ConfigError
    from agents.core import PolicySpecError
    from agents.distributed import RayUnavailableError
    from agents.profile import NoPivotsError
    from pivot_envs.registration import UnknownEnvError
    from pivot_envs.trajectory import TrajectoryError
    from verifiers.core import VerifierError

    errors: list[type[BaseException]] = [ConfigError, PolicySpecError, RayUnavailableError, NoPivotsError,
                                         UnknownEnvError, TrajectoryError, VerifierError, FileNotFoundError,
                                         IsADirectoryError]
    if "agents.policies.vllm" in sys.modules:  # only where vLLM was asked for
        errors.append(sys.modules["agents.policies.vllm"].VLLMUnavailableError)
    return tuple(errors)


def _fail(message: str, code: int) -> typer.Exit:
    """Print ``message`` as one line on stderr; return the exit to raise."""
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


class _Commands(TyperGroup):
    """The top-level group: one place that turns mistakes into a one-line error and an exit status.

    Commands raise the project's typed errors; this maps them (and click's usage errors, which typer would
    draw as a box) to one line on stderr. Anything else is a bug and keeps its traceback.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, _click_errors.ClickException):
            raise
        except Exception as exc:
            from sandboxes.errors import SandboxError

            if isinstance(exc, _user_errors()):
                raise _fail(_message(exc), 2) from exc
            if isinstance(exc, SandboxError):  # the machinery, not the input: Docker down, a build failed
                raise _fail(_message(exc), 1) from exc
            raise

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_errors.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as usual
                exc.show()
            else:
                hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
                message = exc.format_message().replace(": Value error, ", ": ")  # typer's pydantic-style prefix
                err.print(f"[red]error:[/red] {escape(message)}{escape(hint)}")
            rv = exc.exit_code
        except _click_errors.ClickException as exc:
            exc.show()
            rv = exc.exit_code
        except typer.Abort:
            err.print("aborted")
            rv = 1
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):  # KeyError's str() is the repr of its key
        return str(exc.args[0]) if exc.args else type(exc).__name__
    text = str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text or type(exc).__name__


# rich_markup_mode=None: plain help. Typer's rich help shows a "<bool>" type for every flag (--help
# included) and reads "[ray]" in help text as markup; plain help has neither problem.
_TYPER: dict[str, Any] = {"rich_markup_mode": None, "no_args_is_help": True}
app = typer.Typer(cls=_Commands, help="pivotrl: expert trajectories -> Gymnasium environments -> PivotRL post-training.",
                  add_completion=False, pretty_exceptions_show_locals=False, **_TYPER)
envs_app = typer.Typer(help="Registered environments.", **_TYPER)
data_app = typer.Typer(help="Validate, convert, inspect and generate trajectory files.", **_TYPER)
app.add_typer(envs_app, name="envs")
app.add_typer(data_app, name="data")
sandbox_app = typer.Typer(help="Docker sandbox image and leftovers.", **_TYPER)
app.add_typer(sandbox_app, name="sandbox")
eval_app = typer.Typer(help="Benchmark a policy on an env: per-turn accuracy and episode success.",
                       invoke_without_command=True, rich_markup_mode=None)
app.add_typer(eval_app, name="eval")


@envs_app.command("list")
def envs_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the registered environment ids and their domains."""
    from pivot_envs.registration import list_domains

    rows = []
    for d in list_domains():
        path = d.data_path()
        rows.append({"id": d.env_id, "domain": d.name, "description": d.description, "verifier": d.verifier_name,
                     "bundled_data": str(path) if path else None})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="pivotrl environments")
    for col in ("id", "domain", "verifier", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["domain"], r["verifier"], r["description"])
    console.print(table)


@data_app.command("validate")
def data_validate(path: Path = typer.Argument(..., help="A JSONL file of trajectory records."),
                  strict: bool = typer.Option(False, help="Stop at the first bad record.")) -> None:
    """Check every record; report each problem with file, line and field.

    Exit 1 if any record is invalid; 2 if the file is missing or holds no record at all.
    """
    from pivot_envs.trajectory import TrajectoryError, load_trajectories

    try:
        result = load_trajectories(path, strict=strict)
    except TrajectoryError as exc:
        if not exc.line:  # not a bad record but an unusable file (e.g. empty): a mistake, exit 2
            raise
        err.print(f"[red]invalid:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    if result.file_errors:  # the whole file is unusable (empty, wrong encoding): a mistake, not a finding
        raise _fail("; ".join(str(e) for e in result.file_errors), 2)
    if not result.trajectories and not result.errors:
        raise TrajectoryError("no records: the file has no JSON object (one trajectory record per line "
                              "is expected)", path=str(path))
    for e in result.errors:
        err.print(f"[red]error[/red] {escape(str(e))}")
    bad_lines = len({e.line for e in result.errors})
    console.print(f"{len(result)} valid record(s), {bad_lines} invalid line(s) in {escape(str(path))}")
    if result.errors:
        raise typer.Exit(1)


@data_app.command("convert")
def data_convert(in_path: Path = typer.Argument(..., help="Input JSONL."),
                 out_path: Path = typer.Argument(..., help="Output JSONL (canonical OpenAI chat records)."),
                 fmt: str = typer.Option("auto", "--from", help="openai | nemo_gym | sharegpt | auto"),
                 strict: bool = typer.Option(False, help="Stop at the first bad line."),
                 domain: str | None = typer.Option(
                     None, help="NeMo Gym rows: the records' domain (default generic; a row's own `domain` is "
                                "NeMo's label and goes under metadata)."),
                 last_turn_only: bool = typer.Option(
                     False, "--last-turn-only",
                     help="NeMo Gym rows: only the last assistant turn (NeMo's designated pivot) is a candidate; "
                          "earlier turns are flagged skip."),
                 nemo_preset: str | None = typer.Option(
                     None, help="NeMo Gym rows: comparator settings for the `nemo` verifier, stored in "
                                "metadata.verifier_settings.nemo: tool_use, toolcall_schema, swe, droid, search, "
                                "parallel, or a NeMo Gym config .yaml with a tool_call_comparator_config.")) -> None:
    """Convert another trajectory format into canonical records; print rows read, records written and
    pivot candidates."""
    from pivot_envs.convert import convert_file, nemo_settings
    from pivot_envs.trajectory import TrajectoryError, extract_candidates, load_trajectories

    try:
        settings = nemo_settings(nemo_preset) if nemo_preset is not None else None
        report = convert_file(in_path, out_path, fmt, strict=strict, domain=domain, last_turn_only=last_turn_only,
                              verifier_settings=settings)
    except TrajectoryError as exc:  # --strict met a bad line: a finding about the data, exit 1
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    except ValueError as exc:  # an unknown --from format or preset (the message lists the known ones)
        raise _fail(str(exc), 2) from exc
    for e in report.errors:
        err.print(f"[red]skipped[/red] {escape(str(e))}")
    candidates = len(extract_candidates(load_trajectories(out_path).trajectories)[0]) if report.converted else 0
    console.print(f"converted {report.converted} record(s) from {report.rows} row(s) to {escape(str(out_path))}; "
                  f"{candidates} candidate(s); {len(report.errors)} problem(s)")
    if report.errors:
        raise typer.Exit(1)


@data_app.command("stats")
def data_stats(path: Path = typer.Argument(..., help="A JSONL file of trajectory records."),
               as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Counts: records, turns, tool calls per tool, and what candidate cleaning drops."""
    from pivot_envs.trajectory import extract_candidates, load_trajectories

    result = load_trajectories(path)
    records = result.trajectories
    tools: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for t in records:
        for k in range(t.num_turns):
            a = t.action(k)
            kinds[a.kind] += 1
            tools.update(c.name for c in a.tool_calls)
    _, drops = extract_candidates(records)
    turns = [t.num_turns for t in records]
    stats = {
        "records": len(records), "invalid_records": len({e.line for e in result.errors}),
        "domains": dict(Counter(t.domain for t in records)),
        "turns": sum(turns), "turns_per_record": {"min": min(turns, default=0), "max": max(turns, default=0),
                                                  "mean": round(sum(turns) / max(len(turns), 1), 2)},
        "turn_kinds": dict(kinds), "tool_calls": dict(tools.most_common()),
        "candidates": drops.get("kept", 0), "dropped": {k: v for k, v in drops.items() if k != "kept"},
    }
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    table = Table(title=f"{path}", show_header=False)
    for key, value in stats.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@data_app.command("candidates")
def data_candidates(path: Path = typer.Argument(..., help="A JSONL file of trajectory records."),
                    out: Path = typer.Option(..., "--out", help="Where to write candidate rows (JSONL)."),
                    drop_unknown_tool: bool = typer.Option(True, help="Drop calls to tools not in `tools`."),
                    drop_tool_errors: bool = typer.Option(True, help="Drop turns whose tool output was an error."),
                    drop_doom_loops: bool = typer.Option(True, help="Drop 3rd+ identical consecutive calls."),
                    drop_multi_call: bool = typer.Option(False, help="Drop turns with several tool calls.")) -> None:
    """Extract pivot candidates {trajectory_id, turn, depth, action} with cleaning counts."""
    from pivot_envs.trajectory import CandidateOptions, extract_candidates, load_trajectories

    opts = CandidateOptions(drop_unknown_tool, drop_tool_errors, drop_doom_loops, drop_multi_call)
    cands, drops = extract_candidates(load_trajectories(path).trajectories, opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for c in cands:
            fh.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(out)
    dropped = ", ".join(f"{k}: {v}" for k, v in drops.items() if k != "kept") or "nothing"
    console.print(f"{len(cands)} candidate(s) written to {out}; dropped {dropped}")


class GeneratedDomain(enum.StrEnum):
    """The bundled domains that ship a programmatic expert (``pivot_envs/domains/<name>/expert.py``)."""

    tool_use = "tool_use"
    terminal = "terminal"
    search = "search"
    swe = "swe"


@data_app.command("generate")
def data_generate(out: Path = typer.Argument(..., help="Output JSONL."),
                  domain: GeneratedDomain = typer.Option(GeneratedDomain.tool_use,
                                                         help="Bundled domain whose expert generates the data."),
                  n: int | None = typer.Option(None, "-n", "--n", min=1,
                                               help="Number of trajectories (default: as many as the bundled file)."),
                  seed: int = typer.Option(0, help="Random seed (same seed, same file).")) -> None:
    """Generate expert trajectories with a bundled domain's programmatic expert.

    Seed 0 with the default -n reproduces the bundled data (200 tool_use, 60 terminal, 143 search and
    30 swe trajectories).
    """
    import importlib

    expert = importlib.import_module(f"pivot_envs.domains.{domain.value}.expert")
    count = expert.generate_file(out, n, seed=seed) if n is not None else expert.generate_file(out, seed=seed)
    console.print(f"wrote {count} {domain.value} trajectories to {out}")


@app.command("verify")
def verify_cmd(trajectories: Path = typer.Option(..., help="The trajectory records (JSONL) the rows refer to."),
               candidates: Path = typer.Option(..., help='JSONL rows {"trajectory_id", "turn", "action"}.'),
               out: Path | None = typer.Option(None, help="Write one JSON verdict per row here (JSONL)."),
               verifier: str | None = typer.Option(None, help="Verifier name (default: each record's domain's)."),
               judge: str | None = typer.Option(
                   None, help="LLM judge as the verifiers' last stage: openai:BASE_URL#MODEL (any OpenAI-compatible "
                              "server, vllm serve included) or hf:PATH. Its call counts go in the summary."),
               judge_cache: Path | None = typer.Option(None, help="On-disk cache of the judge's answers.")) -> None:
    """Score candidate actions against the demonstrations; print counts by method and category."""
    from pivot_envs.verify import verify_file

    report = verify_file(trajectories, candidates, out, verifier, progress=True, judge=judge,
                         judge_cache_dir=judge_cache)
    console.print_json(json.dumps(report["summary"]))
    _fail_if_no_usable_rows(report["summary"], candidates)


def _fail_if_no_usable_rows(summary: dict[str, Any], candidates: Path) -> None:
    """Exit 2 when not one candidate row could be scored because of the rows themselves (not the machinery)."""
    from verifiers.core import Category

    malformed = sum(summary["by_category"].get(c, 0)
                    for c in (Category.BAD_ROW, Category.UNKNOWN_TRAJECTORY, Category.TURN_OUT_OF_RANGE))
    if summary["rows"] == 0:
        raise _fail(f"{candidates}: no candidate rows (expected one JSON object per line: "
                    '{"trajectory_id", "turn", "action"})', 2)
    if malformed == summary["rows"]:
        raise _fail(f"{candidates}: none of the {summary['rows']} candidate row(s) could be scored "
                    f"({json.dumps(summary['by_category'])}); pass --out FILE to see each row's error", 2)


@app.command("profile")
def profile_cmd(policy: str = typer.Option(..., help="Policy SPEC: replay, random, hf:PATH, openai:URL#MODEL."),
                trajectories: Path | None = typer.Option(None, help="JSONL records (default: the domain's bundled data)."),
                domain: str | None = typer.Option(
                    None, help="Registered domain of the records (default: their own `domain` field; without "
                               "--trajectories, tool_use's bundled data)."),
                limit: int = typer.Option(0, min=0, help="Only the first N trajectories (0 = all)."),
                k: int = typer.Option(8, "--k", min=2, help="Samples per candidate state."),
                max_new_tokens: int | None = typer.Option(
                    None, min=1, help="Token budget of one sampled turn (model policies; default: the policy's)."),
                out: Path = typer.Option(Path("runs/profile"), help="Cache and report directory."),
                verifier: str | None = typer.Option(None, help="Verifier name (default: the domain's)."),
                lambda_diff: float = typer.Option(0.6, help="Pivot rule: var > 0 and mean < lambda_diff."),
                seed: int = typer.Option(0, help="Sampling seed."),
                ray: str | None = typer.Option(None, "--ray", metavar="ADDRESS|auto",
                                               help="Restore and verify states on Ray actors (needs the [ray] extra).")) -> None:
    """Sample K actions at every candidate state, score them, report the pivot yield (cached, resumable).

    States whose prompt does not fit the model's context are skipped and counted; the report separates
    samples that did not parse from the verifier's rejections.
    """
    from agents.core import make_policy
    from agents.distributed import make_verifier_pool
    from agents.profile import ProfileConfig, profile, write_report
    from pivot_envs.core import TrajectoryEnv

    records, domain = _profile_records(trajectories, domain, limit)
    env = TrajectoryEnv(records, domain=domain, verifier=verifier)
    options = {"max_new_tokens": max_new_tokens} if max_new_tokens and policy.startswith(("hf:", "vllm:", "openai:")) else {}
    pol = make_policy(policy, trajectories=list(env.trajectories.values()), seed=seed, **options)
    pool = make_verifier_pool(env, ray_address=ray, verifier=verifier)
    # User data (ids, paths) is printed as is: no rich markup, emoji codes or highlighting applied to it.
    say = _plain_printer()
    say(f"profiling {len(records)} trajectories of {domain} with {pol.name}, k={k}")
    with _batch_progress("profiling") as on_batch:
        result = profile(env, pol, out, ProfileConfig(k=k, seed=seed, verifier=verifier), pool=pool,
                         on_batch=on_batch)
    summary = write_report(result, lambda_diff)
    pool.close()
    env.close()
    say(f"{summary['states']} states, zero-variance {summary['zero_variance_share']:.1%}, "
        f"{summary['pivots']} pivots ({summary['pivot_yield']:.1%} yield, {summary['yield_health']}); "
        f"{summary['skipped_prompt_too_long']} skipped (prompt too long); samples: {summary['unparsable_samples']} "
        f"unparsable, {summary['verifier_rejections']} rejected by the verifier; "
        f"report: {result.directory / 'report.md'}")


def _profile_records(trajectories: Path | None, domain: str | None, limit: int) -> tuple[list[Any], str]:
    """The records to profile and the domain name: given, else the records' own ``domain`` field."""
    from pivot_envs.registration import find_domain, get_domain
    from pivot_envs.trajectory import load_trajectories

    if trajectories is None:
        dom = get_domain(domain or "tool_use")
        records = dom.load()
    else:
        dom = get_domain(domain) if domain else None
        loaded = load_trajectories(trajectories, tool_schemas=dom.schema_map() if dom else None)
        for e in loaded.errors[:5]:
            err.print(f"skipped: {e}", markup=False, emoji=False, highlight=False)
        if len(loaded.errors) > 5:
            err.print(f"... and {len(loaded.errors) - 5} more problem(s); `pivotrl data validate` lists them all")
        records = loaded.trajectories
        if dom is None:
            named = sorted({t.domain for t in records})
            registered = [n for n in named if find_domain(n) is not None]
            # One registered domain: it is the env's; a mix: each record uses its own (generic for the rest).
            dom = get_domain(registered[0] if len(registered) == 1 and len(named) == 1 else "generic")
    records = records[:limit] if limit else records
    if not records:
        raise _fail(f"no usable trajectories in {trajectories or dom.env_id}", 2)
    return records, dom.name


def _plain_printer():
    def say(text: str) -> None:
        console.print(text, markup=False, emoji=False, highlight=False, soft_wrap=True)

    return say


class _batch_progress:
    """A rich progress bar on a terminal; plain "profiling: 3/40 batches" lines (about every 5%) otherwise,
    so progress still shows when the output goes to a file or a CI log."""

    def __init__(self, label: str):
        self.label = label
        self.progress: Any = None
        self.last = -1

    def __enter__(self):
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                     console=console)
            self.progress.__enter__()
            self.task = self.progress.add_task(self.label, total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)
            return
        step = max(total // 20, 1)
        if done == total or done // step != self.last // step:
            print(f"{self.label}: {done}/{total} batches", file=sys.stderr, flush=True)
        self.last = done

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _run_config(kind: str, config: Path | None, overrides: list[str]) -> None:
    from agents.config import ConfigError, load_config

    if kind == "train":
        from agents.pivotrl import TrainConfig as cls
        from agents.pivotrl import train as run
    elif kind == "sft":
        from agents.sft import SFTConfig as cls
        from agents.sft import train_sft as run
    else:
        from agents.e2e import E2EConfig as cls
        from agents.e2e import train_e2e as run
    try:
        cfg = load_config(cls, config, overrides)
    except ConfigError:
        raise
    except ValueError as exc:  # a cross-field rule of the dataclass's __post_init__: still the config's fault
        raise ConfigError(f"config: {exc}") from exc
    summary = run(cfg, log=console.print)
    console.print_json(json.dumps(summary))


_SET_HELP = "Override a config field: --set key=value (repeatable)."


@app.command("train")
def train_cmd(config: Path | None = typer.Option(None, help="TOML or YAML config (agents.pivotrl.TrainConfig)."),
              overrides: list[str] = typer.Option([], "--set", help=_SET_HELP)) -> None:
    """PivotRL: profile, filter pivots, single-turn GRPO. Resumes from the latest checkpoint."""
    _run_config("train", config, overrides)


@app.command("sft")
def sft_cmd(config: Path | None = typer.Option(None, help="TOML or YAML config (agents.sft.SFTConfig)."),
            overrides: list[str] = typer.Option([], "--set", help=_SET_HELP)) -> None:
    """SFT baseline: loss on the assistant tokens of the trajectories."""
    _run_config("sft", config, overrides)


@app.command("e2e")
def e2e_cmd(config: Path | None = typer.Option(None, help="TOML or YAML config (agents.e2e.E2EConfig)."),
            overrides: list[str] = typer.Option([], "--set", help=_SET_HELP)) -> None:
    """End-to-end RL baseline: multi-turn GRPO on whole episodes rewarded by the task outcome."""
    _run_config("e2e", config, overrides)


class EvalMode(enum.StrEnum):
    turn = "turn"
    episode = "episode"
    both = "both"


@eval_app.callback()
def eval_cmd(ctx: typer.Context,
             policy: str | None = typer.Option(None, help="Policy SPEC: replay, random, hf:PATH, vllm:PATH, openai:URL#MODEL."),
             env: str | None = typer.Option(None, "--env", help="Env id or domain name, e.g. pivot/ToolUse-v0."),
             mode: EvalMode = typer.Option(EvalMode.turn, help="turn (per-turn accuracy), episode (task success) or both."),
             out: Path | None = typer.Option(None, help="Write report.json, report.md and report.png here."),
             trajectories: Path | None = typer.Option(None, help="Held-out JSONL records (default: the domain's bundled data)."),
             limit: int = typer.Option(0, min=0, help="Only the first N trajectories (0 = all)."),
             temperature: float = typer.Option(0.0, min=0.0, help="Sampling temperature of model policies (0 = greedy)."),
             max_new_tokens: int = typer.Option(128, min=1, help="Token budget of one assistant turn."),
             batch_size: int = typer.Option(16, min=1, help="States restored, sampled and verified together."),
             parallel: int = typer.Option(8, min=1, help="Episodes played in lockstep (episode mode)."),
             seed: int = typer.Option(0, help="Seed of the policy.")) -> None:
    """Evaluate a policy: `pivotrl eval --policy SPEC --env ID [--mode turn|episode|both] [--out DIR]`."""
    if ctx.invoked_subcommand is not None:
        return
    if not policy or not env:
        err.print("[red]error:[/red] pass --policy SPEC and --env ID (or `pivotrl eval compare DIR...`)")
        raise typer.Exit(2)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from agents.core import make_policy
    from agents.evaluate import run_eval
    from pivot_envs.registration import get_domain
    from pivot_envs.trajectory import load_trajectories

    domain = get_domain(env)
    if trajectories:
        loaded = load_trajectories(trajectories)
        for e in loaded.errors[:5]:
            err.print(f"[yellow]skipped:[/yellow] {escape(str(e))}")
        records = loaded.trajectories
    else:
        records = domain.load()
    if not records:
        raise _fail(f"no usable trajectories in {trajectories or domain.env_id}", 2)
    options = {"temperature": temperature, "max_new_tokens": max_new_tokens} if policy.startswith(("hf:", "vllm:", "openai:")) else {}
    pol = make_policy(policy, trajectories=records, seed=seed, **options)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        current: dict[str, object] = {}

        def on_start(what: str, total: int) -> None:
            current["task"] = progress.add_task(f"{pol.name}: {what}", total=total)

        report = run_eval(pol, domain.env_id, mode=mode.value, trajectories=records, limit=limit, out_dir=out,
                          batch_size=batch_size, parallel=parallel, on_start=on_start,
                          on_progress=lambda n: progress.advance(current["task"], n))
    parts = []
    if "turn" in report:
        parts.append(f"per-turn accuracy {report['turn']['accuracy']:.1%} over {report['turn']['turns']} turns")
    if "episode" in report:
        parts.append(f"task success {report['episode']['success_rate']:.1%} over {report['episode']['episodes']} episodes")
    console.print(f"{pol.name} on {domain.env_id}: " + "; ".join(parts) + (f". Report: {out / 'report.md'}" if out else "."))


@eval_app.command("compare")
def eval_compare(dirs: list[Path] = typer.Argument(..., help="Output directories of `pivotrl eval --out`."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Put several evaluation runs side by side."""
    from agents.evaluate import compare

    rows = compare(dirs)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title="Evaluation runs")
    for col in ("run", "policy", "env", "per-turn accuracy", "task success", "seconds"):
        table.add_column(col, justify="left" if col in ("run", "policy", "env") else "right")
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.1%} ({r['turns']})"
        succ = "-" if r["success_rate"] is None else f"{r['success_rate']:.1%} ({r['episodes']})"
        table.add_row(r["run"], r["policy"], r["env_id"], acc, succ, f"{r['seconds']:.1f}")
    console.print(table)


@app.command("demo")
def demo(quick: bool = typer.Option(False, "--quick", help="Tiny sizes: the whole pipeline in minutes (default output runs/demo-quick)."),
         full: bool = typer.Option(False, "--full", help="Three seeds, both ablations, about 400 held-out turns per "
                                   "domain, and PivotRL vs E2E RL checkpoint curves at equal accuracy (default output "
                                   "runs/demo-full)."),
         random_turns: bool = typer.Option(False, "--random-turns",
                                           help="Ablation: also train PivotRL on random turns instead of pivots."),
         exact_match_reward: bool = typer.Option(False, "--exact-match-reward",
                                                 help="Ablation: also train PivotRL with an exact-match reward."),
         out: Path | None = typer.Option(None, help="Where the models and the report are written "
                                         "(default runs/demo, runs/demo-quick with --quick, runs/demo-full with --full)."),
         cache_dir: Path | None = typer.Option(None, help="Cache of base models and generated held-out data "
                                               "(default ~/.cache/pivotrl/demo)."),
         rebuild_base: bool = typer.Option(False, "--rebuild-base",
                                           help="Train the base model here instead of using the built-in one."),
         seed: int = typer.Option(0, help="Random seed (another seed also trains another base model).")) -> None:
    """Base vs SFT vs PivotRL vs end-to-end RL on the bundled data, on CPU; writes OUT/report.md."""
    from agents.demo import run_demo

    if quick and full:
        raise typer.BadParameter("--quick and --full are two different plans: pick one")
    out = out or Path("runs/demo-quick" if quick else "runs/demo-full" if full else "runs/demo")
    run_demo(out, quick=quick, full=full, random_turns=random_turns, exact_match_reward=exact_match_reward, seed=seed,
             cache_dir=cache_dir, rebuild_base=rebuild_base, console=console)


@app.command("bench")
def bench(out: Path | None = typer.Option(None, "--out", help="Also write the figures as JSON here, and the "
                                          "table of targets as Markdown beside it (same name, .md)."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
          repeats: int = typer.Option(20, min=1, help="Repetitions per measurement (median is reported)."),
          docker: bool | None = typer.Option(None, "--docker/--no-docker", show_default=False,
                                             help="Docker figures (execution verdicts, restore, fork); default: "
                                                  "when a daemon answers."),
          profile: bool = typer.Option(False, "--profile", help="Also measure profiling overlap with the demo's "
                                                                "base model (minutes on CPU).")) -> None:
    """Measure restore, fork and verification speed (and profiling overlap); print tables (or JSON)."""
    from agents.bench import markdown, run_all, tables

    result = run_all(repeats=repeats, docker=docker, profile=profile)
    text = json.dumps(result, indent=2)
    table = markdown(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(table, encoding="utf-8")
    if as_json:
        print(text)
        return
    for rich_table in tables(result):
        console.print(rich_table)
    console.print(table, markup=False, highlight=False)
    if out:
        console.print(f"JSON: {out}; Markdown: {out.with_suffix('.md')}")


@sandbox_app.command("build-image")
def sandbox_build_image(
    from_registry: bool = typer.Option(False, "--from-registry", help="Build on debian:bookworm-slim from a registry."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the image exists."),
    mirror: str | None = typer.Option(None, help="Debian mirror for debootstrap (default: from apt sources)."),
    network: str = typer.Option("host", help="Network of the build containers: host or bridge."),
) -> None:
    """Build the Docker sandbox image (a no-op when it is up to date) and print its tag."""
    from sandboxes.images import ensure_image

    print(ensure_image(from_registry=from_registry, force=force, mirror=mirror, network_mode=network))


@sandbox_app.command("reap")
def sandbox_reap(
    all_sessions: bool = typer.Option(False, "--all", help="Also remove the sandboxes of running processes."),
    max_snapshot_gb: float | None = typer.Option(None, help="Then prune the oldest unused snapshots to this size."),
    session: str | None = typer.Option(None, help="Only objects of this pivotrl.session label."),
) -> None:
    """Remove containers and snapshot images that dead pivotrl processes left behind; print a JSON report."""
    from sandboxes.docker import reap

    budget = None if max_snapshot_gb is None else int(max_snapshot_gb * 1024**3)
    report = reap(all_sessions=all_sessions, max_snapshot_bytes=budget, session=session)
    print(json.dumps(report.to_dict(), indent=2))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
