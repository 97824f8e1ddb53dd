"""A warm pool of started Docker containers, so that a new sandbox costs a hand-out instead of a start.

Starting a container costs about 0.2-0.6 s; handing out one that is already running costs a liveness
check (one inspect and one trivial exec, about 50 ms here). The pool follows the lease -> use ->
destroy rule: a container is handed out once and never comes back; the caller closes the sandbox, which
removes the container, and a background thread starts a replacement. Pool containers carry the same
labels as every sandbox container, so :func:`~sandboxes.docker.reap` removes them if the process dies.

>>> with SandboxPool(size=2) as pool:  # doctest: +SKIP
...     with pool.acquire({"a.txt": "hi"}) as sb:
...         sb.exec("cat a.txt").stdout
'hi'
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import docker
import docker.errors

from sandboxes import docker as docker_backend
from sandboxes.docker import (
    DEFAULT_TTL_S,
    DEFAULT_USER,
    DockerLimits,
    DockerSandbox,
    _remove_container,
    docker_client,
    resolve_image,
    start_container,
)
from sandboxes.errors import SandboxClosedError

log = logging.getLogger(__name__)

#: Seconds the filler waits after a failed container start before it tries again.
_RETRY_S = 1.0


class SandboxPool:
    """Keeps up to ``size`` started containers of one image and one configuration ready for :meth:`acquire`.

    Args:
        image: Image of every container; ``None`` builds or finds the pivotrl sandbox image.
        size: How many started containers to keep ready (the bound; 0 disables pre-starting).
        timeout, limits, network, user, env, max_output_bytes, runtime, ttl_s, client: Settings of the
            sandboxes handed out, as for :class:`~sandboxes.docker.DockerSandbox`.

    Thread-safe: several threads may call :meth:`acquire` at once.
    """

    def __init__(
        self,
        image: str | None = None,
        size: int = 2,
        *,
        timeout: float = 10.0,
        limits: DockerLimits | None = None,
        network: bool = False,
        user: str = DEFAULT_USER,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 64_000,
        runtime: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        client: docker.DockerClient | None = None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be a non-negative integer, got {size!r}")
        self._client = client or docker_client()
        self.image = resolve_image(image, self._client)
        self.size = size
        self._limits = limits or DockerLimits()
        self._settings: dict[str, Any] = {
            "timeout": timeout,
            "network": network,
            "user": user,
            "env": dict(env or {}),
            "max_output_bytes": max_output_bytes,
            "runtime": runtime,
            "ttl_s": ttl_s,
        }
        self._ready: collections.deque[str] = collections.deque()
        self._starting = 0
        self._closed = False
        self._cond = threading.Condition()
        #: Hand-outs served from the pool and served by starting a container inline.
        self.hits = 0
        self.misses = 0
        registry = docker_backend._registry  # looked up now: a forked child gets a fresh one
        with registry.lock:
            registry.live.add(self)
        self._filler = threading.Thread(target=self._fill, name="pivotrl-sandbox-pool", daemon=True)
        self._filler.start()

    def acquire(
        self, files: Mapping[str, str | bytes] | None = None, setup: Sequence[str] = ()
    ) -> DockerSandbox:
        """A fresh sandbox on a started container (never used before), with ``files`` and ``setup`` applied.

        Falls back to starting a container inline when none is ready. The caller closes the sandbox.
        """
        container = None
        while True:
            with self._cond:
                if self._closed:
                    raise SandboxClosedError("the sandbox pool is closed")
                candidate = self._ready.popleft() if self._ready else None
                self._cond.notify_all()  # the filler replaces what was taken
            if candidate is None:
                break
            if self._alive(candidate):
                container = candidate
                self.hits += 1
                break
            _remove_container(self._client, candidate)  # died while waiting: discard and try the next
        if container is None:
            self.misses += 1
            container = self._start()
        return DockerSandbox(
            files,
            setup,
            image=self.image,
            limits=self._limits,
            client=self._client,
            container=container,
            **self._settings,
        )

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until ``size`` containers are ready (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < self.size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not self._closed

    @property
    def ready(self) -> int:
        """How many started containers wait for a hand-out now."""
        with self._cond:
            return len(self._ready)

    def close(self) -> None:
        """Stop refilling and remove every container not handed out. Idempotent; never raises."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._filler.join(timeout=30)
        with self._cond:
            leftovers = list(self._ready)
            self._ready.clear()
        for container in leftovers:
            _remove_container(self._client, container)
        registry = docker_backend._registry
        with registry.lock:
            registry.live.discard(self)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - finalisers must not raise
            pass

    # -- internals -------------------------------------------------------------------------------

    def _start(self) -> str:
        return start_container(
            self.image,
            limits=self._limits,
            network=self._settings["network"],
            runtime=self._settings["runtime"],
            ttl_s=self._settings["ttl_s"],
            client=self._client,
        )

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) + self._starting >= self.size:
                    self._cond.wait()
                if self._closed:
                    return
                self._starting += 1
            container = None
            try:
                container = self._start()
            except Exception as exc:  # noqa: BLE001 - the filler must outlive a daemon hiccup
                log.warning(
                    "sandbox pool could not start a container (retrying in %.0f s): %s", _RETRY_S, exc
                )
                time.sleep(_RETRY_S)
            finally:
                with self._cond:
                    self._starting -= 1
                    keep = container is not None and not self._closed
                    if keep:
                        self._ready.append(container)
                    self._cond.notify_all()
            if container is not None and not keep:
                _remove_container(self._client, container)  # the pool closed while it started

    def _alive(self, container: str) -> bool:
        """Running, and able to run a command (a trivial exec as the sandbox user)."""
        api = self._client.api
        try:
            if not api.inspect_container(container)["State"].get("Running"):
                return False
            exec_id = api.exec_create(container, ["true"], user=self._settings["user"])["Id"]
            api.exec_start(exec_id)
            return api.exec_inspect(exec_id).get("ExitCode") == 0
        except (docker.errors.APIError, KeyError):
            return False
