"""RandomAgent: a floor for every benchmark. Calls a random available tool with type-correct random
arguments, or says something random; seeded, so runs repeat."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.core import Policy, Sample

_WORDS = ("ok", "sure", "order", "thanks", "please", "W1001", "yes", "cancel", "status", "help")


class RandomAgent(Policy):
    """Half the turns call a random tool of the observation, half send a random message."""

    name = "random"

    def __init__(self, seed: int = 0, tool_probability: float = 0.5):
        self.rng = np.random.default_rng(seed)
        self.tool_probability = tool_probability

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _value(self, schema: dict[str, Any]) -> Any:
        if "enum" in schema:
            return schema["enum"][int(self.rng.integers(len(schema["enum"])))]
        kind = schema.get("type", "string")
        if kind == "integer":
            return int(self.rng.integers(0, 10))
        if kind == "number":
            return float(np.round(self.rng.random() * 100, 2))
        if kind == "boolean":
            return bool(self.rng.random() < 0.5)
        if kind == "array":
            return [self._value(schema.get("items") or {}) for _ in range(int(self.rng.integers(1, 3)))]
        if kind == "object":
            return {}
        return str(self.rng.choice(_WORDS))

    def _turn(self, tools: Sequence[dict[str, Any]]) -> str:
        if tools and self.rng.random() < self.tool_probability:
            fn = tools[int(self.rng.integers(len(tools)))]["function"]
            params = fn.get("parameters") or {}
            props = params.get("properties") or {}
            required = set(params.get("required") or [])
            args = {k: self._value(v) for k, v in props.items() if k in required or self.rng.random() < 0.3}
            return "<tool_call>" + json.dumps({"name": fn["name"], "arguments": args}) + "</tool_call>"
        words = self.rng.choice(_WORDS, size=int(self.rng.integers(2, 8)))
        return " ".join(str(w) for w in words).capitalize() + "."

    def sample(
        self, observations: Sequence[dict[str, Any]], n: int = 1, infos: Sequence[dict[str, Any]] | None = None
    ) -> list[list[Sample]]:
        return [[Sample(self._turn(obs.get("tools") or [])) for _ in range(n)] for obs in observations]
