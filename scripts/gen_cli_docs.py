"""Write docs/cli.md from the typer app, so the reference is the CLI itself (tests/test_docs.py checks it).

    .venv/bin/python scripts/gen_cli_docs.py          # rewrite docs/cli.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer.main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.cli import app  # noqa: E402

HEADER = """# Command-line reference

Generated from the CLI by `scripts/gen_cli_docs.py` (a test fails when it is out of date). Every command
also prints this with `--help`. Exit status: 0 success; 1 when a command ran and found problems in the
data or the machinery failed (no Docker daemon, an image build); 2 for a mistake in the command or its
input, always as one `error: ...` line on stderr.

Policy SPEC (`--policy`): `replay`, `random`, `hf:PATH_OR_ID`, `vllm:PATH_OR_ID`, `openai:BASE_URL#MODEL`.
"""


# typer may carry its own copy of click: commands and parameters are recognised by what they have.
def _option_line(param: Any) -> str:
    if param.param_type_name == "argument":
        help_text = " ".join((getattr(param, "help", None) or "").split())
        return f"- `{param.metavar or param.name.upper()}` (argument{'' if param.required else ', optional'}): {help_text}"
    names = " / ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    extra = []
    kind = getattr(param, "type", None) or getattr(param, "bare_type", None)
    if hasattr(kind, "choices"):
        extra.append("one of " + ", ".join(f"`{c}`" for c in kind.choices))
    if param.required:
        extra.append("required")
    elif param.default not in (None, False, (), []) and not param.is_flag:
        extra.append(f"default `{param.default.value if hasattr(param.default, 'value') else param.default}`")
    help_text = " ".join((param.help or "").split())
    tail = f" ({'; '.join(extra)})" if extra else ""
    return f"- {names}{tail}: {help_text}"


def _walk(cmd: Any, path: list[str], out: list[str]) -> None:
    if hasattr(cmd, "commands"):
        own = [p for p in cmd.params if p.name != "help"]
        if own:  # a group that runs itself (`pivotrl eval --policy ...`)
            _section(cmd, path, own, out)
        for name in sorted(cmd.commands):
            _walk(cmd.commands[name], [*path, name], out)
        return
    _section(cmd, path, [p for p in cmd.params if p.name != "help"], out)


def _section(cmd: Any, path: list[str], params: list[Any], out: list[str]) -> None:
    doc = (cmd.help or "").strip().split("\n\n")
    out += ["", f"## `pivotrl {' '.join(path)}`", "", " ".join(doc[0].split())]
    for para in doc[1:]:
        out += ["", " ".join(para.split())]
    if params:
        out += [""] + [_option_line(p) for p in params]


def render() -> str:
    cmd = typer.main.get_command(app)
    out = [HEADER.rstrip()]
    _walk(cmd, [], out)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    (ROOT / "docs" / "cli.md").write_text(render(), encoding="utf-8")
    print(f"wrote {ROOT / 'docs' / 'cli.md'}")
