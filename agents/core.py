"""The policy contract: sample assistant turns for a batch of chat states.

A policy maps observations of a :class:`~pivot_envs.core.TrajectoryEnv` (``{"messages", "tools"}``) to
``n`` sampled assistant turns each, as raw text in the domain's tool-call format. Model-backed policies
(HF, vLLM, OpenAI-compatible) also return token ids and log-probabilities for training.

Policy SPEC strings (``pivotrl eval --policy SPEC``): ``replay``, ``random``, ``hf:PATH_OR_ID``,
``vllm:PATH_OR_ID``, ``openai:BASE_URL#MODEL``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One sampled assistant turn.

    Attributes:
        text: The raw turn text (Hermes tool-call format for tool calls).
        token_ids: Generated token ids, for model-backed policies.
        logprobs: Log-probability of each generated token under the sampling policy.
    """

    text: str
    token_ids: tuple[int, ...] | None = None
    logprobs: tuple[float, ...] | None = None


class Policy(ABC):
    """Samples assistant turns. Subclasses implement :meth:`sample`."""

    name: str = "policy"

    @abstractmethod
    def sample(
        self, observations: Sequence[dict[str, Any]], n: int = 1, infos: Sequence[dict[str, Any]] | None = None
    ) -> list[list[Sample]]:
        """Return ``n`` samples for each observation (outer list aligned with ``observations``).

        ``infos`` are the env's info dicts for the same states; model policies ignore them, the replay
        policy uses their ``trajectory_id`` and ``turn`` to find the demonstration.
        """

    def reseed(self, seed: int) -> None:  # noqa: B027 - an optional hook; stateless policies need nothing
        """Make the next :meth:`sample` calls reproducible (profiling seeds each batch by its index)."""

    def act(self, observation: dict[str, Any], info: dict[str, Any] | None = None) -> str:
        """One turn for one observation (the first sample)."""
        return self.sample([observation], n=1, infos=[info] if info is not None else None)[0][0].text


class PolicySpecError(ValueError):
    """A policy SPEC string that cannot be turned into a policy."""


SPEC_FORMS = ("replay", "random", "hf:PATH_OR_ID", "vllm:PATH_OR_ID", "openai:BASE_URL#MODEL")


def make_policy(spec: str, *, trajectories: Sequence[Any] = (), seed: int = 0, **options: Any) -> Policy:
    """Build a policy from a SPEC string.

    * ``replay``: plays back ``trajectories``.
    * ``random``: a seeded random tool caller.
    * ``hf:PATH_OR_ID``: :class:`~agents.policies.hf.HFPolicy` from a checkpoint directory or hub id;
      ``options`` go to ``HFPolicy.from_pretrained`` (``temperature``, ``max_new_tokens``, ``device``, ...).
    * ``vllm:PATH_OR_ID``: :class:`~agents.policies.vllm.VLLMPolicy`, a vLLM engine in-process (needs the
      vLLM virtual environment, ``make setup-vllm``).
    * ``openai:BASE_URL#MODEL``: :class:`~agents.policies.openai.OpenAIPolicy` for an OpenAI-compatible
      server, e.g. ``openai:http://127.0.0.1:8000/v1#Qwen/Qwen3-8B``; ``options`` go to its constructor.

    >>> make_policy("random").name
    'random'
    """
    kind, _, target = spec.partition(":")
    if spec == "replay":
        from agents.policies.replay import ReplayAgent

        return ReplayAgent(trajectories)
    if spec == "random":
        from agents.policies.random import RandomAgent

        return RandomAgent(seed=seed)
    if kind == "hf" and target:
        from agents.policies.hf import HFPolicy

        try:
            return HFPolicy.from_pretrained(target, seed=seed, **options)
        except OSError as exc:
            raise PolicySpecError(f"policy {spec!r}: {exc}") from exc
    if kind == "openai" and target:
        base_url, _, model = target.rpartition("#")
        if not base_url or not model:
            raise PolicySpecError(f"policy {spec!r}: expected openai:BASE_URL#MODEL, "
                                  "e.g. openai:http://127.0.0.1:8000/v1#my-model")
        from agents.policies.openai import OpenAIPolicy

        return OpenAIPolicy(base_url, model, seed=seed, **options)
    if kind == "vllm" and target:
        from agents.policies.vllm import VLLMPolicy, VLLMUnavailableError

        try:
            return VLLMPolicy.from_pretrained(target, seed=seed, **options)
        except (OSError, VLLMUnavailableError) as exc:
            raise PolicySpecError(f"policy {spec!r}: {exc}") from exc
    raise PolicySpecError(f"unknown policy SPEC {spec!r}; expected one of: {', '.join(SPEC_FORMS)}")
