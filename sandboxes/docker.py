"""Docker sandbox: ``bash -c`` commands in a hardened container, snapshots by ``docker commit``.

Threat model. This backend is meant for untrusted, adversarial code (a policy's terminal commands, candidate
solutions under test). Each sandbox is one container created with these defaults, and each property has
an adversarial test in ``tests/sandboxes/test_docker.py``:

* **Network**: ``network_mode="none"``; the container has a loopback interface and nothing else, so
  nothing can be downloaded or exfiltrated. ``network=True`` (bridge network) is an explicit, logged
  opt-out.
* **Privilege**: commands run as uid/gid 1000 (``user``), never root, with every capability dropped
  (``cap_drop=["ALL"]``, an empty effective set), ``no-new-privileges`` (setuid binaries do not elevate)
  and Docker's default seccomp profile (never disabled), which refuses ``mount``, new namespaces, kernel
  modules, keyrings, clock changes and more. The container's own processes (``init`` and
  ``sleep infinity``) run as uid 65534, a different user, so commands cannot signal them. Outside
  ``/workspace``, the user's home and the ``/tmp`` tmpfs nothing is writable (the image closes
  Debian's world-writable ``/var/tmp`` and ``/run/lock``). Root as ``user`` is a logged opt-out.
* **Resource exhaustion**: cgroup limits of :class:`DockerLimits`: memory with swap equal to it (no swap;
  the kernel's OOM killer ends the biggest process and the result says ``oom=True``), CPU share
  (``nano_cpus``), a process/thread count (``pids_limit``: a fork bomb stalls at it), open files and file
  size (``ulimits``), and ``/tmp`` and ``/dev/shm`` as size-limited tmpfs mounts (their pages also count
  as the container's memory). Unlike :class:`~sandboxes.local.LocalSandbox`'s rlimits these are totals
  over every process of the container.
* **Runaway processes**: every command runs under ``timeout -k 1 <seconds>`` inside the container, and
  the host keeps its own deadline (``timeout + 5 s``), because the Docker API's exec has none: past it the
  command's processes are killed by a second exec, and if even that fails the container is restarted.
  When a command returns, every process of the command's user in the container is killed
  (``kill -9 -1``), so nothing a command starts (background jobs, ``setsid`` daemons, a fork bomb's
  leftovers) outlives it, and no command of the candidate runs while the host reads or writes files.
  A command that kills its wrapper (same user) to skip that is noticed and swept from outside.
  World-mode sandboxes start commands through one exec driver per container (:mod:`sandboxes.driver`)
  rather than a ``docker exec`` each: the same wrapper, user, environment and limits, and a command
  that kills the driver is treated like one that kills its wrapper.
* **Output floods**: stdout and stderr are read as they arrive and only the head and tail,
  ``max_output_bytes`` each, are kept in memory.
* **Leftovers**: every container and image this module creates carries labels (``pivotrl.managed=1``,
  the owner's pid, process start time, host, boot id and session, creation time and a TTL).
  :meth:`DockerSandbox.close` removes the container and the snapshot images nobody uses any more;
  an ``atexit`` hook and a ``SIGTERM`` handler (chained to the previous one) close whatever the process
  still holds; :func:`reap` (also run once when a process creates its first sandbox, and by
  ``pivotrl sandbox reap``) removes what a killed process left behind.

What it does **not** protect against:

* **Kernel exploits**: containers share the host kernel. A kernel bug reachable through the system
  calls the default seccomp profile allows is an escape. There is no gVisor or microVM by default;
  pass ``runtime="runsc"`` where gVisor is installed for a second boundary.
* **The image**: images are trusted input (ours is built from Debian's signed packages). A malicious
  image can do anything a container can.
* **The Docker daemon runs as root.** Access to its socket is root on the host: never mount it into a
  sandbox, and do not give untrusted code a Docker client.
* **Disk space**: the container's writable layer (``/workspace``) has no quota (overlay2 on ext4 offers
  none); ``file_size_bytes`` bounds each file, not their number.
* **Side channels and CPU timing** between containers on one host.
* **Its own status, against ptrace**: the per-command wrapper runs as the command's user, so a command
  able to ``ptrace`` it could make it misreport the command's exit code, timeout or OOM flag. The
  command stays inside the container and its limits either way.

State. A sandbox's world is its container's file system; :meth:`DockerSandbox.state_digest` hashes
``/workspace`` with the same algorithm as :class:`~sandboxes.local.LocalSandbox`, so equal workspaces
give equal digests on both backends. ``/tmp`` is scratch, not state. Processes are never state: they
do not survive a command, and snapshots do not capture them.

Snapshots are **world archives** by default (:mod:`sandboxes.worlds`): a tar of ``/workspace`` and the
command user's home, read by the daemon and kept in host memory. A restore extracts it in place, in the
same exec as the next command, after emptying the world trees, ``/tmp``, ``/dev/shm`` and the IPC
namespace; a fork leases a warm worker container from the process's shelf and does the same, and also
hashes the workspace in that exec (after the sweep, isolated, exactly as :meth:`state_digest`), so a
verifier's twin-fork verdict costs one ``docker exec``. Closed forks go back to the shelf; the shelf's
idle containers are labelled like any other and removed at exit. The hardening above is unchanged: the
reset runs as the command user, before the command, with no more rights than the command has. A world
archive is only valid when the user can write nothing else: an image where a probe finds other writable
paths, and a root sandbox, take image snapshots instead.

Image snapshots (``snapshots="image"``) are ``docker commit`` of the container (without pausing it: no
command runs between calls), about 0.1 s; restore and fork start new containers from the snapshot image
(about 0.2 s each, forks in parallel). Committing from a container that was itself made from a snapshot stacks one more layer;
when a snapshot would be more than :data:`MAX_CHAIN` layers above its base image, it is flattened
instead (``docker export`` of the container streamed into ``docker import``: exact for any image and
user, about 3-4 s for our image), so chains stay far below overlay2's limit of about 125 layers.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import inspect
import io
import json
import logging
import os
import posixpath
import re
import select
import signal
import socket
import struct
import tarfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.types import Ulimit

from sandboxes import digest as digest_module
from sandboxes.core import ExecResult, Sandbox, Snapshot
from sandboxes.driver import Driver, DriverGone
from sandboxes.driver import close_stream as _close_stream
from sandboxes.errors import IncompleteListingError, SandboxError, SnapshotError, WalkLimitError
from sandboxes.worlds import PROBE, RESET, RESET_FAILED, RESET_MARK, WorkerShelf, WorldArchive, merge_archives

log = logging.getLogger(__name__)
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")

#: The commands' working directory, and the root of :meth:`DockerSandbox.read_file` paths.
WORKDIR = "/workspace"
#: Who commands run as: the image's ``sandbox`` user.
DEFAULT_USER = "1000:1000"
#: Who the container's own processes (``init``, ``sleep infinity``) run as: ``nobody``, so that
#: commands (another uid, no capabilities) can neither signal them nor be confused with them.
CONTAINER_USER = "65534:65534"
#: Repository of snapshot images; each snapshot gets a unique tag.
SNAPSHOT_REPOSITORY = "pivotrl/snapshot"
#: Seconds after which :func:`reap` may remove an object whose owner cannot be checked (another host).
DEFAULT_TTL_S = 3600
#: Snapshot layers stacked on the base image before a snapshot is flattened (overlay2 allows ~125).
MAX_CHAIN = 8
#: How snapshots are taken by default: ``"world"`` (archives of the world trees, restored in place by one
#: command; see :mod:`sandboxes.worlds`) or ``"image"`` (``docker commit``). ``PIVOTRL_DOCKER_SNAPSHOTS``
#: overrides it; an image or user that world archives cannot express always uses ``"image"``.
SNAPSHOT_MODES = ("world", "image")
#: Threads a verifier may use to run the candidates of one state in parallel forks of a Docker sandbox.
PARALLEL_FORKS = 4
#: Extra seconds the host waits beyond a command's timeout (``timeout -k 1`` plus the sweep) before it
#: kills the command itself.
HOST_GRACE_S = 5.0

LABEL_MANAGED = "pivotrl.managed"
LABEL_KIND = "pivotrl.kind"  # "base" (built images), "sandbox" (containers), "snapshot" (committed images)
LABEL_SESSION = "pivotrl.session"
LABEL_OWNER_PID = "pivotrl.owner_pid"
LABEL_OWNER_START = "pivotrl.owner_start"
LABEL_HOST = "pivotrl.host"
LABEL_BOOT = "pivotrl.boot_id"
LABEL_CREATED = "pivotrl.created"
LABEL_TTL = "pivotrl.ttl"
LABEL_DEPTH = "pivotrl.depth"

#: The wrapper every command runs in (as ``bash -c WRAPPER pivotrl SECONDS COMMAND``). It reads the
#: cgroup's OOM-kill counter before and after the command (cgroup v2 ``memory.events``, v1
#: ``memory.oom_control``), runs the command under ``timeout``, kills every process of the user that is
#: left (``kill -9 -1`` spares the caller and PID 1; builtins only, so it works even when the pids limit
#: is reached; under the exec driver of :mod:`sandboxes.driver`, its parent, the same sweep spares the
#: driver too), and ends stderr with a NUL-framed trailer the host parses and strips. The trailer is
#: written after the sweep, so no process of the command can write after it, and the wrapper exits 0
#: only after the sweep: a trailer counts only when the exec's exit code is 0. A command that kills the
#: wrapper (it runs as the same user) therefore gets neither a trusted status nor a skipped sweep: the
#: host sees a non-zero exit code and sweeps from outside. The wrapper's own diagnostics (bash's
#: "Killed" job reports) go to /dev/null; the command's stderr is fd 3. With a fourth argument (the source of
#: :mod:`sandboxes.digest`), the wrapper also hashes ``/workspace`` after the sweep, isolated and from ``/``
#: exactly as :meth:`DockerSandbox.state_digest` does, and puts the digest (or ``-``) in the trailer: a fork's
#: command and the digest that judges it then cost one ``docker exec``.
_WRAPPER = r"""
read_oom() {
  OOM=0
  local f k v
  for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
    if [ -r "$f" ]; then
      while read -r k v; do [ "$k" = oom_kill ] && OOM=$v; done < "$f"
      return
    fi
  done
}
exec 3>&2 2>/dev/null
read_oom; before=$OOM; start=$EPOCHREALTIME
timeout -k 1 "$1" bash -c "$2" 2>&3 3>&-
rc=$?
end=$EPOCHREALTIME
n=0
if [ "$PPID" = 0 ]; then
  while kill -9 -1 2>/dev/null && [ $((n += 1)) -lt 100 ]; do :; done
