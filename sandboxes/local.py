"""Local subprocess sandbox: ``bash -c`` in a private temporary workspace, under resource limits.

Threat model. This is **not a security boundary**. Commands share the host kernel, see the host's
filesystem (anything world-readable can be read, anything world-writable such as ``/tmp`` or
``/dev/shm`` can be written), and have the host's network. A kernel bug, a setuid binary or a
misconfigured host file is enough to escape. Run untrusted, adversarial code in the Docker sandbox
(:mod:`sandboxes.docker`), never here.

What it does protect against, for code that is buggy rather than malicious (a model's terminal
commands, candidate solutions under test):

* **Runaway CPU, memory, processes, file size, open files**: every process a command starts runs under
  the rlimits of :class:`LocalLimits` (``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``,
  ``RLIMIT_NOFILE``; core dumps are off). rlimits are per process (except the process count), so they
  bound runaway code but are no quota: k processes may use k times the memory, many files may fill a
  disk. cgroups would be needed for totals.
* **Hangs**: a wall-clock deadline per command; on expiry the whole process group is killed with
  ``SIGKILL`` and the result says ``timed_out=True`` (``exit_code=-9``). Nothing raises.
* **Output floods**: stdout and stderr go to unlinked host-side temporary files (bounded on disk by
  ``RLIMIT_FSIZE``); only the head and tail, ``max_output_bytes`` each, are read back into memory.
* **Leaking host environment variables**: the command's environment is built from an allow-list
  (``PATH``, ``LANG``, ``LC_ALL``, ``HOME``, ``TMPDIR``, ``TERM``) plus what the caller passes; nothing
  of ``os.environ`` is inherited, so host secrets (API keys, cloud credentials) are not visible.
* **Leftovers**: no process outlives the command that started it. When a command ends, every process of
  its session is killed, and so is every process that carries the sandbox's mark: on a root host its
  own uid (below), which an unprivileged process cannot shed, so ``setsid``, ``env -i`` and double forks
  do not escape; without root, a unique ``PIVOTRL_SANDBOX`` environment variable (or ``HOME``/``TMPDIR``
  pointing into the workspace). :meth:`LocalSandbox.close` does the same sweep and removes the workspace
  and every snapshot.
* **Root hosts**: when the host runs as root (CI, containers), commands run as a uid/gid of their own,
  drawn from :data:`SANDBOX_UID_RANGE` (no account uses it) and shared by the sandbox's forks, with no
  supplementary groups, because the kernel does not enforce ``RLIMIT_NPROC`` for root and because root
  could write anywhere. The workspace is handed to that user; snapshots stay root-only, so a command
  cannot alter a saved state.

Known limits, besides the above: without root, a process that clears its environment (``env -i``) and
leaves the command's session escapes the sweep; killed orphans are reparented to PID 1, so in a
container without an init process (``docker run --init``, tini) they linger as zombies.
"""

from __future__ import annotations

import os
import resource
import secrets
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sandboxes import digest as _digest
from sandboxes.core import ExecResult, Sandbox, Snapshot, truncate_output
from sandboxes.errors import SandboxError, SnapshotError, WalkLimitError

#: The ``PATH`` of every command; the host's ``PATH`` may name user directories and is not inherited.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Where the uids (and gids) of sandboxes on a root host are drawn from: a range no account uses, one
#: uid per sandbox and its forks, so that every process a sandbox's commands start carries it.
SANDBOX_UID_RANGE = (1 << 30, 1 << 31)

#: Sessions (= leader pids) of local commands running now in this process: a sweep by uid spares them.
_RUNNING: set[int] = set()

#: Text that runtimes print when an allocation fails under ``RLIMIT_AS``: Python, libc's strerror(ENOMEM)
#: (bash, coreutils), C++, the JVM, Go and Node.
_OOM_MARKERS = (
    "MemoryError",
    "Cannot allocate memory",
    "std::bad_alloc",
    "OutOfMemoryError",
    "out of memory",
)

#: Files written by the host (``files``, :meth:`LocalSandbox.write_file`).
_FILE_MODE = 0o644
#: How long killing a command's leftovers may take before we give up on a process (e.g. one stuck in
#: uninterruptible I/O); the result is returned regardless.
_SWEEP_SECONDS = 3.0


