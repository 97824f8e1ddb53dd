"""The worked example under examples/my_domain installs as a real plugin and works end to end.

pip installs it (wheel build, dist-info with the ``pivotrl.domains`` entry point) into a temporary
directory put on ``sys.path``, so nothing is left in the project's environment; then ``gym.make``,
``check_trajectory_env`` and ``pivotrl eval`` run on it as on any registered domain, and its own tests run.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from typer.testing import CliRunner

import pivot_envs
from agents.cli import app
from pivot_envs.registration import _DOMAINS, load_plugins

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_domain"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("example")
    src, target = work / "src", work / "site"
    # Built from a copy: a build writes build/ and *.egg-info next to the sources.
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, text=True, timeout=300)
    assert (next(target.glob("*.dist-info")) / "entry_points.txt").read_text().count("my_domain:DOMAIN") == 1
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        assert "my_domain" in load_plugins(reload=True)
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m == "my_domain" or m.startswith("my_domain.")]:
            del sys.modules[name]
        _DOMAINS.pop("my_domain", None)
        gym.registry.pop("pivot/MyDomain-v0", None)


def test_gym_make_and_the_checker(installed):
    env = gym.make("pivot/MyDomain-v0")
    report = pivot_envs.check_trajectory_env(env)
    assert report.trajectories == 14 and report.turns == sum(t.num_turns for t in env.unwrapped.trajectories.values())
    assert report.write_turns > 0 and report.perturbations > 0
    # the records reference the domain's tool schemas; loaded, they carry them in full
    assert all(t.tool_names == ["add_event", "list_events", "cancel_event", "find_contact", "send_email"]
               for t in env.unwrapped.trajectories.values())
    env.close()


@pytest.mark.parametrize(("policy", "low", "high"), [("replay", 1.0, 1.0), ("random", 0.0, 0.15)])
def test_pivotrl_eval_through_the_cli(installed, tmp_path, policy, low, high):
    out = tmp_path / policy
    result = CliRunner().invoke(app, ["eval", "--policy", policy, "--env", "pivot/MyDomain-v0", "--mode", "both",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert low <= report["turn"]["accuracy"] <= high
    assert low <= report["episode"]["success_rate"] <= high
    records = [json.loads(line) for line in (EXAMPLE / "my_domain/data/my_domain.jsonl").read_text().splitlines()]
    assert report["turn"]["turns"] == sum(m["role"] == "assistant" for r in records for m in r["messages"])
    assert report["episode"]["episodes"] == len(records) == 14


def test_the_examples_own_tests_pass(installed):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                          env={**__import__("os").environ, "PYTHONPATH": str(installed)}, capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
