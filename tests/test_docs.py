"""docs/ is true to the code: the CLI reference is the CLI's own tree, every doc the README links exists,
and nothing points outside the repository."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import typer.main

from agents.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_generated_from_the_current_cli():
    assert (DOCS / "cli.md").read_text() == _generator().render(), (
        "docs/cli.md is out of date: run `.venv/bin/python scripts/gen_cli_docs.py` and commit it")


def test_every_command_and_option_is_in_the_cli_reference():
    text = (DOCS / "cli.md").read_text()

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        if path:
            yield path, cmd

    for path, cmd in walk(typer.main.get_command(app), []):
        if hasattr(cmd, "commands") and not [p for p in cmd.params if p.name != "help"]:
            continue
        heading = f"## `pivotrl {' '.join(path)}`"
        assert heading in text, heading
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for p in cmd.params:
            for opt in getattr(p, "opts", []):
                if opt.startswith("-"):
                    assert f"`{opt}`" in section, f"{heading}: {opt}"


def test_readme_links_every_doc_and_links_resolve():
    readme = (ROOT / "README.md").read_text()
    for doc in ("docs/data-format.md", "docs/domains.md", "docs/verifiers.md", "docs/cli.md", "docs/troubleshooting.md"):
        assert f"]({doc})" in readme, doc
    for md in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", md.read_text()):
            assert (md.parent / target).exists(), f"{md.relative_to(ROOT)} links to missing {target}"


def test_docs_point_nowhere_outside_the_repository():
    for md in [ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "examples").rglob("*.py")]:
        text = md.read_text()
        assert "/work/shared" not in text and "../shared" not in text and "DESIGN.md" not in text, md
