"""The sandbox contract: where a trajectory's actions run and how its world state is saved.

Every backend (in-process tools, a local subprocess workspace, Docker containers) implements
:class:`Sandbox`. A :class:`~pivot_envs.core.TrajectoryEnv` restores turn *k* by replaying the
recorded actions 0..k-1 through a sandbox and then calling :meth:`Sandbox.snapshot`; GRPO samples get
their own copy of that state through :meth:`Sandbox.fork`.

Two rules hold for every backend:

* What the executed code did is data. A non-zero exit, a timeout, an out-of-memory kill or a flood of
  output is reported in an :class:`ExecResult`; only faults of the sandbox itself raise
  (:class:`~sandboxes.errors.SandboxError` and subclasses).
* :meth:`Sandbox.close` is idempotent, never raises, and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sandboxes.errors import SandboxClosedError, UnsupportedOperation


@dataclass(frozen=True)
class ExecResult:
    """What one command or tool call did inside a sandbox.

    Attributes:
        exit_code: The process exit status (0 = success). For tool calls, 0 = the tool returned, 1 = the
            tool reported an error. Negative values are ``-signal`` as in :mod:`subprocess`.
        stdout: Standard output (or the tool's JSON result), decoded as UTF-8 with replacement.
        stderr: Standard error (or the tool's error message).
        timed_out: The deadline passed and the command was killed.
        oom: The command ran out of its memory allowance.
        duration_s: Wall-clock seconds spent.
        truncated: Output was longer than the cap; the head and tail were kept.
    """

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    oom: bool = False
    duration_s: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0 within its limits."""
        return self.exit_code == 0 and not self.timed_out and not self.oom

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "timed_out": self.timed_out,
            "oom": self.oom,
            "duration_s": self.duration_s,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class Snapshot:
    """A saved world state that :meth:`Sandbox.restore` and :meth:`Sandbox.fork` can return to.

    ``payload`` is backend-specific (a deep copy of a state, a copied workspace directory, an image id)
    and must be treated as opaque. ``digest`` is the state digest at the time of the snapshot.
    ``nbytes`` is what keeping the snapshot costs, in bytes (the serialized state, the copied files), or
    None when the backend does not know; snapshot caches budget by it.
    """

    backend: str
    digest: str
    payload: Any = field(repr=False, compare=False)
    nbytes: int | None = field(default=None, compare=False)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, the form every digest in the project is taken over.

    >>> canonical_json({"b": 1, "a": [1.0, "x"]})
    '{"a":[1.0,"x"],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_json(value: Any) -> str:
    """sha256 hex digest of :func:`canonical_json` of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


#: The ``PATH`` of trusted checks: system directories only, none of which a sandbox user can write.
CHECK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Defined before a check script runs: Python runs isolated (``-I``: neither the script's nor the working
#: directory on ``sys.path``, no ``PYTHON*`` variables, no user site; ``-S``: no ``site``, so no ``.pth``,
#: ``sitecustomize`` or ``usercustomize``) wherever the script says ``python3`` or ``python``.
_CHECK_PRELUDE = """\
python3() { "$PIVOTRL_PYTHON" -I -S "$@"; }
python() { "$PIVOTRL_PYTHON" -I -S "$@"; }
export -f python3 python
cd -- "$PIVOTRL_WORKSPACE" || exit 97
"""


def check_command(script: str) -> str:
    """The shell command that runs a trusted ``script`` (an episode's success test) isolated from what
    the agent could have written: see :meth:`Sandbox.run_check`."""
    inner = shlex.quote(_CHECK_PRELUDE + script)
    return (
        f"PATH={CHECK_PATH}; export PATH; "
        'w=$(pwd -P) && py=$(command -v python3 || echo /usr/bin/python3) && cd / && '
        'h=$(mktemp -d /tmp/pivotrl-check.XXXXXXXX) || exit 97; '
        f'env -i PATH={CHECK_PATH} HOME="$h" TMPDIR="$h" LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=dumb '
        'PIVOTRL_WORKSPACE="$w" PIVOTRL_PYTHON="$py" GIT_CONFIG_GLOBAL=/dev/null GIT_OPTIONAL_LOCKS=0 '
        # Command-line config outranks the repository's own: no fsmonitor or hook program of the agent runs.
        "GIT_CONFIG_COUNT=3 GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0=false "
        "GIT_CONFIG_KEY_1=core.hooksPath GIT_CONFIG_VALUE_1=/dev/null "
        "GIT_CONFIG_KEY_2=safe.directory GIT_CONFIG_VALUE_2='*' "
        f"bash --noprofile --norc -c {inner}; rc=$?; rm -rf -- \"$h\"; exit $rc"
    )


def timeout_problem(value: Any) -> str | None:
    """Why a ``timeout`` tool argument is invalid (not a finite positive number of seconds), or None.

    A valid one never raises the sandbox's limit: executors clamp it to :attr:`Sandbox.default_timeout`
    (:meth:`pivot_envs.domain.Domain.execute`).

    >>> timeout_problem(5), timeout_problem("5") is not None, timeout_problem(float("nan")) is not None
    (None, True, True)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"timeout must be a number of seconds, got {type(value).__name__} {str(value)[:40]!r}"
    try:
        seconds = float(value)
    except OverflowError:
        return f"timeout {str(value)[:40]}... is too large to be a number of seconds"
    if not math.isfinite(seconds) or seconds <= 0:
        return f"timeout must be a finite positive number of seconds, got {value!r}"
    return None


def truncate_output(data: bytes, limit: int) -> tuple[str, bool]:
    """Decode ``data``, keeping the head and tail when it is longer than ``limit`` bytes.

    Returns the text and whether anything was dropped.
    """
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace"), False
    half = max(limit // 2, 1)
    dropped = len(data) - 2 * half
    marker = f"\n[... {dropped} bytes truncated ...]\n".encode()
    return (data[:half] + marker + data[-half:]).decode("utf-8", errors="replace"), True


#: The capabilities a sandbox can declare (see :attr:`Sandbox.capabilities`).
CAPABILITIES = frozenset({"exec", "tools", "files"})

# Which method a backend overrides to gain each capability (when it does not declare them itself).
_CAPABILITY_METHODS = {"exec": "exec", "tools": "call_tool", "files": "read_file"}


class Sandbox(ABC):
    """A place where actions run, whose state can be saved, restored, forked and hashed.

    Every backend implements the world contract: :meth:`snapshot`, :meth:`restore`, :meth:`fork`,
    :meth:`state_digest` and :meth:`_close`. On top of it, a backend offers what fits its world and says so
    in :attr:`capabilities`:

    * ``"exec"``: :meth:`exec` runs shell commands (the ``bash`` tool of terminal records);
    * ``"tools"``: :meth:`call_tool` runs named tools with JSON arguments (databases, object worlds);
    * ``"files"``: :meth:`read_file` / :meth:`write_file` reach a file system (file-level verifiers).

    What a backend does not offer raises :class:`~sandboxes.errors.UnsupportedOperation`; nothing has to be
    stubbed. A subclass that does not set ``capabilities`` gets the ones whose methods it overrides.
    Sandboxes are context managers: ``with LocalSandbox() as sb: sb.exec("ls")``.

    >>> from sandboxes import InProcessSandbox
    >>> sorted(InProcessSandbox.capabilities)
    ['files', 'tools']
    """

    #: Short backend name (``"inprocess"``, ``"local"``, ``"docker"``), recorded in snapshots.
    backend: ClassVar[str] = "abstract"
    #: What this backend offers beyond the world contract: a subset of :data:`CAPABILITIES`.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    _closed: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "capabilities" in cls.__dict__:
            unknown = set(cls.capabilities) - CAPABILITIES
            if unknown:
                raise TypeError(f"{cls.__name__}.capabilities has unknown entries {sorted(unknown)}; "
                                f"expected a subset of {sorted(CAPABILITIES)}")
            cls.capabilities = frozenset(cls.capabilities)
            return
        # Existing backends declare nothing: infer from what they implement, so they keep working.
        cls.capabilities = frozenset(cap for cap, method in _CAPABILITY_METHODS.items()
                                     if getattr(cls, method) is not getattr(Sandbox, method))

    def supports(self, capability: str) -> bool:
        """True when this sandbox offers ``capability`` (``"exec"``, ``"tools"`` or ``"files"``)."""
        return capability in self.capabilities

    def exec(self, command: str, *, timeout: float | None = None) -> ExecResult:
        """Run a shell command (``bash -c``) and return what it did.

        Args:
            command: The command line, as a model would write it.
            timeout: Seconds before the command is killed; ``None`` uses the sandbox default.
        """
        raise UnsupportedOperation(self.backend, "exec", "This world runs no shell commands (capability 'exec'); "
                                                         "use call_tool.")

    def run_check(self, script: str, *, timeout: float | None = None) -> ExecResult:
        """Run a trusted bash ``script`` (an episode's success test) so that nothing the agent wrote
        changes how it runs; call it on a fork the agent no longer reaches.

        The script starts from ``/`` in a clean environment (:data:`CHECK_PATH`, ``HOME`` and ``TMPDIR`` a
        fresh empty directory, no ``PYTHONPATH`` or ``BASH_ENV``, the sandbox's own variables dropped),
        ``python3``/``python`` run isolated (``-I -S``), git ignores the repository's ``core.fsmonitor`` and
        hooks; then it changes to the workspace, which records' scripts address relatively. What the
        script itself executes from the workspace (the agent's program under test) runs as written.
        """
        return self.exec(check_command(script), timeout=timeout)

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ExecResult:
        """Call one of the sandbox's tool functions with JSON arguments.

        The result's ``stdout`` is the tool's output as text (JSON for structured results); a tool that
        reports an error gives ``exit_code=1`` and the message in ``stderr``.
        """
        raise UnsupportedOperation(self.backend, "call_tool", "This world has no named tools (capability 'tools'); "
                                                              "use exec.")

    def read_file(self, path: str) -> bytes:
        """Read a file of the sandbox's world (relative paths start at the workspace). Capability ``"files"``."""
        raise UnsupportedOperation(self.backend, "read_file", "This world has no files (capability 'files').")

    def write_file(self, path: str, data: bytes | str) -> None:
        """Create or overwrite a file of the world, creating parent directories. Capability ``"files"``."""
        raise UnsupportedOperation(self.backend, "write_file", "This world has no files (capability 'files').")

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Save the current world state. The sandbox stays usable and unchanged."""

    @abstractmethod
    def restore(self, snapshot: Snapshot) -> None:
        """Return the world to ``snapshot`` (taken from this sandbox or one of the same backend)."""

    def discard(self, snapshot: Snapshot) -> None:
        """Let go of ``snapshot``, taken by this sandbox, before the sandbox closes (caches evict).

        Nothing may restore it afterwards. Sandboxes and forks already made from it are unaffected.
        The default does nothing: in-process snapshots are plain objects the garbage collector frees.
        """
        return None

    @abstractmethod
    def fork(self, n: int = 1) -> list[Sandbox]:
        """Return ``n`` independent sandboxes, each in the current state. The caller closes them."""

    @abstractmethod
    def state_digest(self) -> str:
        """A sha256 hex digest of the world state: equal digests mean equal worlds."""

    @abstractmethod
    def _close(self) -> None:
        """Release every resource. Called at most once, by :meth:`close`."""

    @property
    def default_timeout(self) -> float | None:
        """Seconds a command may run when the caller names none: the sandbox's limit (None if it has none).

        Tool arguments never raise it: executors clamp a model's ``timeout`` to it."""
        return getattr(self, "_timeout", None)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release everything the sandbox holds. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close()
        except Exception:  # noqa: BLE001 - close must never raise (it runs in finalisers and atexit)
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosedError(f"{type(self).__name__} is closed; create or fork a new one.")

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