else
  # Started by the exec driver (its parent, in the container): every process of the user but the driver.
  while [ $n -lt 100 ]; do
    hit=
    for p in /proc/[1-9]*; do
      p=${p#/proc/}
      [ "$p" = $$ ] || [ "$p" = "$PPID" ] || [ "$p" = 1 ] || { kill -9 "$p" 2>/dev/null && hit=1; }
    done
    [ -n "$hit" ] || break
    n=$((n + 1))
  done
fi
read_oom
d=-
if [ -n "$3" ]; then d=$(cd / && python3 -I -S -c "$3" --tree /workspace 2>/dev/null) || d=-; fi
printf '\0pivotrl-exec %s %s %s %s %s\0' "$rc" "$((OOM - before))" "$start" "$end" "${d:--}" >&3
exit 0
"""
_TRAILER_MARK = b"\0pivotrl-exec "

#: Resolves a workspace path as the sandbox user (so symlinks the command planted are followed with the
#: user's rights, never the daemon's) and reports its type and mode; ``mkdir`` creates the parents.
_RESOLVE = r"""
p=$(realpath -m -- "$1") || exit 9
case "$p" in /workspace|/workspace/*) ;; *) printf 'outside\n%s' "$p"; exit 0;; esac
if [ -d "$p" ]; then t=dir; elif [ -f "$p" ]; then t=file; elif [ -e "$p" ] || [ -L "$p" ]; then t=other; else t=missing; fi
if [ "$2" = mkdir ] && [ "$t" != dir ]; then mkdir -p -- "${p%/*}" 2>/dev/null || { printf 'notdir\n%s\n' "$p"; exit 0; }; fi
m=; [ "$t" = file ] && m=$(stat -c %a -- "$p")
printf '%s\n%s\n%s' "$t" "$p" "$m"
"""

#: The workspace digest, run with the image's python3: :mod:`sandboxes.digest`, the code
#: :class:`~sandboxes.local.LocalSandbox` uses on the host, so equal workspaces hash equally on both.
_DIGEST = inspect.getsource(digest_module)
#: How the image's Python runs our helpers: isolated (``-I``: no script directory or working directory on
#: ``sys.path``, no ``PYTHON*`` variables, no user site) and without ``site`` (``-S``: no ``.pth`` files,
#: no ``sitecustomize``/``usercustomize``), so a ``hashlib.py`` planted in the workspace or a ``.pth``
#: in the sandbox user's home cannot change a digest.
_PYTHON = ("python3", "-I", "-S")
_DIGEST_ARGV = [*_PYTHON, "-c", _DIGEST]
#: Largest workspace listing read back (about 100 bytes per entry: a million entries).
_LISTING_BYTES = 128 * 1024**2

_DIFF_KINDS = {0: "modified", 1: "added", 2: "deleted"}
_INIT_PATH = "/usr/sbin/docker-init"


class DockerUnavailableError(SandboxError):
    """No Docker daemon answers; the message says how to start one or which backend to use instead."""


@dataclass(frozen=True)
class DockerLimits:
    """Resource limits of one container, enforced by its cgroup (totals over all of its processes).

    Attributes:
        memory_bytes: Memory of all processes plus ``/tmp`` and ``/dev/shm`` contents; swap is set equal
            (none). Past it the kernel's OOM killer ends the biggest process and the result says
            ``oom=True``.
        cpus: CPU cores' worth of time (``nano_cpus``); a busy command is slowed, not killed.
        max_processes: Processes and threads at once (``pids_limit``); a fork bomb stalls at it.
        open_files: File descriptors per process (``nofile`` ulimit).
        file_size_bytes: Largest file a process may write (``fsize`` ulimit, ``SIGXFSZ`` beyond).
        tmp_bytes: Size of the ``/tmp`` and of the ``/dev/shm`` tmpfs.
    """

    memory_bytes: int = 512 * 1024**2
    cpus: float = 1.0
    max_processes: int = 128
    open_files: int = 1024
    file_size_bytes: int = 1024**3
    tmp_bytes: int = 64 * 1024**2

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "max_processes", "open_files", "file_size_bytes", "tmp_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"DockerLimits.{name} must be a positive integer, got {value!r}")
        if self.memory_bytes < 6 * 1024**2:
            raise ValueError(
                f"DockerLimits.memory_bytes must be at least 6 MiB (Docker's minimum), got {self.memory_bytes}"
            )
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int | float) or not self.cpus > 0:
            raise ValueError(f"DockerLimits.cpus must be a positive number, got {self.cpus!r}")


@dataclass(frozen=True)
class DockerImageRef:
    """The payload of a Docker :class:`~sandboxes.core.Snapshot`: a committed image.

    ``depth`` counts snapshot layers above the base image (see :data:`MAX_CHAIN`).
    """

    tag: str
    depth: int


@dataclass
class ReapReport:
    """What :func:`reap` removed and what it left."""

    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept_containers: int = 0
    kept_images: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "containers": self.containers,
            "images": self.images,
            "bytes_freed": self.bytes_freed,
            "kept_containers": self.kept_containers,
            "kept_images": self.kept_images,
            "errors": self.errors,
        }


# -- the process-wide client and lifecycle ----------------------------------------------------------

_client_lock = threading.Lock()
_client: docker.DockerClient | None = None
_SESSION = uuid.uuid4().hex


def docker_client() -> docker.DockerClient:
    """The process-wide Docker client (``DOCKER_HOST`` and friends are honoured).

    Raises:
        DockerUnavailableError: no daemon answers a ping.
    """
    global _client
    with _client_lock:
        if _client is None:
            try:
                client = docker.from_env(timeout=120, max_pool_size=32)
                client.ping()
            except Exception as exc:  # noqa: BLE001 - every failure here means "no usable daemon"
                raise DockerUnavailableError(
                    f"no Docker daemon reachable ({type(exc).__name__}: {exc}). Start one (as root: "
                    "`.ci/start-docker`, or `dockerd > /tmp/dockerd.log 2>&1 &`), or use LocalSandbox, "
                    "which needs no daemon but is no security boundary."
                ) from exc
            _client = client
        return _client


class _Registry:
    """This process's live sandboxes and pools, and who still uses each snapshot image it created.

    A snapshot image is held by the sandbox that took it (until that sandbox closes) and by every
    sandbox whose container was created from it; it is removed when the last holder lets go.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()
        self.holders: dict[str, set[tuple[str, str]]] = {}
        self.depths: dict[str, int] = {}
        self.reaped = False
        self.installed = False

    def track(self, tag: str, depth: int) -> None:
        with self.lock:
            self.holders.setdefault(tag, set())
            self.depths[tag] = depth

    def hold(self, tag: str, holder: tuple[str, str]) -> None:
        with self.lock:
            if tag in self.holders:
                self.holders[tag].add(holder)

    def release(self, tag: str, holder: tuple[str, str], client: docker.DockerClient) -> None:
        with self.lock:
            users = self.holders.get(tag)
            if users is None:
                return  # not a snapshot of this process: base and user images are never removed
            users.discard(holder)
            if users:
                return
            del self.holders[tag]
            self.depths.pop(tag, None)
        _remove_image(client, tag)


_registry = _Registry()
#: Idle worker containers for forks (see :mod:`sandboxes.worlds`).
_shelf: WorkerShelf | None = None
#: Per image: the command user's home when world archives can express its state, else None (probed once).
_world_images: dict[str, str | None] = {}
#: Exec drivers (:mod:`sandboxes.driver`) by container id, and containers where one could not start.
_drivers: dict[str, Driver] = {}
#: The world of each image as a fresh container has it (``lease=True`` sandboxes reset workers to it).
_pristine_worlds: dict[str, WorldArchive] = {}
_no_driver: set[str] = set()
_drivers_lock = threading.Lock()


def shelf() -> WorkerShelf:
    """The process's shelf of idle worker containers."""
    global _shelf
    with _registry.lock:
        if _shelf is None:
            _shelf = WorkerShelf(lambda container: _remove_container(docker_client(), container))
        return _shelf


def default_snapshot_mode() -> str:
    mode = os.environ.get("PIVOTRL_DOCKER_SNAPSHOTS", "world").strip().lower() or "world"
    if mode not in SNAPSHOT_MODES:
        raise ValueError(f"PIVOTRL_DOCKER_SNAPSHOTS={mode!r}: expected one of {SNAPSHOT_MODES}")
    return mode


def _reset_after_fork() -> None:
    # A forked child must not close its parent's sandboxes at exit nor share its HTTP connections.
    global _client, _client_lock, _registry, _SESSION, _shelf
    _client = None
    _client_lock = threading.Lock()  # another thread may have held it at the fork
    _registry = _Registry()
    _shelf = None  # the parent's idle workers stay the parent's
    _drivers.clear()  # and so do their drivers' connections
    _SESSION = uuid.uuid4().hex


os.register_at_fork(after_in_child=_reset_after_fork)


def close_all() -> None:
    """Close every sandbox and pool this process still holds (the ``atexit`` and ``SIGTERM`` hook)."""
    with _registry.lock:
        live = list(_registry.live)
    for item in live:
        try:
            item.close()
        except Exception:  # noqa: BLE001 - cleanup of one must not stop the others
            pass
    if _shelf is not None:
        try:
            _shelf.clear()
        except Exception:  # noqa: BLE001
            pass


_previous_sigterm: Any = None


def _on_sigterm(signum: int, frame: Any) -> None:
    close_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        # The default action: die by the signal, so the exit status stays what the sender expects.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _ensure_lifecycle(client: docker.DockerClient) -> None:
    """Once per process: install the exit hooks and reap what dead processes left behind."""
    global _previous_sigterm
    with _registry.lock:
        if not _registry.installed:
            _registry.installed = True
            atexit.register(close_all)
            if threading.current_thread() is threading.main_thread():
                previous = signal.getsignal(signal.SIGTERM)
                if previous != signal.SIG_IGN:
                    _previous_sigterm = previous
                    signal.signal(signal.SIGTERM, _on_sigterm)
        if _registry.reaped:
            return
        _registry.reaped = True
    try:
        report = reap(client)
    except Exception as exc:  # noqa: BLE001 - a failed clean-up must not stop new work
        log.warning("reaping leftover pivotrl containers failed: %s", exc)
        return
    if report.containers or report.images:
        log.info("removed %d leftover containers and %d images", len(report.containers), len(report.images))


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


_HOST = socket.gethostname()
_BOOT = _boot_id()


def _owner_labels(kind: str, ttl_s: float) -> dict[str, str]:
    pid = os.getpid()
    return {
        LABEL_MANAGED: "1",
        LABEL_KIND: kind,
        LABEL_SESSION: _SESSION,
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: _process_start(pid) or "",
        LABEL_HOST: _HOST,
        LABEL_BOOT: _BOOT,
        LABEL_CREATED: f"{time.time():.3f}",
        LABEL_TTL: str(int(ttl_s)),
    }


# -- containers ---------------------------------------------------------------------------------------


def resolve_image(image: str | None, client: docker.DockerClient) -> str:
    """``image``, except that ``None`` and ``pivotrl/sandbox:latest`` mean the sandbox image of the current
    Dockerfile, built first when missing (:func:`sandboxes.images.ensure_image`)."""
    from sandboxes.images import SANDBOX_IMAGE, ensure_image

    if image is None or image == SANDBOX_IMAGE:
        return ensure_image(client)
    return image


def _parse_user(user: str) -> tuple[int, int]:
    uid, sep, gid = str(user).partition(":")
    if not (sep and uid.isdigit() and gid.isdigit()):
        raise ValueError(f"user must be numeric 'uid:gid' (e.g. {DEFAULT_USER!r}), got {user!r}")
    return int(uid), int(gid)


def start_container(
    image: str,
    *,
    limits: DockerLimits | None = None,
    network: bool = False,
    runtime: str | None = None,
    ttl_s: float = DEFAULT_TTL_S,
    client: docker.DockerClient | None = None,
) -> str:
    """Create and start one hardened, labelled container running ``sleep infinity``; return its id.

    This is how every :class:`DockerSandbox` container starts (and how :class:`~sandboxes.pool.SandboxPool`
    pre-starts them). See the module docstring for what each setting protects against.
    """
    client = client or docker_client()
    limits = limits or DockerLimits()
    _ensure_lifecycle(client)
    api = client.api
    host_config = api.create_host_config(
        network_mode="bridge" if network else "none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit=limits.memory_bytes,
        memswap_limit=limits.memory_bytes,
        nano_cpus=int(limits.cpus * 1e9),
        pids_limit=limits.max_processes,
        ulimits=[
            Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
            Ulimit(name="fsize", soft=limits.file_size_bytes, hard=limits.file_size_bytes),
            Ulimit(name="core", soft=0, hard=0),
        ],
        init=True,
        tmpfs={"/tmp": f"rw,nosuid,nodev,size={limits.tmp_bytes},mode=1777"},
        shm_size=limits.tmp_bytes,
        runtime=runtime,
    )
    try:
        created = api.create_container(
            image,
            command=["sleep", "infinity"],
            entrypoint=[""],
            user=CONTAINER_USER,
            working_dir=WORKDIR,
            hostname="sandbox",
            labels=_owner_labels("sandbox", ttl_s),
            host_config=host_config,
            name=f"pivotrl-{uuid.uuid4().hex[:12]}",
        )
    except docker.errors.ImageNotFound as exc:
        raise SandboxError(
            f"image {image!r} does not exist on the Docker host; build the sandbox image with "
            "`pivotrl sandbox build-image` (or pass an image that exists)"
        ) from exc
    except docker.errors.APIError as exc:
        raise SandboxError(f"could not create a container from {image!r}: {exc.explanation or exc}") from exc
    container_id = created["Id"]
    try:
        api.start(container_id)
    except docker.errors.APIError as exc:
        _remove_container(client, container_id)
        raise SandboxError(f"could not start a container from {image!r}: {exc.explanation or exc}") from exc
    return container_id


def _remove_container(client: docker.DockerClient, container_id: str) -> None:
    _drop_driver(container_id)
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            log.warning("could not remove container %s: %s", container_id[:12], exc)


def use_driver() -> bool:
    """World-mode sandboxes run commands through an exec driver unless ``PIVOTRL_DOCKER_DRIVER=0``."""
    return os.environ.get("PIVOTRL_DOCKER_DRIVER", "1").strip() not in ("0", "false", "no", "off")


def _drop_driver(container_id: str) -> None:
    with _drivers_lock:
        driver = _drivers.pop(container_id, None)
        _no_driver.discard(container_id)
    if driver is not None:
        driver.close()


def _remove_image(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.api.remove_image(tag, force=False, noprune=False)
    except docker.errors.ImageNotFound:
        return True
    except docker.errors.APIError as exc:
        # In use by a container of another process, or a parent of another snapshot: the tag is gone
        # or the reaper removes it once its users are.
        log.debug("could not remove image %s: %s", tag, exc)
        return False
    return True


# -- exec plumbing ------------------------------------------------------------------------------------


class _Capture:
    """Keeps the head and the tail of a stream, however long it gets."""

    def __init__(self, limit: int, extra_tail: int = 0) -> None:
        self.limit = limit
        self.keep_tail = limit + extra_tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]
        self.tail += data
        if len(self.tail) > 2 * self.keep_tail:
            del self.tail[: len(self.tail) - self.keep_tail]

    def strip_trailer(self) -> bytes | None:
        """Remove and return the wrapper's trailer at the very end of the stream, if it is there."""
        if not self.tail.endswith(b"\0"):
            return None
        start = self.tail.rfind(_TRAILER_MARK, 0, len(self.tail) - 1)
        if start < 0:
            return None
        trailer = bytes(self.tail[start + len(_TRAILER_MARK) : -1])
        cut = len(self.tail) - start
        del self.tail[start:]
        self.total -= cut
        del self.head[self.total :]
        return trailer

    def text(self) -> tuple[str, bool]:
        if self.total <= self.limit:
            return bytes(self.head[: self.total]).decode("utf-8", errors="replace"), False
        half = max(self.limit // 2, 1)
        marker = f"\n[... {self.total - 2 * half} bytes truncated ...]\n".encode()
        data = bytes(self.head[:half]) + marker + bytes(self.tail[-half:])
        return data.decode("utf-8", errors="replace"), True


class _Whole:
    """Keeps a whole stream up to ``limit`` bytes, and counts the rest (a listing is used whole or not at all)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.total = limit, bytearray(), 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.data) < self.limit:
            self.data += data[: self.limit - len(self.data)]


def _recv(sock: Any, size: int) -> bytes:
    if hasattr(sock, "recv"):
        return sock.recv(size)
    return sock.read(size) or b""


def _pump(sock: Any, deadline: float, on_frame: Callable[[int, bytes], None]) -> bool:
    """Read Docker's multiplexed exec stream until EOF (True) or until ``deadline`` (False).

    Frames are an 8-byte header (stream 1 = stdout, 2 = stderr; big-endian payload size) and a payload.
    """
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI | select.POLLHUP)
    buffer = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if not poller.poll(min(remaining, 60.0) * 1000):
            continue
        try:
            chunk = _recv(sock, 1 << 16)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            return True  # the daemon closed the connection: the exec is over
        if not chunk:
            return True
        buffer += chunk
        while len(buffer) >= 8:
            stream, size = struct.unpack(">BxxxL", buffer[:8])
            if len(buffer) < 8 + size:
                break
            on_frame(stream, bytes(buffer[8 : 8 + size]))
            del buffer[: 8 + size]


# -- the sandbox --------------------------------------------------------------------------------------


class DockerSandbox(Sandbox):
    """``bash -c`` commands in a hardened container (see the module docstring for the threat model).

    >>> with DockerSandbox({"hello.txt": "hi"}) as sb:  # doctest: +SKIP
    ...     sb.exec("cat hello.txt").stdout
    'hi'

    Commands run as ``user`` in ``/workspace``; file paths of :meth:`read_file` / :meth:`write_file` are
    relative to it and may not leave it. Snapshots are committed images kept until this sandbox closes
    (or longer, while a sandbox made from them is open); any ``DockerSandbox`` of this process can
    restore them while they exist. A sandbox is used by one thread at a time.

    Args:
        files: Files to create in ``/workspace``, relative path -> content.
        setup: Commands run once, in order, after the files are written; the first that fails raises
            :class:`~sandboxes.errors.SandboxError`.
        image: Image to run; ``None`` (or ``pivotrl/sandbox:latest``) builds or finds the pivotrl
            sandbox image of the current Dockerfile (:func:`sandboxes.images.ensure_image`). Another
            image needs ``bash``, ``timeout`` and ``sleep``, a ``/workspace`` writable by ``user``, and
            ``python3`` for the digests.
        timeout: Default wall-clock seconds per command.
        limits: cgroup limits; ``None`` uses :class:`DockerLimits` defaults.
        network: Give the container a bridge network (an opt-out of isolation; logged).
        user: Numeric ``uid:gid`` commands run as; root (uid 0) is an opt-out (logged).
        env: Extra environment variables for every command.
        max_output_bytes: How much of stdout, and of stderr, a result keeps (head and tail).
        runtime: OCI runtime, e.g. ``"runsc"`` for gVisor where installed; ``None`` = daemon default.
        ttl_s: Age after which :func:`reap` may remove the container when its owner cannot be checked.
        client: Docker client; ``None`` uses :func:`docker_client`.
        container: Adopt this already started container (from :func:`start_container` with the same
            ``image``, ``limits``, ``network``, ``runtime``) instead of starting one; the pool does this.
        snapshots: ``"world"`` (default; ``PIVOTRL_DOCKER_SNAPSHOTS`` changes it) takes snapshots as
            archives of the world trees and restores and forks them in place, on warm workers, in one
            command (:mod:`sandboxes.worlds`); ``"image"`` commits an image per snapshot and starts a
            container per restore and fork. Images or users that world archives cannot express (root, or an
            image where the user can write elsewhere) use ``"image"`` whatever is asked.
        lease: World mode: take a warm worker from the shelf (reset to the image's world before ``files``
            are written) instead of starting a container, and give it back on :meth:`close` (the
            environments' sandboxes do this; a plain sandbox starts its own container and removes it).
    """

    backend = "docker"

    def __init__(
        self,
        files: Mapping[str, str | bytes] | None = None,
        setup: Sequence[str] = (),
        *,
        image: str | None = None,
        timeout: float = 10.0,
        limits: DockerLimits | None = None,
        network: bool = False,
        user: str = DEFAULT_USER,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 64_000,
        runtime: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        client: docker.DockerClient | None = None,
        container: str | None = None,
        snapshots: str | None = None,
        lease: bool = False,
    ) -> None:
        self._container: str | None = None
        self._image: str | None = None
        self._token = uuid.uuid4().hex
        if isinstance(setup, str):
            raise TypeError("setup must be a sequence of commands, not one string; wrap it in a list")
        snapshots = default_snapshot_mode() if snapshots is None else snapshots
        if snapshots not in SNAPSHOT_MODES:
            raise ValueError(f"snapshots must be one of {SNAPSHOT_MODES}, got {snapshots!r}")
        self._configure(timeout, limits, network, user, env, max_output_bytes, runtime, ttl_s, client, snapshots)
        if network:
            log.warning("DockerSandbox(network=True): the sandbox can reach the network (isolation opt-out)")
        if self._uid == 0:
            log.warning("DockerSandbox(user=%r): commands run as root in the container (opt-out)", user)
        try:
            image = resolve_image(image, self._client)
            checked = [(self._relative(path), data) for path, data in (files or {}).items()]
            lease = lease and container is None and snapshots == "world" and self._uid != 0
            pristine = _pristine_worlds.get(image) if lease else None
            if pristine is not None:
                container = shelf().take(self._shelf_key(image))
            leased = container is not None and pristine is not None
            if container is None:
                container = start_container(
                    image,
                    limits=self._limits,
                    network=network,
                    runtime=runtime,
                    ttl_s=ttl_s,
                    client=self._client,
                )
            self._attach(container, image)
            if leased:  # a warm worker: its world becomes the image's before the files are written
                self._worker_key, self._pending, self._generation = self._shelf_key(image), pristine, 1
                self._world_cache = (1, pristine)
            elif lease and self._world_home() is not None:
                self._worker_key = self._shelf_key(image)  # back to the shelf when closed
                if pristine is None:
                    world = self._world()  # the image's own world: no file written, no command run yet
                    with _registry.lock:
                        _pristine_worlds.setdefault(image, world)
            if checked:
                self._put_new_files(checked)
            for command in setup:
                result = self.exec(command)
                if not result.ok:
                    why = "timed out" if result.timed_out else f"exit code {result.exit_code}"
                    raise SandboxError(
                        f"setup command {command!r} failed ({why}); stderr: {result.stderr.strip()[-2000:]!r}"
                    )
        except BaseException:
            if self._container is None and container is not None:
                _remove_container(self._client, container)
            self.close()
            raise

    # -- construction ----------------------------------------------------------------------------

    def _configure(
        self,
        timeout: float,
        limits: DockerLimits | None,
        network: bool,
        user: str,
        env: Mapping[str, str] | None,
        max_output_bytes: int,
        runtime: str | None,
        ttl_s: float,
        client: docker.DockerClient | None,
        snapshots: str = "world",
    ) -> None:
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
        self._uid, self._gid = _parse_user(user)
        self._timeout = float(timeout)
        self._limits = limits or DockerLimits()
        self._network = bool(network)
        self._user = f"{self._uid}:{self._gid}"
        self._extra_env = extra_env
        self._max_output_bytes = max_output_bytes
        self._runtime = runtime
        self._ttl_s = ttl_s
        self._client = client or docker_client()
        self._snapshots = snapshots
        # World snapshots (sandboxes/worlds.py): a world archive to extract before the next command, a
        # counter of changes, and the digest and archive of the world at a given count.
        self._pending: WorldArchive | None = None
        self._generation = 0
        self._digest_cache: tuple[int, str] | None = None
        self._world_cache: tuple[int, WorldArchive] | None = None
        self._worker_key: tuple[Any, ...] | None = None  # set on forks leased from the shelf
        self._broken = False  # a worker that must not go back to the shelf
        self._digest_after_exec = False  # forks hash the workspace in the same exec as each command
        self._ask_driver_digest = False  # set by exec() while its command runs: the driver hashes after it
        self._driver_digest: str | None = None  # what it answered
        self._lock = threading.RLock()  # one operation at a time on this container

    def _attach(self, container: str, image: str) -> None:
        """Make ``container`` (started from ``image``) this sandbox's, and hold ``image`` if it is a snapshot."""
        with _registry.lock:
            _registry.live.add(self)
            _registry.hold(image, (self._token, "uses"))
        self._container = container
        self._image = image

    @classmethod
    def _like(cls, source: DockerSandbox, image: str, container: str | None = None) -> DockerSandbox:
        """A new sandbox with ``source``'s settings, on ``container`` or started from ``image`` (no files, no setup)."""
        clone = cls.__new__(cls)
        clone._container = None
        clone._image = None
        clone._token = uuid.uuid4().hex
        clone._configure(
            source._timeout,
            source._limits,
            source._network,
            source._user,
            source._extra_env,
            source._max_output_bytes,
            source._runtime,
            source._ttl_s,
            source._client,
            source._snapshots,
        )
        try:
            clone._attach(container or clone._start(image), image)
        except BaseException:
            clone.close()
            raise
        return clone

    def _start(self, image: str) -> str:
        return start_container(
            image,
            limits=self._limits,
            network=self._network,
            runtime=self._runtime,
            ttl_s=self._ttl_s,
            client=self._client,
        )

    @property
    def container_id(self) -> str:
        """The id of the container commands run in now (it changes on :meth:`restore`)."""
        if self._container is None:
            raise SandboxError("the sandbox has no container (it failed to start or is closed)")
        return self._container

    @property
    def image(self) -> str:
        """The image the current container was created from (a snapshot tag after :meth:`restore`)."""
        assert self._image is not None
        return self._image

    @property
    def limits(self) -> DockerLimits:
        return self._limits

    # -- commands --------------------------------------------------------------------------------

    def exec(self, command: str, *, timeout: float | None = None) -> ExecResult:
        """Run ``bash -c command`` in ``/workspace`` and return what it did.

        The command runs under ``timeout -k 1 <seconds>``: at the deadline it gets ``SIGTERM``, a second
        later ``SIGKILL``, and the result says ``timed_out=True`` with ``exit_code=-9`` (as in
        :class:`~sandboxes.local.LocalSandbox`). Other exit codes are the shell's: a command killed by
        signal *n* gives ``128 + n``. ``oom`` is exact: the kernel's OOM killer ended a process of this
        container while the command ran (its cgroup's ``oom_kill`` counter grew). When the command
        returns, every process it left behind is killed. stdout and stderr keep their head and tail,
        ``max_output_bytes`` each (``truncated``).
        """
        self._check_open()
        limit_s = self._timeout if timeout is None else float(timeout)
        if not limit_s > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if "\0" in command:
            return ExecResult(2, stderr="bash: the command contains a NUL byte and cannot be run")
        out = _Capture(self._max_output_bytes)
        err = _Capture(self._max_output_bytes, extra_tail=256)
        start = time.perf_counter()
        seconds = f"{limit_s:.3f}".rstrip("0").rstrip(".")
        argv = ["bash", "-c", _WRAPPER, "pivotrl", seconds, command]
        with self._lock:
            # A fork hashes the workspace after each command: the driver does it in its own interpreter,
            # else the wrapper starts one.
            self._ask_driver_digest = self._digest_after_exec and self._driver() is not None
            self._driver_digest = None
            if self._digest_after_exec and not self._ask_driver_digest:
                argv.append(_DIGEST)
            self._generation += 1  # whatever happens next, the world may have changed
            try:
                finished, exit_code = self._run(
                    argv,
                    out,
                    err,
                    deadline_s=limit_s + HOST_GRACE_S,
                    environment=self._extra_env,
                )
            finally:
                self._ask_driver_digest = False
            driver_digest, self._driver_digest = self._driver_digest, None
            generation = self._generation
        duration = time.perf_counter() - start
        timed_out, oom = not finished, False
        trailer = err.strip_trailer() if finished and exit_code == 0 else None
        if trailer is not None:
            try:
                rc_text, oom_text, started, ended, *rest = trailer.decode().split()
                exit_code, oom = int(rc_text), int(oom_text) > 0
                elapsed = float(ended) - float(started)
            except ValueError as exc:
                raise SandboxError(f"unreadable status from the exec wrapper: {trailer!r}") from exc
            digest = rest[0] if rest and rest[0] != "-" else driver_digest
            if digest and _HEX_DIGEST.fullmatch(digest):
                self._digest_cache = (generation, digest)
            # 124: timeout's TERM worked; 137: its KILL a second later. A command that exits with those
            # codes by itself does so before the deadline.
            timed_out = exit_code in (124, 137) and elapsed >= limit_s - 0.01
        elif finished:
            # The wrapper did not finish: a command killed it (same user) or the OOM killer did. The
            # status is the exec's, and the sweep the wrapper could not do is done from outside.
            if exit_code == 137:
                oom = bool(self._inspect().get("State", {}).get("OOMKilled"))
            self._kill_commands()
        stdout, cut_out = out.text()
        stderr, cut_err = err.text()
        return ExecResult(
            exit_code=-signal.SIGKILL if timed_out else exit_code,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            oom=oom,
            duration_s=duration,
            truncated=cut_out or cut_err,
        )

    def _run(
        self,
        argv: list[str],
        out: _Capture | _Whole,
        err: _Capture,
        *,
        deadline_s: float,
        environment: Mapping[str, str] | None = None,
        workdir: str = WORKDIR,
    ) -> tuple[bool, int]:
        """Exec ``argv`` as the sandbox user; (finished before the host deadline, exit code).

        A pending world archive (after a world restore or on a fresh fork) is extracted first, in the same
        exec (:data:`sandboxes.worlds.RESET`); a world that cannot be reset raises :class:`SandboxError`.
        """
        with self._lock:
            pending = self._pending
            if pending is None:
                return self._exec_stream(argv, out, err, deadline_s, environment, workdir, None)
            argv = ["bash", "-c", RESET, "pivotrl-reset", str(pending.nbytes), pending.home, *argv]
            deadline_s += pending.nbytes / 10e6  # emptying and extracting a large world takes its own time
            for attempt in (1, 2):
                try:
                    finished, exit_code = self._exec_stream(argv, out, err, deadline_s, environment, workdir,
                                                            pending.tar)
                    if finished and exit_code == RESET_FAILED and RESET_MARK in err.tail:
                        raise SandboxError(f"could not reset {self.container_id[:12]} to its world archive: "
                                           f"{err.text()[0].strip()[-500:]}")
                except SandboxError:
                    if self._worker_key is None or attempt == 2:
                        self._broken = True
                        raise
                    # A worker that died on the shelf or holds what it cannot delete: a fresh container
                    # (empty world trees) takes its place, and the archive fills it.
                    log.warning("worker %s could not be reset; starting a fresh one", self.container_id[:12])
                    shelf().drop(self.container_id)
                    self._container = self._start(self.image)
                    out.__init__(out.limit)  # type: ignore[misc]
                    err.__init__(err.limit, err.keep_tail - err.limit)  # type: ignore[misc]
                    continue
                if finished:
                    self._pending = None
                return finished, exit_code
            raise AssertionError("unreachable")

    def _exec_stream(self, argv: list[str], out: _Capture | _Whole, err: _Capture, deadline_s: float,
                     environment: Mapping[str, str] | None, workdir: str, stdin: bytes | None) -> tuple[bool, int]:
        def on_frame(stream: int, data: bytes) -> None:
            (err if stream == 2 else out).add(data)

        for _ in (1, 2):
            driver = self._driver()
            if driver is None:
                break
            ask = self._ask_driver_digest
            # The digest helper (listings, git views) runs inside the driver's interpreter.
            helper = argv[len(_DIGEST_ARGV):] if argv[:len(_DIGEST_ARGV)] == _DIGEST_ARGV and stdin is None else None
            try:
                finished, exit_code, digest = driver.run(argv, env=environment or {}, cwd=workdir, stdin=stdin,
                                                         deadline=time.monotonic() + deadline_s, on_frame=on_frame,
                                                         digest=ask, helper=helper)
                self._driver_digest = digest
            except DriverGone as exc:
                _drop_driver(self.container_id)
                if exc.started:  # a command (or the OOM killer) killed the driver: what Docker reports for it
                    return True, 128 + signal.SIGKILL
                continue  # it had died before this command: a new driver runs it
            if not finished:
                self._kill_commands()
                return False, -signal.SIGKILL
            return True, exit_code
        api = self._client.api
        try:
            exec_id = api.exec_create(
                self.container_id,
                argv,
                stdout=True,
                stderr=True,
                stdin=stdin is not None,
                tty=False,
                user=self._user,
                workdir=workdir,
                environment=dict(environment or {}),
            )["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except docker.errors.APIError as exc:
            raise self._fault("start a command", exc) from exc
        if stdin is not None:
            try:
                getattr(sock, "_sock", sock).sendall(stdin)
            except OSError as exc:
                _close_stream(sock)
                raise SandboxError(f"could not send the world archive to {self.container_id[:12]}: {exc}") from exc

        try:
            finished = _pump(sock, time.monotonic() + deadline_s, on_frame)
            if not finished:
                self._kill_commands()
                _pump(sock, time.monotonic() + HOST_GRACE_S, on_frame)
        finally:
            _close_stream(sock)
        if not finished:
            return False, -signal.SIGKILL
        try:
            exit_code = api.exec_inspect(exec_id)["ExitCode"]
        except docker.errors.APIError as exc:
            raise self._fault("read a command's exit code", exc) from exc
        return True, -1 if exit_code is None else int(exit_code)

    def _kill_commands(self) -> None:
        """Kill every process of the sandbox user (the driver too); restart the container if even that cannot run."""
        _drop_driver(self.container_id)
        api = self._client.api
        try:
            exec_id = api.exec_create(self.container_id, ["bash", "-c", "kill -9 -1"], user=self._user)["Id"]
            api.exec_start(exec_id)
            return
        except docker.errors.APIError as exc:
            log.warning("could not kill the commands of %s (%s); restarting it", self.container_id[:12], exc)
        try:
            api.restart(self.container_id, timeout=0)
        except docker.errors.APIError as exc:
            raise self._fault("restart the container after a hung command", exc) from exc

    def _driver(self) -> Driver | None:
        """This container's exec driver (started on first use), or None: image mode, ``PIVOTRL_DOCKER_DRIVER=0``,
        or an image where it cannot start (no ``python3``); commands are then one ``docker exec`` each."""
        if self._snapshots != "world" or not use_driver():
            return None
        container = self.container_id
        with _drivers_lock:
            driver = _drivers.get(container)
            if container in _no_driver:
                return None
        if driver is not None and driver.alive():
            return driver
        try:
            driver = Driver(self._client.api, container, user=self._user, python=_PYTHON, digest_source=_DIGEST)
        except (DriverGone, docker.errors.APIError) as exc:
            log.info("no exec driver in %s (%s); one docker exec per command", container[:12], exc)
            with _drivers_lock:
                _no_driver.add(container)
            return None
        with _drivers_lock:
            _drivers[container] = driver
        return driver

    def _internal(self, argv: list[str], what: str, *, timeout_s: float = 60.0) -> str:
        """Run one of our own helper commands (not the candidate's) and return its stdout.

        They run from ``/``, not the workspace, so nothing a command left there is found relative to the
        working directory (Python helpers also run isolated: :data:`_PYTHON`)."""
        out = _Capture(16 * 1024**2)
        err = _Capture(64 * 1024)
        finished, exit_code = self._run(argv, out, err, deadline_s=timeout_s, workdir="/")
        if not finished or exit_code != 0:
            status = "timed out" if not finished else f"exit code {exit_code}"
            hint = " (the image needs bash, coreutils and python3)" if exit_code in (126, 127) else ""
            raise SandboxError(
                f"could not {what} in {self.container_id[:12]} ({status}){hint}: {err.text()[0][-2000:]}"
            )
        return out.text()[0]

    def _inspect(self) -> dict[str, Any]:
        try:
            return self._client.api.inspect_container(self.container_id)
        except docker.errors.APIError as exc:
            raise self._fault("inspect the container", exc) from exc

    def _fault(self, what: str, exc: docker.errors.APIError) -> SandboxError:
        if isinstance(exc, docker.errors.NotFound):
            return SandboxError(
                f"could not {what}: container {self.container_id[:12]} no longer exists (removed outside the sandbox?)"
            )
        if exc.status_code == 409:
            return SandboxError(
                f"could not {what}: container {self.container_id[:12]} is not running (stopped or killed outside the sandbox)"
            )
        return SandboxError(
            f"could not {what} in container {self.container_id[:12]}: {exc.explanation or exc}"
        )

    # -- files -----------------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes:
        """Read a file of ``/workspace``; ``path`` is relative to it and may not leave it."""
        self._check_open()
        kind, full, _ = self._resolve(path, mkdir=False)
        if kind == "missing":
            raise FileNotFoundError(f"{path!r} does not exist in the sandbox workspace")
        if kind == "dir":
            raise IsADirectoryError(f"{path!r} is a directory of the sandbox workspace")
        if kind != "file":
            raise ValueError(f"{path!r} is not a regular file (a FIFO, socket or device)")
        try:
            chunks, _ = self._client.api.get_archive(self.container_id, full)
            archive = io.BytesIO(b"".join(chunks))
        except docker.errors.APIError as exc:
            raise self._fault(f"read {path!r}", exc) from exc
        with tarfile.open(fileobj=archive) as tar:
            for member in tar:
                if member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    return extracted.read()
        raise SandboxError(f"the archive of {path!r} from the container holds no file")

    def write_file(self, path: str, data: bytes | str) -> None:
        """Create or overwrite a ``/workspace`` file (and missing parents) as the sandbox user.

        ``path`` is relative to the workspace and may not leave it, not even through a symlink a command
        planted. An existing file keeps its permission bits.
        """
        self._check_open()
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        kind, full, mode = self._resolve(path, mkdir=True)
        if kind == "dir":
            raise IsADirectoryError(f"{path!r} is a directory of the sandbox workspace")
        if kind == "other":
            raise ValueError(f"{path!r} is not a regular file (a FIFO, socket or device)")
        directory, name = posixpath.split(full)
        archive = self._tar([(name, payload, int(mode, 8) if mode else 0o644)], directories=())
        self._generation += 1
        try:
            self._client.api.put_archive(self.container_id, directory, archive)
        except docker.errors.APIError as exc:
            raise self._fault(f"write {path!r}", exc) from exc

    def _put_new_files(self, files: list[tuple[str, str | bytes]]) -> None:
        # A fresh container (or a worker reset to the image's world) holds no planted symlinks, so one
        # archive writes everything at once.
        if self._pending is not None:
            self._internal(["true"], "reset the world")
        directories = sorted({parent for rel, _ in files for parent in _parents(rel)})
        members = [
            (rel, data.encode("utf-8") if isinstance(data, str) else bytes(data), 0o644)
            for rel, data in files
        ]
        self._generation += 1
        try:
            self._client.api.put_archive(self.container_id, WORKDIR, self._tar(members, directories))
        except docker.errors.APIError as exc:
            raise self._fault("write the initial files", exc) from exc

    def _tar(self, files: list[tuple[str, bytes, int]], directories: Sequence[str]) -> bytes:
        buffer = io.BytesIO()
        now = time.time()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for directory in directories:
                info = tarfile.TarInfo(directory)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                info.uid, info.gid = self._uid, self._gid
                tar.addfile(info)
            for name, payload, mode in files:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(payload), mode, now
                info.uid, info.gid = self._uid, self._gid
                tar.addfile(info, io.BytesIO(payload))
        return buffer.getvalue()

    def _relative(self, path: str) -> str:
        """``path`` checked and normalised as a workspace-relative path (no symlinks are resolved here)."""
        if not isinstance(path, str):
            raise TypeError(f"sandbox paths are strings, got {type(path).__name__}")
        if not path or "\0" in path:
            raise ValueError(f"invalid sandbox path {path!r}: empty or contains a NUL byte")
        if path.startswith("/"):
            raise ValueError(
                f"absolute path {path!r}: sandbox paths are relative to the workspace (e.g. 'src/main.py')"
            )
        normalized = posixpath.normpath(path)
        if normalized == ".." or normalized.startswith("../"):
            raise ValueError(f"path {path!r} escapes the sandbox workspace")
        return normalized

    def _resolve(self, path: str, *, mkdir: bool) -> tuple[str, str, str]:
        """(type, absolute resolved path, octal mode) of a workspace path, resolved as the sandbox user."""
        rel = self._relative(path)
        output = self._internal(
            ["bash", "-c", _RESOLVE, "resolve", f"{WORKDIR}/{rel}", "mkdir" if mkdir else "-"],
            f"resolve {path!r}",
        )
        kind, _, rest = output.partition("\n")
        full, _, mode = rest.partition("\n")
        if kind == "outside":
            raise ValueError(f"path {path!r} resolves outside the sandbox workspace (through a symlink)")
        if kind == "notdir":
            raise NotADirectoryError(
                f"a parent of {path!r} exists in the sandbox workspace and is not a directory"
            )
        return kind, full, mode.strip()

    # -- state -----------------------------------------------------------------------------------

    def state_digest(self) -> str:
        """sha256 over every file (path, executable bit, content), symlink and directory of ``/workspace``,
        in path order, skipping ``__pycache__/``: the algorithm of :class:`~sandboxes.local.LocalSandbox`,
        so equal workspaces have equal digests on both backends, except that a ``.git/index`` counts by
        its staged entries, not its stat cache (which differs between equal repositories)."""
        self._check_open()
        with self._lock:
            generation = self._generation
            if self._digest_cache is not None and self._digest_cache[0] == generation:
                return self._digest_cache[1]
            digest = self._checked_digest(["--tree", WORKDIR], "compute the state digest")
            self._digest_cache = (generation, digest)
            return digest

    def manifest(self) -> dict[str, tuple[str, str]]:
        """``{relative path: (kind, detail)}`` of all of ``/workspace`` (:func:`sandboxes.digest.walk`), read
        whole from the container: complete, or :class:`~sandboxes.errors.IncompleteListingError` /
        :class:`~sandboxes.errors.WalkLimitError`, never a part."""
        self._check_open()
        out = _Whole(_LISTING_BYTES)
        err = _Capture(64 * 1024)
        finished, exit_code = self._run([*_PYTHON, "-c", _DIGEST, "--list", WORKDIR], out, err, deadline_s=120.0,
                                        workdir="/")
        self._raise_walk_limit(exit_code, err)
        complete = finished and exit_code == 0 and out.total <= _LISTING_BYTES
        parsed = digest_module.parse_listing(bytes(out.data)) if complete else None
        if parsed is None:
            raise IncompleteListingError(
                f"the listing of {self.container_id[:12]}:/workspace came back incomplete (finished={finished}, "
                f"exit code {exit_code}, {out.total} bytes, cap {_LISTING_BYTES}): {err.text()[0][-500:]}")
        return {os.fsdecode(rel): (kind.decode(), os.fsdecode(detail)) for rel, (kind, detail) in parsed.items()}

    def _digest_helper(self, args: list[str], what: str) -> str:
        out = _Capture(16 * 1024**2)
        err = _Capture(64 * 1024)
        finished, exit_code = self._run([*_PYTHON, "-c", _DIGEST, *args], out, err, deadline_s=120.0, workdir="/")
        self._raise_walk_limit(exit_code, err)
        if not finished or exit_code != 0:
            status = "timed out" if not finished else f"exit code {exit_code}"
            raise SandboxError(f"could not {what} in {self.container_id[:12]} ({status}): {err.text()[0][-2000:]}")
        return out.text()[0]

    @staticmethod
    def _raise_walk_limit(exit_code: int, err: _Capture) -> None:
        text = err.text()[0]
        if exit_code == digest_module.LIMIT_EXIT and "pivotrl-walk-limit" in text:
            limit = text.split("pivotrl-walk-limit", 1)[1].split()[0]
            raise WalkLimitError(f"/workspace: {text.strip()[-500:]}", limit=limit)

    def content_digest(self, paths: Sequence[str]) -> str:
        """sha256 over the given workspace paths only: files by content and executable bit, directories by
        their tree digest, symlinks by target, absent paths as missing. Order and duplicates do not matter."""
        self._check_open()
        if isinstance(paths, str):
            raise TypeError("paths must be a sequence of paths, not one string; wrap it in a list")
        rel = [self._relative(p) for p in paths]
        return self._checked_digest(["--paths", WORKDIR, *rel], "compute a content digest")

    def _checked_digest(self, args: list[str], what: str) -> str:
        """A digest is 64 hex digits or an error, never an empty or partial string: two forks whose
        output was lost would otherwise compare equal, a reward for nothing. Retried once (under heavy
        load the daemon has been seen to return an exec's exit status without its output)."""
        for attempt in (1, 2):
            text = self._digest_helper(args, what).strip()
            if _HEX_DIGEST.fullmatch(text):
                return text
            log.warning("%s in %s returned %r (attempt %d of 2)", what, self.container_id[:12], text[:80], attempt)
        raise SandboxError(f"could not {what} in {self.container_id[:12]}: the helper printed {text[:80]!r}, "
                           "not a sha256 digest (the exec's output was lost or cut)")

    def changed_paths(self) -> list[tuple[str, str]]:
        """``(absolute path, "added" | "modified" | "deleted")`` for every path of the container's file system
        that differs from its image (``docker diff``), sorted. After :meth:`restore` the image is the
        snapshot, so this lists the changes since then. tmpfs mounts (``/tmp``) are not included."""
        self._check_open()
        if self._pending is not None:
            self._internal(["true"], "reset the world")
        try:
            changes = self._client.api.diff(self.container_id) or []
        except docker.errors.APIError as exc:
            raise self._fault("list changed paths", exc) from exc
        found = {change["Path"]: _DIFF_KINDS.get(change["Kind"], str(change["Kind"])) for change in changes}
        # init=True bind-mounts Docker's init binary, whose mount point (and its parents) diff reports.
        found.pop(_INIT_PATH, None)
        for parent in _parents(_INIT_PATH.lstrip("/")):
            path = "/" + parent
            if found.get(path) == "modified" and not any(p.startswith(path + "/") for p in found):
                del found[path]
        return sorted(found.items())

    def snapshot(self) -> Snapshot:
        """Save the world: an archive of the world trees (world mode, :mod:`sandboxes.worlds`: about two
        archive reads, no image; ``nbytes`` is its size), or a commit of the container's file system to a
        labelled image (image mode); see :meth:`restore`.

        A committed image lives until this sandbox closes, and after that while a sandbox created from it is
        open. Each commit from a container made from a snapshot adds one layer; past :data:`MAX_CHAIN`
        layers the snapshot is flattened (``docker export`` into ``docker import``) so chains stay short.
        """
        self._check_open()
        if self._world_home() is not None:
            world = self._world()
            return Snapshot(self.backend, self.state_digest(), world, nbytes=world.nbytes)
        digest = self.state_digest()
        ref = self._commit()
        _registry.hold(ref.tag, (self._token, "owner"))
        return Snapshot(self.backend, digest, ref)

    def discard(self, snapshot: Snapshot) -> None:
        """Drop this sandbox's hold on the snapshot image; the image goes once nothing else uses it."""
        if snapshot.backend == self.backend and isinstance(snapshot.payload, DockerImageRef):
            _registry.release(snapshot.payload.tag, (self._token, "owner"), self._client)

    def _commit(self) -> DockerImageRef:
        """A new snapshot image of the current container, tracked by the registry with no holder yet."""
        depth = self._depth(self.image) + 1
        tag = f"{SNAPSHOT_REPOSITORY}:{uuid.uuid4().hex[:24]}"
        repository, _, version = tag.partition(":")
        try:
            if depth > MAX_CHAIN:
                depth = 1
                self._flatten(repository, version)
            else:
                # No command runs between calls (each exec kills what it started), so no pause is needed.
                self._client.api.commit(
                    self.container_id,
                    repository=repository,
                    tag=version,
                    pause=False,
                    changes=self._labels_change(depth),
                )
        except docker.errors.APIError as exc:
            raise SnapshotError(
                f"docker commit of {self.container_id[:12]} failed: {exc.explanation or exc}"
            ) from exc
        _registry.track(tag, depth)
        return DockerImageRef(tag, depth)

    def _labels_change(self, depth: int) -> list[str]:
        labels = {**_owner_labels("snapshot", self._ttl_s), LABEL_DEPTH: str(depth)}
        return ["LABEL " + " ".join(f"{key}={json.dumps(value)}" for key, value in labels.items())]

    def _flatten(self, repository: str, version: str) -> None:
        config = self._client.api.inspect_image(self.image)["Config"] or {}
        changes = [
            f"ENV {name}={json.dumps(value)}"
            for name, _, value in (e.partition("=") for e in config.get("Env") or [])
        ]
        changes += [f"WORKDIR {WORKDIR}", f"USER {CONTAINER_USER}", 'CMD ["sleep", "infinity"]']
        changes += self._labels_change(1)
        stream = self._client.api.export(self.container_id)
        self._client.api.import_image_from_data(stream, repository=repository, tag=version, changes=changes)

    def _depth(self, image: str) -> int:
        with _registry.lock:
            if image in _registry.depths:
                return _registry.depths[image]
        try:
            labels = self._client.api.inspect_image(image)["Config"].get("Labels") or {}
        except (docker.errors.APIError, KeyError, AttributeError):
            return 0
        depth = int(labels.get(LABEL_DEPTH, 0)) if labels.get(LABEL_KIND) == "snapshot" else 0
        with _registry.lock:
            _registry.depths.setdefault(image, depth)
        return depth

    def restore(self, snapshot: Snapshot) -> None:
        """Return to ``snapshot``: a world archive is extracted in place by the next command's exec (after
        the world trees are emptied, :data:`sandboxes.worlds.RESET`); an image snapshot replaces the
        container with a new one from its image (same settings and hardening).

        World snapshots restore into any ``DockerSandbox`` (of the archive's image, else a container of it
        is started); image snapshots into any ``DockerSandbox`` of this process while their image exists.
        """
        self._check_open()
        if snapshot.backend != self.backend:
            raise SnapshotError(f"cannot restore a {snapshot.backend!r} snapshot into a docker sandbox")
        ref = snapshot.payload
        if isinstance(ref, WorldArchive):
            with self._lock:
                if ref.image != self._image:
                    self._replace_container(self._start(ref.image), ref.image)
                self._pending = ref  # extracted by the next command, in the same exec
                self._generation += 1
                self._digest_cache = (self._generation, snapshot.digest)
                self._world_cache = (self._generation, ref)
            return
        if not isinstance(ref, DockerImageRef):
            raise SnapshotError(f"not a docker snapshot payload: {type(ref).__name__}")
        try:
            new = self._start(ref.tag)
        except SandboxError as exc:
            raise SnapshotError(
                f"snapshot image {ref.tag} no longer exists or cannot start: the sandbox that took it was closed; "
                f"take snapshots from a sandbox that stays open while they are used ({exc})",
                snapshot_id=ref.tag,
            ) from exc
        with self._lock:
            self._replace_container(new, ref.tag)
            self._pending = None
            self._generation += 1

    def _replace_container(self, new: str, image: str) -> None:
        """Run on ``new`` (started from ``image``) from now on; the old container goes."""
        old_container, old_image = self._container, self._image
        _registry.hold(image, (self._token, "uses"))
        self._container, self._image = new, image
        if old_container is not None:
            self._let_go(old_container)
        if old_image is not None and old_image != image:
            _registry.release(old_image, (self._token, "uses"), self._client)

    def _let_go(self, container: str) -> None:
        """Back to the shelf when this sandbox is a worker lease, else removed."""
        if self._worker_key is not None and not self._broken:
            shelf().give(self._worker_key, container)
        else:
            _remove_container(self._client, container)

    def fork(self, n: int = 1) -> list[Sandbox]:
        """Return ``n`` new sandboxes in the current state, with the same settings.

        World mode: each fork leases a warm worker (or starts one) that extracts the current world archive
        in the exec of its first command, hashes the workspace in the exec of every command (so
        :meth:`state_digest` after a command is free), and goes back to the shelf when closed. Image mode:
        the state is committed and the containers start in parallel; the image goes with the last fork.
        """
        self._check_open()
        if n < 0:
            raise ValueError(f"fork needs n >= 0, got {n}")
        if n == 0:
            return []
        if self._world_home() is not None:
            return self._fork_world(n)
        ref = self._commit()
        placeholder = (self._token, f"fork-{uuid.uuid4().hex}")
        _registry.hold(ref.tag, placeholder)  # keeps the image while the forks start
        try:
            return _make_in_parallel(lambda: DockerSandbox._like(self, ref.tag), n)
        finally:
            _registry.release(ref.tag, placeholder, self._client)

    @property
    def parallel_forks(self) -> bool:
        """True when forks are cheap, independent leases that several threads may use at once (world mode)."""
        return not self.closed and self._world_home() is not None

    def _shelf_key(self, image: str) -> tuple[Any, ...]:
        """Workers are interchangeable when these settings match (the environment is per command)."""
        return (image, self._limits, self._network, self._runtime, self._user, self._ttl_s)

    def _fork_world(self, n: int) -> list[Sandbox]:
        world, digest = self._world(), self.state_digest()
        key = self._shelf_key(self.image)

        def lease() -> DockerSandbox:
            clone = DockerSandbox._like(self, self.image, container=shelf().take(key))
            clone._worker_key, clone._digest_after_exec = key, True
            clone._pending, clone._generation = world, 1
            clone._digest_cache, clone._world_cache = (1, digest), (1, world)
            return clone

        return [lease()] if n == 1 else _make_in_parallel(lease, n)

    def _world_home(self) -> str | None:
        """The command user's home when world archives can express this sandbox's state, else None."""
        if self._snapshots != "world" or self._uid == 0 or self._container is None:
            return None
        image = self.image
        with _registry.lock:
            if image in _world_images:
                return _world_images[image]
        lines = self._internal(["bash", "-c", PROBE], "probe where the sandbox user can write").splitlines()
        home = lines[-1].removeprefix("home=") if lines and lines[-1].startswith("home=") else WORKDIR
        writable = [line for line in lines[:-1] if line]
        if writable:
            log.info("image %s: the sandbox user can write %s outside /workspace and its home; snapshots are "
                     "image commits", image[:40], writable[:5])
        with _registry.lock:
            _world_images[image] = None if writable else home
        return None if writable else home

    def _world(self) -> WorldArchive:
        """The archive of the current world trees (cached until the world changes)."""
        with self._lock:
            generation = self._generation
            if self._world_cache is not None and self._world_cache[0] == generation:
                return self._world_cache[1]
            if self._pending is not None:
                world = self._pending
            else:
                home = self._world_home() or WORKDIR
                workspace = self._archive(WORKDIR)
                home_tar = self._archive(home) if home != WORKDIR else None
                world = WorldArchive(self.image, merge_archives(workspace, home_tar, home), home)
            self._world_cache = (generation, world)
            return world

    def _archive(self, path: str) -> bytes:
        try:
            chunks, _ = self._client.api.get_archive(self.container_id, path)
            return b"".join(chunks)
        except docker.errors.APIError as exc:
            raise self._fault(f"archive {path}", exc) from exc

    def _close(self) -> None:
        with _registry.lock:
            _registry.live.discard(self)
        container, image = self._container, self._image
        self._container = None
        if container is not None:
            self._let_go(container)
        if image is not None:
            _registry.release(image, (self._token, "uses"), self._client)
        # Snapshots this sandbox took: released as their owner (removed unless others still use them).
        with _registry.lock:
            owned = [tag for tag, users in _registry.holders.items() if (self._token, "owner") in users]
        for tag in owned:
            _registry.release(tag, (self._token, "owner"), self._client)


def _make_in_parallel(make: Callable[[], Sandbox], n: int) -> list[Sandbox]:
    """``n`` sandboxes from ``make()`` on up to 8 threads; if any fails, the others are closed and it raises."""
    forks: list[Sandbox] = []
    errors: list[BaseException] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(n, 8)) as pool:
        for future in [pool.submit(make) for _ in range(n)]:
            try:
                forks.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - collect, clean up, re-raise below
                errors.append(exc)
    if errors:
        for sandbox in forks:
            sandbox.close()
        raise errors[0]
    return forks


def _parents(rel: str) -> Iterator[str]:
    parent = posixpath.dirname(rel)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


# -- the reaper -----------------------------------------------------------------------------------------


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    # A recycled pid belongs to a process that started later than the owner did.
    return not start or _process_start(pid) == start


def _orphaned(labels: Mapping[str, str], now: float) -> bool:
    """True when the owner of a labelled object is gone: dead on this host, from an earlier boot, or past
    its TTL when it lives on another host (whose processes we cannot check)."""
    if labels.get(LABEL_HOST) == _HOST:
        if labels.get(LABEL_BOOT) != _BOOT:
            return True
        try:
            pid = int(labels.get(LABEL_OWNER_PID, ""))
        except ValueError:
            return True
        return not _pid_alive(pid, labels.get(LABEL_OWNER_START) or None)
    try:
        created, ttl = float(labels.get(LABEL_CREATED, "0")), float(labels.get(LABEL_TTL, DEFAULT_TTL_S))
    except ValueError:
        return True
    return created + ttl < now


def reap(
    client: docker.DockerClient | None = None,
    *,
    all_sessions: bool = False,
    max_snapshot_bytes: int | None = None,
    session: str | None = None,
) -> ReapReport:
    """Remove the containers and snapshot images that pivotrl processes left behind.

    Only objects carrying ``pivotrl.managed=1`` and a ``pivotrl.kind`` of ``sandbox`` (containers) or
    ``snapshot`` (images) are considered; base images (``pivotrl/debian-base``, ``pivotrl/sandbox``) and
    anything without the labels are never touched, and neither is anything of the calling process
    (its own sandboxes close through :meth:`DockerSandbox.close` and the exit hooks).

    Args:
        client: Docker client; ``None`` uses :func:`docker_client`.
        all_sessions: Also remove objects of live processes (stops other runs' sandboxes).
        max_snapshot_bytes: After removing orphans, remove the oldest snapshot images no container uses
            until the rest take at most this many bytes (their own layers). Docker records no last use,
            so age stands in for recency; ``None`` prunes nothing. Live processes' snapshots count and
            may be pruned (their later restore then raises :class:`~sandboxes.errors.SnapshotError`).
        session: Consider only objects of this session (the ``pivotrl.session`` label), e.g. to clean up
            after one run on a daemon that others share.
    """
    from sandboxes.images.build import BASE_REPOSITORIES

    client = client or docker_client()
    api = client.api
    report = ReapReport()
    now = time.time()

    def ours(labels: Mapping[str, str] | None, kind: str) -> bool:
        labels = labels or {}
        if labels.get(LABEL_KIND) != kind or labels.get(LABEL_SESSION) == _SESSION:
            return False
        return session is None or labels.get(LABEL_SESSION) == session

    for entry in api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"}):
        labels = entry.get("Labels") or {}
        if not ours(labels, "sandbox"):
            continue
        if all_sessions or _orphaned(labels, now):
            try:
                api.remove_container(entry["Id"], force=True, v=True)
                report.containers.append(entry["Id"][:12])
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                report.errors.append(f"container {entry['Id'][:12]}: {exc}")
        else:
            report.kept_containers += 1

    def snapshot_images() -> list[dict[str, Any]]:
        found = []
        for entry in api.images(all=True, filters={"label": f"{LABEL_MANAGED}=1"}):
            tags = [t for t in entry.get("RepoTags") or [] if t != "<none>:<none>"]
            if any(t.partition(":")[0] in BASE_REPOSITORIES for t in tags):
                continue
            if ours(entry.get("Labels"), "snapshot"):
                found.append({**entry, "tags": tags})
        # Children first: a parent can only go once the snapshots built on it are gone.
        return sorted(found, key=lambda e: -int((e.get("Labels") or {}).get(LABEL_DEPTH, 0)))

    def remove(entry: dict[str, Any]) -> bool:
        names = entry["tags"] or [entry["Id"]]
        try:
            for name in names:
                api.remove_image(name, force=False, noprune=False)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: still used by a container or a child image
                report.errors.append(f"image {names[0]}: {exc}")
            return False
        report.images.append(names[0])
        return True

    remaining = []
    for entry in snapshot_images():
        if (all_sessions or _orphaned(entry.get("Labels") or {}, now)) and remove(entry):
            continue
        remaining.append(entry)

    if max_snapshot_bytes is not None and remaining:
        usage = {image["Id"]: image for image in (api.df().get("Images") or [])}
        own = {}
        for entry in remaining:
            info = usage.get(entry["Id"], {})
            shared = max(int(info.get("SharedSize", 0) or 0), 0)
            own[entry["Id"]] = max(int(info.get("Size", entry.get("Size", 0)) or 0) - shared, 0)
        total = sum(own.values())

        def age(entry: dict[str, Any]) -> tuple[float, int]:
            try:
                return float((entry.get("Labels") or {}).get(LABEL_CREATED, 0)), int(entry.get("Created", 0))
            except ValueError:
                return 0.0, int(entry.get("Created", 0))

        for entry in sorted(remaining, key=age):
            if total <= max_snapshot_bytes:
                break
            if int(usage.get(entry["Id"], {}).get("Containers", 0) or 0) > 0:
                continue
            if remove(entry):
                total -= own[entry["Id"]]
                report.bytes_freed += own[entry["Id"]]
                remaining.remove(entry)
    report.kept_images = len(remaining)
    return report