@dataclass(frozen=True)
class LocalLimits:
    """Resource limits (``setrlimit``) applied to every process that a command starts.

    Attributes:
        cpu_seconds: CPU time per process (``RLIMIT_CPU``). At the limit the process gets ``SIGXCPU``
            (``exit_code=-24``), a second later ``SIGKILL``. The wall-clock timeout of
            :meth:`LocalSandbox.exec` is separate and usually the one that fires first.
        memory_bytes: Virtual address space per process (``RLIMIT_AS``). Allocations beyond it fail;
            the result then says ``oom=True``. Virtual, not resident, memory is counted: every thread
            reserves a stack and glibc reserves up to 64 MiB of malloc arena per thread, and runtimes
            that reserve big heaps up front (JVM, Go, Node) may need a larger value.
        max_processes: Processes *and threads* a command may run at once (``RLIMIT_NPROC``). The kernel
            counts this per user, so it is applied on top of the tasks the command's user already runs
            when the command starts (other sandboxes' commands, zombies). Thread pools sized to the
            core count (OpenBLAS, OpenMP) count too: pass ``OMP_NUM_THREADS`` in ``env`` for those.
        file_size_bytes: Largest file a process may write (``RLIMIT_FSIZE``), the captured stdout and
            stderr included. Writing past it kills the writer with ``SIGXFSZ`` (``exit_code=-25``).
        open_files: File descriptors per process (``RLIMIT_NOFILE``).
    """

    cpu_seconds: int = 10
    memory_bytes: int = 1024**3
    max_processes: int = 64
    file_size_bytes: int = 64 * 1024**2
    open_files: int = 256

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_bytes", "max_processes", "file_size_bytes", "open_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"LocalLimits.{name} must be a positive integer, got {value!r}")


