"""The README is true as printed: its Python example runs, its JSONL example validates, and every
`pivotrl ...` command in its bash blocks parses against the real CLI (and, where cheap, runs)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from agents.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(lang: str, text: str | None = None) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text if text is not None else README.read_text(), flags=re.DOTALL)


def _readme_commands() -> list[list[str]]:
    """Every `pivotrl ...` line of the README's bash blocks, as argv (without `pivotrl`), comments cut."""
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("pivotrl "):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def _parse(argv: list[str]) -> list[str]:
    """Parse ``argv`` through the CLI's click command tree without running anything; returns the command path.

    Unknown subcommands or options, missing required options and bad choices raise click's usage errors.
    """
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("pivotrl", list(argv))
    path = []
    while hasattr(cmd, "commands"):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:  # a group that runs itself (`pivotrl eval --policy ...`)
            break
        name, sub, args = cmd.resolve_command(ctx, rest)
        path.append(name)
        cmd, ctx = sub, sub.make_context(name, args, parent=ctx)
    return path


def test_readme_python_example_runs():
    blocks = _blocks("python")
    assert blocks, "README has no python example"
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["reward"] == 1.0 and namespace["verdict"].category == "EQUIVALENT"
    assert "1.0 exact EQUIVALENT" in out.getvalue()
    assert "[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]" in out.getvalue()


def test_readme_jsonl_examples_are_one_record_per_line():
    for doc in (README, ROOT / "docs" / "data-format.md"):
        blocks = _blocks("json", doc.read_text())
        assert blocks, f"{doc.name} shows no JSONL example"
        for block in blocks:
            lines = [line for line in block.splitlines() if line.strip()]
            for line in lines:
                assert isinstance(json.loads(line), dict), (doc.name, line[:80])


def test_readme_does_not_point_outside_the_repository():
    for doc in (README, *sorted((ROOT / "docs").glob("*.md"))):
        assert "../shared" not in doc.read_text() and "/work/shared" not in doc.read_text(), doc.name
    for link in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link


def test_every_readme_command_parses():
    commands = _readme_commands()
    assert len(commands) >= 15, commands  # the README's bash blocks are read at all
    paths = set()
    for argv in commands:
        paths.add(tuple(_parse(argv)))
    # the README covers every command family
    assert {p[0] for p in paths if p} >= {"data", "profile", "train", "sft", "e2e", "eval", "sandbox"}


def test_a_command_the_cli_does_not_know_fails_to_parse():
    """The parse check above can fail: an unknown option or choice is a usage error."""
    from agents.cli import _click_errors

    for argv in (["eval", "--policy", "replay", "--env", "x", "--mode", "sometimes"],
                 ["data", "validate", "my.jsonl", "--no-such-option"], ["dta", "validate", "x"]):
        with pytest.raises(_click_errors.UsageError):
            _parse(argv)


CHEAP = {("envs", "list"), ("data", "validate"), ("data", "stats"), ("data", "candidates")}


def test_cheap_readme_commands_run(tmp_path, monkeypatch):
    """The data commands run on the README's own JSONL example, saved as the `my.jsonl` they name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.jsonl").write_text(_blocks("json")[0])
    ran = []
    for argv in _readme_commands():
        if tuple(_parse(argv)) not in CHEAP:
            continue
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, (argv, result.output)
        ran.append(tuple(argv[:2]))
    assert set(ran) == CHEAP
    assert "1 valid record(s), 0 invalid line(s)" in CliRunner().invoke(app, ["data", "validate", "my.jsonl"]).output
    rows = [json.loads(line) for line in (tmp_path / "cands.jsonl").read_text().splitlines()]
    assert [(r["trajectory_id"], r["turn"]) for r in rows] == [("t1", 0), ("t1", 1)]
