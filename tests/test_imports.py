"""The import names `agents` and `verifiers` are also used by other PyPI projects: ours must win."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_top_level_packages_resolve_to_this_repo():
    code = "import agents, verifiers, pivot_envs, sandboxes; print(agents.__file__); print(verifiers.__file__); " \
           "print(pivot_envs.__file__); print(sandboxes.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    paths = [Path(line) for line in out.stdout.split()]
    assert len(paths) == 4
    for p in paths:
        assert p.resolve().is_relative_to(REPO), f"{p} is not inside {REPO}"


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "pivotrl"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("envs", "data", "demo", "bench"):
        assert command in out.stdout
