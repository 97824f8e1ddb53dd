"""Policy implementations. Import them from here or build them with :func:`agents.make_policy`.

Model-backed policies load lazily: ``import agents.policies`` does not import torch, transformers or openai.
"""

from __future__ import annotations

from typing import Any

from agents.policies.random import RandomAgent
from agents.policies.replay import ReplayAgent

_LAZY = {"HFPolicy": "agents.policies.hf", "OpenAIPolicy": "agents.policies.openai", "VLLMPolicy": "agents.policies.vllm"}

__all__ = ["HFPolicy", "OpenAIPolicy", "RandomAgent", "ReplayAgent", "VLLMPolicy"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
