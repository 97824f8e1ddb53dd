"""Unbounded text and chat spaces.

Gymnasium's ``spaces.Text`` has a fixed character set and length, which chat observations break, and
``AsyncVectorEnv`` with shared memory silently returns wrong text. These spaces accept any string;
vector envs batch them as tuples through Gymnasium's generic ``Space`` handlers, which needs
``shared_memory=False``:

>>> import gymnasium as gym
>>> envs = gym.vector.AsyncVectorEnv([lambda: gym.make("pivot/ToolUse-v0")] * 2, shared_memory=False)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

ROLES = ("system", "user", "assistant", "tool")
_WORDS = ("order", "refund", "please", "check", "status", "the", "my", "cancel", "address", "thanks")


class Chat(spaces.Space[dict]):
    """Observations of a :class:`~pivot_envs.core.TrajectoryEnv`: a message list and tool schemas.

    An element is ``{"messages": [OpenAI message dicts], "tools": [function specs]}`` of any length.
    """

    def __init__(self, seed: int | np.random.Generator | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if not isinstance(x, dict) or set(x) != {"messages", "tools"}:
            return False
        if not isinstance(x["messages"], list) or not isinstance(x["tools"], list):
            return False
        return all(isinstance(m, dict) and m.get("role") in ROLES for m in x["messages"])

    def sample(self, mask: Any = None, probability: Any = None) -> dict:
        n = int(self.np_random.integers(1, 5))
        messages = [{"role": "system", "content": "You are a helpful agent."}]
        for i in range(n):
            role = "user" if i % 2 == 0 else "assistant"
            words = self.np_random.choice(_WORDS, size=int(self.np_random.integers(1, 8)))
            messages.append({"role": role, "content": " ".join(str(w) for w in words)})
        return {"messages": messages, "tools": []}

    def __repr__(self) -> str:
        return "Chat()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chat)


class AssistantTurn(spaces.Space[str]):
    """Actions: one assistant turn as raw model text (Hermes tool-call format) or a message dict.

    ``sample()`` gives a random turn: half the time a message, half the time a call to one of
    ``tool_names`` with random arguments, so random agents exercise both kinds.
    """

    def __init__(self, tool_names: Sequence[str] = (), seed: int | np.random.Generator | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)
        self.tool_names = tuple(tool_names)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if isinstance(x, str):
            return True
        return isinstance(x, dict) and x.get("role", "assistant") == "assistant"

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        words = " ".join(str(w) for w in self.np_random.choice(_WORDS, size=int(self.np_random.integers(1, 6))))
        if not self.tool_names or self.np_random.random() < 0.5:
            return words.capitalize() + "."
        name = str(self.np_random.choice(self.tool_names))
        args = {str(self.np_random.choice(["id", "order_id", "user_id", "query"])): words.split()[0]}
        return "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"

    def __repr__(self) -> str:
        return f"AssistantTurn(tools={len(self.tool_names)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AssistantTurn) and other.tool_names == self.tool_names
