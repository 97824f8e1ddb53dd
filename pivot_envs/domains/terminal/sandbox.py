"""Where terminal records run: a Docker container when a daemon answers, else the local sandbox.

Records ask for ``{"sandbox": "docker", "image": ..., "workdir": "/workspace", "files": ...,
"setup": [...]}``. :func:`make_sandbox` builds that world with :class:`sandboxes.docker.DockerSandbox`
when the module imports and its daemon is reachable; otherwise it warns once per process and uses
:class:`~sandboxes.local.LocalSandbox`, which is **not a security boundary** (see :mod:`sandboxes.local`).
Commands run with the workspace as their working directory in both backends.

Both backends hash a workspace with :mod:`sandboxes.digest`, where a git index counts by its entries
rather than its bytes (its stat cache differs between equal repositories), so restoring a turn by
replay and by snapshot give the same digest.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from typing import Any

from pivot_envs.trajectory import Trajectory
from sandboxes.core import Sandbox
from sandboxes.local import LocalSandbox

logger = logging.getLogger(__name__)

#: Which backend records that ask for Docker get: ``"auto"`` (Docker when usable, else local, with one
#: warning), ``"docker"`` (Docker or an error) or ``"local"``. Tests and users may set it.
BACKEND = "auto"

#: Seconds per command when the record does not say (``env["timeout"]``).
DEFAULT_TIMEOUT = 10.0

_warned = False


def local_sandbox(env: dict[str, Any]) -> LocalSandbox:
    """The world of a record's ``env`` spec on this machine."""
    return LocalSandbox(files=env.get("files") or {}, setup=env.get("setup") or (),
                                timeout=float(env.get("timeout", DEFAULT_TIMEOUT)))


def make_sandbox(trajectory: Trajectory, backend: str | None = None) -> Sandbox | None:
    """Build the turn-0 world of ``trajectory`` (the :class:`~pivot_envs.domain.Domain` sandbox factory).

    Args:
        trajectory: A record whose ``env`` asks for ``"docker"`` (or ``"local"``; ``"none"`` gives None).
        backend: Overrides :data:`BACKEND` for this call.
    """
    env = trajectory.env or {}
    kind = env.get("sandbox", "none")
    if kind == "none":
        return None
    if kind not in ("docker", "local"):
        raise ValueError(f"record {trajectory.id}: the terminal domain runs 'docker' or 'local' sandboxes, "
                         f"got {kind!r}")
    choice = backend or BACKEND
    if choice not in ("auto", "docker", "local"):
        raise ValueError(f"backend must be 'auto', 'docker' or 'local', got {choice!r}")
    if kind == "docker" and choice != "local":
        problem = docker_problem()
        if problem is None:
            return _docker_sandbox(env)
        if choice == "docker":
            raise RuntimeError(f"record {trajectory.id} needs Docker, which is unavailable: {problem}. "
                               "Start dockerd, or use backend='local' (not a security boundary).")
        _warn_once(problem)
    return local_sandbox(env)


@functools.cache
def docker_problem() -> str | None:
    """Why the Docker backend cannot be used in this process, or None when it can (checked once)."""
    try:
        module = importlib.import_module("sandboxes.docker")
    except Exception as exc:  # noqa: BLE001 - any import failure means "no Docker backend"
        return f"sandboxes.docker does not import ({type(exc).__name__}: {exc})"
    # The backend's own check (``docker_client()`` raises when no daemon answers), else ping ourselves.
    connect = getattr(module, "docker_client", None)
    try:
        if callable(connect):
            connect()
        else:
            import docker  # noqa: PLC0415

            client = docker.from_env(timeout=5)
            try:
                client.ping()
            finally:
                client.close()
    except Exception as exc:  # noqa: BLE001
        return f"no Docker daemon reachable ({type(exc).__name__}: {exc})"
    return None


def _warn_once(problem: str) -> None:
    """One short line per process. The SDK's nested reasons (``docker_problem`` quotes them, and
    ``DockerUnavailableError`` quotes them again) go to debug level only."""
    global _warned
    if not _warned:
        _warned = True
        reason = problem
        for prefix, short in (("no Docker daemon reachable", "no Docker daemon reachable"),
                              ("sandboxes.docker does not import", "the docker package does not import")):
            if problem.startswith(prefix):
                reason = short
        logger.warning("Docker unavailable: %s; using the local sandbox, which is not a security boundary", reason)
        logger.debug("Docker unavailable: %s", problem)


def _docker_sandbox(env: dict[str, Any]) -> Sandbox:
    from sandboxes.docker import DockerSandbox  # noqa: PLC0415 - optional backend

    kwargs: dict[str, Any] = {"image": env.get("image"), "files": env.get("files") or {},
                              "setup": env.get("setup") or (), "timeout": float(env.get("timeout", DEFAULT_TIMEOUT))}
    if "workdir" in inspect.signature(DockerSandbox).parameters and env.get("workdir"):
        kwargs["workdir"] = env["workdir"]
    # An env makes a sandbox per new record and closes it once its world is archived: warm workers
    # save a container start and removal each time.
    return DockerSandbox(**kwargs, lease=True)
