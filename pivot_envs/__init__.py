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
]

load_plugins()


def __getattr__(name: str):
    if name == "check_trajectory_env":
        from pivot_envs.checker import check_trajectory_env

        return check_trajectory_env
    raise AttributeError(f"module 'pivot_envs' has no attribute {name!r}")