class LocalSandbox(Sandbox):
    """``bash -c`` commands in a private temporary workspace on this machine, under :class:`LocalLimits`.

    >>> with LocalSandbox({"hello.txt": "hi"}) as sb:
    ...     sb.exec("cat hello.txt").stdout
    'hi'

    The workspace is the commands' working directory and ``HOME``; ``TMPDIR`` is its ``.tmp/``. File
    paths of :meth:`read_file` / :meth:`write_file` are relative to it and may not leave it.
    Snapshots are copies of the workspace kept until this sandbox closes; any ``LocalSandbox`` can
    restore them while it is open. A sandbox is used by one thread at a time.

    Args:
        files: Files to create, relative path -> content.
        setup: Commands run once, in order, after the files are written; the first that fails raises
            :class:`~sandboxes.errors.SandboxError`.
        timeout: Default wall-clock seconds per command.
        limits: Resource limits per process; ``None`` uses :class:`LocalLimits` defaults.
        env: Extra environment variables for every command (they override the defaults).
        max_output_bytes: How much of stdout, and of stderr, a result keeps (head and tail).
    """

    backend = "local"

    def __init__(
        self,
        files: Mapping[str, str | bytes] | None = None,
        setup: Sequence[str] = (),
        *,
        timeout: float = 10.0,
        limits: LocalLimits | None = None,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 64_000,
    ) -> None:
        self._configure(timeout, limits, env, max_output_bytes, None)
        if isinstance(setup, str):
            raise TypeError("setup must be a sequence of commands, not one string; wrap it in a list")
        try:
            self._create_root()
            self.workspace.mkdir(mode=0o700)
            self._give_to_sandbox_user(self.workspace)
            self._prepare_workspace()
            for path, data in (files or {}).items():
                self.write_file(path, data)
            for command in setup:
                result = self.exec(command)
                if not result.ok:
                    why = "timed out" if result.timed_out else f"exit code {result.exit_code}"
                    raise SandboxError(
                        f"setup command {command!r} failed ({why}); stderr: {result.stderr.strip()[-2000:]!r}"
                    )
        except BaseException:
            # Half-built sandboxes must not leave a workspace behind.
            self.close()
            raise

    # -- construction ----------------------------------------------------------------------------

    def _configure(
        self, timeout: float, limits: LocalLimits | None, env: Mapping[str, str] | None, max_output_bytes: int,
        uid: int | None,
    ) -> None:
        # Everything _close needs is set first, so a constructor that fails half-way cleans up.
        self._root: Path | None = None
        self._snapshots: list[Path] = []
        self._sessions: set[int] = set()
        self._ran_commands = False
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if (
            isinstance(max_output_bytes, bool)
            or not isinstance(max_output_bytes, int)
            or max_output_bytes <= 0
        ):
            raise ValueError(f"max_output_bytes must be a positive integer, got {max_output_bytes!r}")
        extra_env = dict(env or {})
        bad = {k: v for k, v in extra_env.items() if not (isinstance(k, str) and isinstance(v, str))}
        if bad:
            raise TypeError(f"env keys and values must be strings, got {bad!r}")
        self._timeout = float(timeout)
        self._limits = limits or LocalLimits()
        self._extra_env = extra_env
        self._max_output_bytes = max_output_bytes
        # The kernel does not enforce RLIMIT_NPROC for root, and root could write anywhere: drop to nobody.
        self._drop_privileges = os.geteuid() == 0
        # A uid of its own (shared with its forks, whose outputs, e.g. ``ls -l``, must match): an
        # unprivileged process cannot change its uid, so it marks every process of the sandbox even
        # after ``setsid`` and ``env -i``. Without root, a unique environment variable has to do.
        self._uid = (uid or secrets.randbelow(SANDBOX_UID_RANGE[1] - SANDBOX_UID_RANGE[0]) + SANDBOX_UID_RANGE[0]
                     ) if self._drop_privileges else os.getuid()
        self._gid = self._uid if self._drop_privileges else os.getgid()
        self._token = secrets.token_hex(8)

    def _create_root(self) -> None:
        # <root>/ (owned by the host, 0711) holds workspace/ (owned by the sandbox user) and the snapshot
        # copies (0700, host only). The sandbox user can reach its workspace but can neither delete nor
        # replace it, nor see or alter snapshots.
        self._root = Path(tempfile.mkdtemp(prefix="pivotrl-local-"))
        os.chmod(self._root, 0o711)

    @classmethod
    def _copy_of(cls, source: LocalSandbox) -> LocalSandbox:
        """A new sandbox with ``source``'s settings and a copy of its workspace (no files, no setup)."""
        clone = cls.__new__(cls)
        clone._configure(source._timeout, source._limits, source._extra_env, source._max_output_bytes, source._uid)
        try:
            clone._create_root()
            clone._replace_workspace(source.workspace)
        except BaseException:
            clone.close()
            raise
        return clone

    @property
    def workspace(self) -> Path:
        """The workspace directory on the host: the commands' working directory and ``HOME``."""
        if self._root is None:
            raise SandboxError("the sandbox has no workspace (it failed to start or is closed)")
        return self._root / "workspace"

    @property
    def limits(self) -> LocalLimits:
        """The resource limits applied to every command."""
        return self._limits

    # -- commands --------------------------------------------------------------------------------

    def exec(self, command: str, *, timeout: float | None = None) -> ExecResult:
        """Run ``bash -c command`` in the workspace and return what it did.

        A timeout kills the command's process group and gives ``timed_out=True``, ``exit_code=-9``.
        ``oom`` is a heuristic (the kernel does not say why an allocation failed): the command failed and
        its stderr contains a runtime's out-of-memory message (``MemoryError``, ``Cannot allocate
        memory``, ``std::bad_alloc``, ...), or it was killed by ``SIGKILL`` (the kernel's OOM killer) with
        no timeout and before its CPU limit. When the command returns, every process it left behind is
        killed. stdout and stderr keep their head and tail, ``max_output_bytes`` each (``truncated``).
        """
        self._check_open()
        limit_s = self._timeout if timeout is None else float(timeout)
        if not limit_s > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if "\0" in command:
            # bash cannot receive a NUL in its arguments; this is the model's mistake, not ours.
            return ExecResult(2, stderr="bash: the command contains a NUL byte and cannot be run")
        self._prepare_workspace()
        rlimits = self._rlimits()
        user: dict[str, Any] = {}
        if self._drop_privileges:
            # subprocess does setgroups([]), setgid and setuid in the child, in that order, before
            # preexec_fn; lowering rlimits needs no privilege, so the limits are set as the sandbox user.
            user = {"user": self._uid, "group": self._gid, "extra_groups": []}
        self._ran_commands = True
        start = time.perf_counter()
        # Unlinked host-side files rather than pipes: nothing to drain while waiting, no deadlock, and the
        # command cannot reach them by path. RLIMIT_FSIZE bounds how much they can hold.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    ["bash", "-c", command],
                    cwd=self.workspace,
                    env=self._command_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_rlimit_setter(rlimits),
                    **user,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise SandboxError(f"could not start bash in the local sandbox: {exc}") from exc
            # With start_new_session the child leads a new session and process group: sid == pgid == pid.
            sid = proc.pid
            self._sessions.add(sid)
            _RUNNING.add(sid)
            try:
                exited = _wait_for_exit(sid, limit_s)
                timed_out = not exited
                if timed_out:
                    _killpg(sid)
                # The leader is not reaped yet (a zombie at worst), so its pid, and with it the session
                # and group ids, cannot be reused by an unrelated process while we kill by them.
                self._kill_leftovers(sid)
                cpu_s, exit_code = _reap(proc, grace_s=_SWEEP_SECONDS)
            except BaseException:
                _killpg(sid)
                self._kill_leftovers(sid)
                raise
            finally:
                self._sessions.discard(sid)
                _RUNNING.discard(sid)
            duration = time.perf_counter() - start
            stdout, cut_out = _read_capped(out, self._max_output_bytes)
            stderr, cut_err = _read_capped(err, self._max_output_bytes)
        if timed_out:
            exit_code = -signal.SIGKILL
        oom = not timed_out and _looks_like_oom(exit_code, stderr, cpu_s, self._limits.cpu_seconds)
        return ExecResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            oom=oom,
            duration_s=duration,
            truncated=cut_out or cut_err,
        )

    def _command_env(self) -> dict[str, str]:
        workspace = str(self.workspace)
        return {
            "PATH": SAFE_PATH,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": workspace,
            "TMPDIR": os.path.join(workspace, ".tmp"),
            "TERM": "dumb",
            **self._extra_env,
            "PIVOTRL_SANDBOX": self._token,
        }

    def _rlimits(self) -> list[tuple[int, tuple[int, int]]]:
        limits = self._limits
        # RLIMIT_NPROC is checked against every task of the user, so allow max_processes more than the
        # user runs now; a fixed value would starve commands while other sandboxes (or zombies) exist.
        in_use = _count_tasks(self._uid)
        wanted = [
            (resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1)),
            (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
            (resource.RLIMIT_NPROC, (in_use + limits.max_processes,) * 2),
            (resource.RLIMIT_FSIZE, (limits.file_size_bytes, limits.file_size_bytes)),
            (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),
            (resource.RLIMIT_CORE, (0, 0)),
        ]
        clamped = []
        for which, (soft, hard) in wanted:
            # The child sets its limits after dropping privileges and can then only lower hard limits.
            _, host_hard = resource.getrlimit(which)
            if host_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, host_hard), min(hard, host_hard)
            clamped.append((which, (soft, hard)))
        return clamped

    def _kill_leftovers(self, sid: int | None) -> None:
        """SIGKILL the members of session ``sid`` and every process that still lives in this workspace."""
        markers = self._env_markers()
        deadline = time.monotonic() + _SWEEP_SECONDS
        while True:
            if sid is not None:
                _killpg(sid)
            victims = _find_processes(sid, self._uid, markers, by_uid=self._drop_privileges)
            if not victims or time.monotonic() > deadline:
                return
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            # SIGKILL is delivered asynchronously; look again until nothing of ours is left running.
            time.sleep(0.002)

    def _env_markers(self) -> tuple[bytes, ...]:
        # HOME and TMPDIR point into this workspace, which no other process has reason to use; a caller
        # that overrides them with a path outside the sandbox must not make us kill unrelated processes.
        root = str(self._root)
        env = self._command_env()
        return (os.fsencode(f"PIVOTRL_SANDBOX={self._token}"), *(
            os.fsencode(f"{key}={env[key]}")
            for key in ("HOME", "TMPDIR")
            if env[key] == root or env[key].startswith(root + os.sep)
        ))

    # -- files -----------------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes:
        """Read a file of the workspace; ``path`` is relative to it and may not leave it."""
        self._check_open()
        target = self._resolve(path)
        mode = os.stat(target).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{path!r} is a directory of the sandbox workspace")
        if not stat.S_ISREG(mode):
            # Opening a FIFO the command left behind would block forever.
            raise ValueError(f"{path!r} is not a regular file (a FIFO, socket or device)")
        with open(target, "rb") as f:
            return f.read()

    def write_file(self, path: str, data: bytes | str) -> None:
        """Create or overwrite a workspace file (and its missing parent directories), owned by the
        sandbox user. ``path`` is relative to the workspace and may not leave it."""
        self._check_open()
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        target = self._resolve(path)
        missing: list[Path] = []
        parent = target.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            directory.mkdir()
            self._give_to_sandbox_user(directory)
        # _resolve followed every symlink and no command runs between calls, so O_NOFOLLOW only guards
        # against a symlink loop or a bug; root must never write through a link to a host file.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, _FILE_MODE)
        with open(fd, "wb") as f:
            f.write(payload)
        self._give_to_sandbox_user(target)

    def _resolve(self, path: str) -> Path:
        if not isinstance(path, str):
            raise TypeError(f"sandbox paths are strings, got {type(path).__name__}")
        if not path or "\0" in path:
            raise ValueError(f"invalid sandbox path {path!r}: empty or contains a NUL byte")
        if path.startswith("/"):
            raise ValueError(
                f"absolute path {path!r}: sandbox paths are relative to the workspace (e.g. 'src/main.py')"
            )
        normalized = os.path.normpath(path)
        if normalized == ".." or normalized.startswith("../"):
            raise ValueError(f"path {path!r} escapes the sandbox workspace")
        root = os.path.realpath(self.workspace)
        # realpath follows symlinks the command may have planted (e.g. out -> /etc/shadow): reading or
        # writing through them would act with the host's rights.
        full = os.path.realpath(os.path.join(root, normalized))
        if full != root and not full.startswith(root + os.sep):
            raise ValueError(f"path {path!r} resolves outside the sandbox workspace (through a symlink)")
        return Path(full)

    def _give_to_sandbox_user(self, path: Path) -> None:
        if self._drop_privileges:
            os.chown(path, self._uid, self._gid, follow_symlinks=False)

    def _give_tree_to_sandbox_user(self, top: Path) -> None:
        if not self._drop_privileges:
            return
        # os.walk does not descend into symlinked directories and chown does not follow links, so a
        # planted link can never make us chown a host file.
        for dirpath, dirnames, filenames in os.walk(top):
            os.chown(dirpath, self._uid, self._gid, follow_symlinks=False)
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), self._uid, self._gid, follow_symlinks=False)

    def _prepare_workspace(self) -> None:
        # A command may have deleted HOME's contents or TMPDIR; give the next command a usable one.
        workspace = self.workspace
        if not workspace.is_dir():
            workspace.mkdir(mode=0o700)
            self._give_to_sandbox_user(workspace)
        tmp = workspace / ".tmp"
        if not os.path.lexists(tmp):
            tmp.mkdir()
            self._give_to_sandbox_user(tmp)

    # -- state -----------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Copy the workspace (without ``.tmp/``) into a host-only directory; see :meth:`restore`.

        The copy lives until this sandbox closes or :meth:`discard` deletes it. Its ``nbytes`` is the size
        a tar archive of it would have (a 512-byte header per entry, file contents in 512-byte blocks), so
        local and Docker snapshots count alike in a snapshot cache's byte budget.
        """
        self._check_open()
        assert self._root is not None
        target = Path(tempfile.mkdtemp(prefix="snapshot-", dir=self._root))
        self._snapshots.append(target)
        nbytes = _copy_tree(self.workspace, target)
        # copytree copied the workspace's mode; the owner stays the host, so the sandbox user can't enter.
        os.chmod(target, 0o700)
        return Snapshot(self.backend, _tree_digest(target), str(target), nbytes=nbytes)

    def discard(self, snapshot: Snapshot) -> None:
        """Delete the snapshot's directory now rather than when this sandbox closes."""
        path = Path(snapshot.payload)
        if snapshot.backend == self.backend and path in self._snapshots:
            self._snapshots.remove(path)
            shutil.rmtree(path, ignore_errors=True)

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the workspace with a copy of ``snapshot``.

        The snapshot may come from any ``LocalSandbox`` that is still open.
        """
        self._check_open()
        if snapshot.backend != self.backend:
            raise SnapshotError(f"cannot restore a {snapshot.backend!r} snapshot into a local sandbox")
        source = Path(snapshot.payload)
        if not source.is_dir():
            raise SnapshotError(
                f"snapshot directory {source} no longer exists: the sandbox that took it was closed; "
                "take snapshots from a sandbox that stays open while they are used",
                snapshot_id=str(source),
            )
        self._replace_workspace(source)

    def fork(self, n: int = 1) -> list[Sandbox]:
        """Return ``n`` new sandboxes with a copy of this workspace and the same settings."""
        self._check_open()
        if n < 0:
            raise ValueError(f"fork needs n >= 0, got {n}")
        forks: list[Sandbox] = []
        try:
            for _ in range(n):
                forks.append(LocalSandbox._copy_of(self))
        except BaseException:
            for sandbox in forks:
                sandbox.close()
            raise
        return forks

    def state_digest(self) -> str:
        """sha256 over every file (path, permission bits, content), symlink (path, target), directory
        (path, permission bits) and FIFO/socket/device (path, type, never opened) of the workspace, caches
        by presence only (see :mod:`sandboxes.digest`). ``.tmp/`` is not state and is skipped. Raises
        :class:`~sandboxes.errors.WalkLimitError` past the walk's limits."""
        self._check_open()
        return _tree_digest(self.workspace)

    def manifest(self, limits: _digest.Limits | None = None) -> dict[str, tuple[str, str]]:
        """``{relative path: (kind, detail)}`` of the whole workspace, walked on the host (see
        :func:`sandboxes.digest.walk`): complete, or :class:`~sandboxes.errors.WalkLimitError`."""
        self._check_open()
        try:
            return {os.fsdecode(rel): (kind.decode(), os.fsdecode(detail))
                    for rel, kind, detail in _digest.walk(os.fspath(self.workspace), limits)}
        except _digest.WalkLimit as exc:
            raise WalkLimitError(f"local sandbox {self.workspace}: {exc}", limit=exc.limit) from exc

    def _replace_workspace(self, source: Path) -> None:
        assert self._root is not None
        # Copy into a staging directory first and swap it in with renames: a copy that fails half-way
        # leaves the current workspace intact, and the workspace keeps its path (HOME, TMPDIR).
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=self._root))
        try:
            _copy_tree(source, staging)
            os.chmod(staging, 0o700)
            os.mkdir(staging / ".tmp")
            self._give_tree_to_sandbox_user(staging)
            workspace = self.workspace
            if os.path.lexists(workspace):
                old = Path(tempfile.mkdtemp(prefix="old-", dir=self._root))
                os.replace(workspace, old / "workspace")
                os.replace(staging, workspace)
                _rmtree(old)
            else:
                os.replace(staging, workspace)
        except BaseException:
            _rmtree(staging)
            raise

    def _close(self) -> None:
        for sid in list(self._sessions):
            _killpg(sid)
        if self._root is None:
            return
        if self._ran_commands:
            self._kill_leftovers(None)
        _rmtree(self._root)
        self._snapshots.clear()
        self._root = None


