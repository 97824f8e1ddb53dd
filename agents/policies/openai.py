"""OpenAIPolicy: any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, TGI, OpenAI) as a policy.

Each observation becomes one ``chat.completions`` request with its ``messages``, its ``tools`` and ``n``;
each returned choice's message (content + ``tool_calls``) is written back as Hermes text with
``Action.from_message(...).to_text()``, so verifiers see the same format as from local models. The server
renders its own chat template and parses tool calls itself; no token ids or log-probabilities come back,
so this policy is for evaluation and profiling, not for GRPO updates.

Needs the ``openai`` client package (the ``[openai]`` extra); it is imported when a policy is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents.core import Policy, Sample
from pivot_envs.actions import Action

# What a chat.completions request message may carry; the rest (reasoning_content, ...) is not sent.
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


class OpenAIServerError(RuntimeError):
    """The server could not be reached or answered with an error.

    Attributes:
        base_url: The server's base URL.
        model: The model asked for.
        status: The HTTP status, when there was one.
    """

    def __init__(self, message: str, *, base_url: str, model: str, status: int | None = None):
        super().__init__(message)
        self.base_url, self.model, self.status = base_url, model, status


class OpenAIPolicy(Policy):
    """Samples turns from an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: The served model name.
        api_key: Defaults to ``$OPENAI_API_KEY``, else ``"EMPTY"`` (local servers take any key).
        temperature: Sampling temperature (0 = greedy, where the server supports it).
        top_p: Nucleus mass, or None for the server's default.
        max_tokens: Completion budget per turn.
        seed: Passed to servers that honour it, or None.
        concurrency: Observations requested in parallel.
        timeout: Seconds per request.
        max_retries: Client retries on connection errors, 408/409/429 and 5xx.
        extra_body: Extra JSON fields for the request (e.g. ``{"top_k": 20}`` for vLLM).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        temperature: float = 1.0,
        top_p: float | None = None,
        max_tokens: int = 512,
        seed: int | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 2,
        extra_body: Mapping[str, Any] | None = None,
        name: str | None = None,
    ):
        try:
            import openai  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError(
                "OpenAIPolicy needs the 'openai' client package: pip install 'pivotrl[openai]' (or pip install openai)"
            ) from exc
        self._openai = openai
        self.base_url, self.model = base_url, model
        self.temperature, self.top_p, self.max_tokens, self.seed = temperature, top_p, max_tokens, seed
        self.concurrency, self.extra_body = max(1, int(concurrency)), dict(extra_body or {})
        self.name = name or f"openai:{base_url}#{model}"
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout, max_retries=max_retries,
        )

    def sample(
        self, observations: Sequence[Mapping[str, Any]], n: int = 1, infos: Sequence[Mapping[str, Any]] | None = None
    ) -> list[list[Sample]]:
        """``n`` turns per observation; requests for different observations run concurrently."""
        if n < 1:
            raise ValueError(f"n={n}; expected >= 1")
        if len(observations) <= 1 or self.concurrency == 1:
            return [self._complete(obs, n) for obs in observations]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(observations))) as pool:
            return list(pool.map(lambda obs: self._complete(obs, n), observations))

    def _complete(self, observation: Mapping[str, Any], n: int) -> list[Sample]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [{k: m[k] for k in _MESSAGE_KEYS if m.get(k) is not None} for m in observation["messages"]],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if observation.get("tools"):
            request["tools"] = list(observation["tools"])
        if self.top_p is not None:
            request["top_p"] = self.top_p
        if self.seed is not None:
            request["seed"] = self.seed
        if self.extra_body:
            request["extra_body"] = self.extra_body
        samples: list[Sample] = []
        # Some servers ignore n (or cap it): ask again for what is missing, at most n requests in all.
        for _ in range(n):
            want = n - len(samples)
            if want == 0:
                break
            response = self._create(**request, n=want)
            samples.extend(Sample(_choice_text(choice.message)) for choice in response.choices[:want])
        if len(samples) < n:
            raise OpenAIServerError(
                f"{self.base_url} returned {len(samples)} of {n} choices for model {self.model!r} after {n} requests",
                base_url=self.base_url, model=self.model)
        return samples

    def _create(self, **request: Any) -> Any:
        try:
            return self.client.chat.completions.create(**request)
        except self._openai.APIStatusError as exc:
            raise OpenAIServerError(
                f"{self.base_url} answered HTTP {exc.status_code} for model {self.model!r}: {exc.message}",
                base_url=self.base_url, model=self.model, status=exc.status_code) from exc
        except self._openai.APIError as exc:
            raise OpenAIServerError(
                f"could not get a completion from {self.base_url} (model {self.model!r}): {exc}. Is the server "
                "running, and is base_url its API root (usually ending in /v1)?",
                base_url=self.base_url, model=self.model) from exc


def _choice_text(message: Any) -> str:
    data = message.model_dump() if hasattr(message, "model_dump") else dict(message)
    return Action.from_message(data).to_text()
