"""Contract tests: every registered env passes check_trajectory_env; plugins register through entry points."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest

import pivot_envs
from pivot_envs import check_trajectory_env, list_domains
from pivot_envs.registration import load_plugins

BUNDLED = [d.env_id for d in list_domains() if d.data_path() is not None]


def test_bundled_envs_are_registered_with_gymnasium():
    assert "pivot/ToolUse-v0" in BUNDLED
    env = gym.make("pivot/ToolUse-v0")
    assert isinstance(env.unwrapped, pivot_envs.TrajectoryEnv)
    env.close()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("env_id", BUNDLED)
def test_every_registered_env_passes_the_checker_on_every_turn(env_id, local_shell_worlds):
    env = gym.make(env_id)
    # Every turn of every record is restored, replayed and judged. Shell worlds copy a workspace per
    # fork, so their world checks run at one writing turn per record (in-process worlds at two).
    shell = any(t.sandbox in ("local", "docker") for t in env.unwrapped.trajectories.values())
    report = check_trajectory_env(env, world_turns=1 if shell else 2, random_restores=3 if shell else 6)
    base = env.unwrapped
    assert report.trajectories == len(base.ids)
    assert report.turns == sum(t.num_turns for t in base.trajectories.values())


def test_checker_catches_a_broken_recording(tool_use_records):
    import copy

    rec = copy.deepcopy(tool_use_records[0])
    idx = next(i for i, m in enumerate(rec.messages) if m["role"] == "tool")
    rec.messages[idx]["content"] = '{"tampered": true}'
    env = pivot_envs.TrajectoryEnv([rec], domain="tool_use")
    with pytest.raises(AssertionError, match="diverged"):
        check_trajectory_env(env, gym_checks=False)


def test_third_party_domain_registers_through_the_entry_point_group(tmp_path, monkeypatch):
    # A tiny plugin "installed" for this test: a module plus a dist-info with an entry point.
    (tmp_path / "pivot_plugin_example.py").write_text(textwrap.dedent('''
        from pivot_envs import Domain
        DOMAIN = Domain(name="example_plugin", env_id="pivot/ExamplePlugin-v0", description="plugin test")
    '''))
    dist = tmp_path / "pivot_plugin_example-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pivot-plugin-example\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pivotrl.domains]\nexample = pivot_plugin_example:DOMAIN\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        names = load_plugins(reload=True)
        assert "example_plugin" in names
        assert "pivot/ExamplePlugin-v0" in gym.registry
        assert pivot_envs.get_domain("pivot/ExamplePlugin-v0").description == "plugin test"
    finally:
        sys.modules.pop("pivot_plugin_example", None)
        pivot_envs.registration._DOMAINS.pop("example_plugin", None)
        gym.registry.pop("pivot/ExamplePlugin-v0", None)


def test_a_plugin_imported_before_pivot_envs_still_registers(tmp_path):
    # `from my_plugin import DOMAIN` first: the plugin imports pivot_envs, which loads the plugins while
    # the plugin is still half-imported. It must still be registered, with no warning, in a fresh process.
    (tmp_path / "pivot_plugin_early.py").write_text(textwrap.dedent('''
        from pivot_envs import Domain
        DOMAIN = Domain(name="early_plugin", env_id="pivot/EarlyPlugin-v0", description="imported first")
    '''))
    dist = tmp_path / "pivot_plugin_early-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pivot-plugin-early\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pivotrl.domains]\nearly = pivot_plugin_early:DOMAIN\n")
    code = ("import logging, gymnasium as gym\nlogging.basicConfig()\nfrom pivot_plugin_early import DOMAIN\n"
            "print('pivot/EarlyPlugin-v0' in gym.registry)\nimport pivot_envs\n"
            "print(pivot_envs.get_domain('early_plugin') is DOMAIN)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.stdout.split() == ["True", "True"] and "skipping" not in out.stderr, out.stderr


def test_broken_plugin_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pivotrl.domains]\nbroken = no_such_module_xyz:DOMAIN\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    names = load_plugins(reload=True)
    assert "tool_use" in names
    assert "skipping domain plugin broken" in caplog.text


def test_env_ids_must_be_versioned():
    with pytest.raises(ValueError, match="pivot/<Name>-v<N>"):
        pivot_envs.register_domain(pivot_envs.Domain(name="x", env_id="X"))
