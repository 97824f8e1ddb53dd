"""Where terminal records run: a Docker container when a daemon answers, else the local sandbox.

Records ask for ``{"sandbox": "docker", "image": ..., "workdir": "/workspace", "files": ...,
"setup": [...]}``. :func:`make_sandbox` builds that world with :class:`sandboxes.docker.DockerSandbox`
when the module imports and its daemon is reachable; otherwise it warns once per process and uses
:class:`TerminalLocalSandbox`, which is **not a security boundary** (see :mod:`sandboxes.local`).
Commands run with the workspace as their working directory in both backends.

Why a :class:`~sandboxes.local.LocalSandbox` subclass: git's index (``.git/index``) caches each file's
``stat`` data (ctime, inode, device) next to what is staged. Two workspaces in the same git state
therefore differ byte for byte as soon as git writes its index (``git add``, ``git commit``, even
``git status``), and a plain file digest calls equal worlds different. :func:`workspace_digest` hashes the
index's entries (mode, object id, stage, flags, path) instead of its bytes, so restoring a turn by
replay and by snapshot give the same digest. The stat cache is not state: no git command's output
depends on it, only how fast git finds out. :class:`sandboxes.docker.DockerSandbox` hashes its
workspace the same way; once :mod:`sandboxes.local` does too, this subclass can go.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import logging
import os
import struct
from pathlib import Path
from typing import Any

from pivot_envs.trajectory import Trajectory
from sandboxes.core import Sandbox, Snapshot
from sandboxes.local import LocalSandbox

logger = logging.getLogger(__name__)

#: Which backend records that ask for Docker get: ``"auto"`` (Docker when usable, else local, with one
#: warning), ``"docker"`` (Docker or an error) or ``"local"``. Tests and users may set it.
BACKEND = "auto"

#: Seconds per command when the record does not say (``env["timeout"]``).
DEFAULT_TIMEOUT = 10.0

_warned = False


class TerminalLocalSandbox(LocalSandbox):
    """A :class:`~sandboxes.local.LocalSandbox` whose state digest ignores git's stat cache.

    Everything else (threat model, limits, snapshots by copy) is the local sandbox's.
    """

    def state_digest(self) -> str:
        self._check_open()
        return workspace_digest(self.workspace)

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        return Snapshot(snap.backend, workspace_digest(Path(snap.payload)), snap.payload)

    def fork(self, n: int = 1) -> list[Sandbox]:
        forks = super().fork(n)
        for sandbox in forks:
            # Same workspace copy and settings; only the digest differs, and it has no state of its own.
            sandbox.__class__ = TerminalLocalSandbox
        return forks


def local_sandbox(env: dict[str, Any]) -> TerminalLocalSandbox:
    """The world of a record's ``env`` spec on this machine."""
    return TerminalLocalSandbox(files=env.get("files") or {}, setup=env.get("setup") or (),
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
    global _warned
    if not _warned:
        _warned = True
        logger.warning("Docker unavailable: %s; using the local sandbox, which is not a security boundary", problem)


def _docker_sandbox(env: dict[str, Any]) -> Sandbox:
    from sandboxes.docker import DockerSandbox  # noqa: PLC0415 - optional backend

    kwargs: dict[str, Any] = {"image": env.get("image"), "files": env.get("files") or {},
                              "setup": env.get("setup") or (), "timeout": float(env.get("timeout", DEFAULT_TIMEOUT))}
    if "workdir" in inspect.signature(DockerSandbox).parameters and env.get("workdir"):
        kwargs["workdir"] = env["workdir"]
    return DockerSandbox(**kwargs)


# -- the digest -------------------------------------------------------------------------------------


def workspace_digest(top: Path) -> str:
    """sha256 over every file (path, executable bit, content), symlink and directory under ``top``.

    The walk and encoding of the local sandbox's own digest (``.tmp/`` at the top and ``__pycache__/``
    skipped), except that a git index counts by its entries (:func:`git_index_entries`), not its bytes:
    the digest :class:`sandboxes.docker.DockerSandbox` computes, so equal workspaces hash equally on
    both backends.
    """
    entries: list[tuple[bytes, bytes, bytes]] = []

    def visit(directory: str, prefix: bytes) -> None:
        with os.scandir(directory) as it:
            children = list(it)
        for entry in children:
            rel = prefix + os.fsencode(entry.name)
            if entry.is_symlink():
                entries.append((rel, b"link", os.fsencode(os.readlink(entry.path))))
            elif entry.is_dir(follow_symlinks=False):
                if entry.name == "__pycache__" or (not prefix and entry.name == ".tmp"):
                    continue
                entries.append((rel + b"/", b"dir", b""))
                visit(entry.path, rel + b"/")
            elif entry.is_file(follow_symlinks=False):
                executable = entry.stat(follow_symlinks=False).st_mode & 0o111
                entries.append((rel, b"exec" if executable else b"file", _file_detail(entry.path, rel)))

    visit(os.fspath(top), b"")
    digest = hashlib.sha256(b"pivotrl-local-workspace-v1\0")
    for rel, kind, detail in sorted(entries):
        digest.update(kind + b"\0" + rel + b"\0" + detail + b"\0")
    return digest.hexdigest()


def _file_detail(path: str, rel: bytes) -> bytes:
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as f:
            data = f.read()
    except PermissionError:
        return b"unreadable"
    if rel == b".git/index" or rel.endswith(b"/.git/index"):
        staged = git_index_entries(data)
        if staged is not None:
            return b"git-index:" + hashlib.sha256(staged).hexdigest().encode()
    return hashlib.sha256(data).hexdigest().encode()


def git_index_entries(data: bytes) -> bytes | None:
    """A git index (versions 2 and 3) without its stat cache and extensions; None if not one of those.

    Each entry keeps what git acts on: mode, object id, flags (stage, assume-valid, skip-worktree,
    intent-to-add) and path. Dropped: ctime, mtime, device, inode, uid, gid and size (the stat cache that
    tells git whether to re-read a file) and extensions such as the cache tree (derived from the entries).
    Layout: https://git-scm.com/docs/index-format.
    """
    if len(data) < 12 or data[:4] != b"DIRC":
        return None
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        return None  # version 4 prefix-compresses paths; git writes it only when configured to
    out, pos = [], 12
    for _ in range(count):
        if pos + 62 > len(data):
            return None
        mode, = struct.unpack(">I", data[pos + 24 : pos + 28])
        oid = data[pos + 40 : pos + 60]
        flags, = struct.unpack(">H", data[pos + 60 : pos + 62])
        head, extended = 62, 0
        if flags & 0x4000:
            if version < 3 or pos + 64 > len(data):
                return None
            extended, = struct.unpack(">H", data[pos + 62 : pos + 64])
            head = 64
        end = data.find(b"\0", pos + head)
        if end < 0:
            return None
        path = data[pos + head : end]
        out.append(struct.pack(">IHH", mode, flags & 0xF000, extended) + oid + path + b"\0")
        pos += (head + len(path) + 8) & ~7  # entries are NUL-padded to a multiple of 8 bytes
    return b"".join(out)