# -- helpers ---------------------------------------------------------------------------------------


def _rlimit_setter(rlimits: list[tuple[int, tuple[int, int]]]) -> Callable[[], None]:
    # Runs in the forked child before exec: keep it to plain system calls (no imports, no locks).
    def set_limits() -> None:
        for which, pair in rlimits:
            resource.setrlimit(which, pair)

    return set_limits


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited, without reaping it; False when ``timeout_s`` passed first."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(timeout_s * 1000))
        finally:
            os.close(fd)
    # No pidfd (kernel < 5.3): poll with WNOWAIT, the way Popen.wait(timeout) polls.
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
    return True


def _reap(proc: subprocess.Popen[bytes], grace_s: float) -> tuple[float, int]:
    """Reap the (exited or SIGKILLed) leader: its CPU seconds and exit code (-9 if it would not die)."""
    if not _wait_for_exit(proc.pid, grace_s):
        # Stuck in uninterruptible sleep; Popen's own bookkeeping reaps it later.
        return 0.0, -signal.SIGKILL
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, proc.returncode


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass  # the group is gone already


def _find_processes(sid: int | None, uid: int, markers: tuple[bytes, ...], *, by_uid: bool = False) -> list[int]:
    """Live processes in session ``sid``, or owned by ``uid`` with one of ``markers`` in their environment,
    or (``by_uid``: the uid is the sandbox's own) owned by ``uid`` and outside every running command."""
    found = []
    own_pid = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found  # no procfs: killpg of the session is all we can do
    for name in names:
        if not name.isdigit() or int(name) == own_pid:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # the command name may contain ") "
            state, session = fields[0], int(fields[3])
            if state in (b"Z", b"X"):
                continue  # dead already, waiting for its parent (or PID 1) to reap it
            if session == sid:
                found.append(int(name))
                continue
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            if by_uid and session not in _RUNNING:
                found.append(int(name))
                continue
            if not markers:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked, or not ours to read
        if any(marker in environ for marker in markers):
            found.append(int(name))
    return found


