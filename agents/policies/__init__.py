"""Policy implementations. Import them from here or build them with :func:`agents.make_policy`."""

from agents.policies.random import RandomAgent
from agents.policies.replay import ReplayAgent

__all__ = ["RandomAgent", "ReplayAgent"]
