"""Trajectories become environments: ``TrajectoryEnv`` restores any turn of an expert trajectory.

>>> import gymnasium as gym
>>> import pivot_envs  # registers pivot/<Domain>-v0 ids
>>> "pivot/ToolUse-v0" in gym.registry
True
"""

from pivot_envs.actions import Action, ToolCall
from pivot_envs.core import RestoreDivergenceError, TrajectoryEnv
from pivot_envs.domain import Domain, register_sandbox_kind, sandbox_kinds
from pivot_envs.registration import (
    UnknownEnvError,
    get_domain,
    list_domains,
    load_plugins,
    make,
    register_domain,
)
from pivot_envs.trajectory import (
    Candidate,
    CandidateOptions,
    RecordError,
    Trajectory,
    TrajectoryError,
    extract_candidates,
    load_trajectories,
    save_trajectories,
)

__all__ = [
    "Action",
    "Candidate",
    "CandidateOptions",
    "Domain",
    "RecordError",
    "RestoreDivergenceError",
    "ToolCall",
    "Trajectory",
    "TrajectoryEnv",
    "TrajectoryError",
    "UnknownEnvError",
    "check_trajectory_env",
    "check_verifier",
    "extract_candidates",
    "get_domain",
    "list_domains",
    "load_plugins",
    "load_trajectories",
    "make",
    "register_domain",
    "register_sandbox_kind",
    "sandbox_kinds",
    "save_trajectories",
    "verify_file",
]

load_plugins()


_LAZY = {"check_trajectory_env": "pivot_envs.checker", "check_verifier": "pivot_envs.verifier_checker",
         "verify_file": "pivot_envs.verify"}


def __getattr__(name: str):
    # Tools over envs load on first use (they pull in gymnasium's checker and the judge's clients).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pivot_envs' has no attribute {name!r}")