def _count_tasks(uid: int) -> int:
    """Tasks (threads included, zombies included) whose real uid is ``uid``: what RLIMIT_NPROC counts."""
    total = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue
        real_uid = threads = None
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                real_uid = int(line.split()[1])
            elif line.startswith(b"Threads:"):
                threads = int(line.split()[1])
        if real_uid == uid:
            total += threads or 1
    return total


def _read_capped(f: IO[bytes], limit: int) -> tuple[str, bool]:
    """The text of ``f``, keeping head and tail like :func:`~sandboxes.core.truncate_output`, reading at
    most ``limit`` bytes into memory however big the file is."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    if size <= limit:
        return truncate_output(f.read(), limit)
    half = max(limit // 2, 1)
    head = f.read(half)
    f.seek(size - half)
    tail = f.read(half)
    marker = f"\n[... {size - 2 * half} bytes truncated ...]\n".encode()
    return (head + marker + tail).decode("utf-8", errors="replace"), True


def _looks_like_oom(exit_code: int, stderr: str, cpu_s: float, cpu_limit_s: int) -> bool:
    if exit_code == 0:
        return False
    if any(marker in stderr for marker in _OOM_MARKERS):
        return True
    # SIGKILL with no timeout: the kernel's OOM killer, unless the CPU hard limit (soft + 1 s) fired.
    killed = exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL)
    return killed and cpu_s < cpu_limit_s


#: A tar archive's block: each entry's header is one, and file contents are padded to whole ones.
_TAR_BLOCK = 512


def _copy_tree(source: Path, target: Path) -> int:
    """Copy a workspace into ``target`` (which may exist): symlinks as links, no ``.tmp/``, FIFOs made
    anew (never opened: a copy would block on them), sockets and devices left out (a command cannot
    make devices; a socket file outlives its listener only as a name).

    Returns the copy's size as a tar archive would count it (:data:`_TAR_BLOCK` bytes of header per entry,
    regular files' contents rounded up to whole blocks), from the ``lstat`` calls the copy makes anyway."""
    top = os.fspath(source)
    fifos: list[tuple[str, int]] = []
    size = _TAR_BLOCK  # the top directory's own entry

    def skip(directory: str, names: list[str]) -> list[str]:
        nonlocal size
        skipped = []
        for name in names:
            if directory == top and name == ".tmp":
                skipped.append(name)
                continue
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                skipped.append(name)
                continue
            mode = st.st_mode
            size += _TAR_BLOCK
            if stat.S_ISREG(mode):
                size += -(-st.st_size // _TAR_BLOCK) * _TAR_BLOCK
            elif not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                skipped.append(name)
                if stat.S_ISFIFO(mode):
                    fifos.append((os.path.relpath(os.path.join(directory, name), top), stat.S_IMODE(mode)))
                else:
                    size -= _TAR_BLOCK  # sockets and devices are not copied
        return skipped

    try:
        shutil.copytree(source, target, symlinks=True, ignore=skip, dirs_exist_ok=True)
        for rel, mode in fifos:
            path = os.path.join(target, rel)
            os.mkfifo(path)
            os.chmod(path, mode)
    except (shutil.Error, OSError) as exc:
        raise SnapshotError(f"could not copy the workspace {source} to {target}: {exc}") from exc
    return size


def _tree_digest(top: Path) -> str:
    # The same code the Docker backend runs in its containers (a git index counts by its entries).
    try:
        return _digest.tree(os.fspath(top))
    except _digest.WalkLimit as exc:
        raise WalkLimitError(f"local sandbox {top}: {exc}", limit=exc.limit) from exc


def _rmtree(path: Path) -> None:
    if os.geteuid() != 0:
        # Without root, directories a command made unreadable (chmod 000) must be opened up first.
        for dirpath, dirnames, _ in os.walk(path):
            for name in dirnames:
                child = os.path.join(dirpath, name)
                if not os.path.islink(child):
                    try:
                        os.chmod(child, 0o700)
                    except OSError:
                        pass
    shutil.rmtree(path, ignore_errors=True)
