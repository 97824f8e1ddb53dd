"""World archives and warm workers: what makes a Docker restore or fork cost one command, not one container.

A Docker sandbox's world is what its command user can write: ``/workspace`` and the user's home (``/tmp``,
``/dev/shm`` and ``/dev/mqueue`` are scratch; processes never outlive a command). A **world archive** is a
tar of exactly those two trees, read by the daemon (so unreadable files, modes, symlinks, hard links, FIFOs
and mtimes come along), kept in host memory as bytes: a snapshot is one archive, with no image commit.

A **worker** is an ordinary hardened sandbox container (same image, limits, network, runtime and user).
Resetting it to an archive is a prelude of the next command, in the same ``docker exec``: the archive is
written to the exec's stdin, and :data:`RESET` (running as the command user, before the command)

1. empties the IPC namespace (SysV queues, semaphores, shared memory), then deletes every file of the
   world trees and the scratch mounts; when some could not be deleted (a directory made read-only), it
   makes every file writable for its owner and tries again;
2. then checks that the world trees are empty (a file the user cannot delete means the image gave the
   user something this scheme cannot reset: the reset fails, the worker is dropped);
3. extracts the archive with permissions, then ``exec``\\ s the command wrapper with stdin from /dev/null.

So a restored world is byte-for-byte the archived one, which is what ``state_digest`` (and the digest
checks of :mod:`pivot_envs.checker`) compare. It is only valid when nothing else is writable by the user:
:data:`PROBE` lists writable paths outside the world trees and scratch mounts, once per image; an
image where it finds any (or a sandbox whose user is root) keeps image snapshots (``docker commit``).

Forks and restores lease idle workers from a :class:`WorkerShelf` (the warm pool), and a closed fork goes
back to the shelf instead of being removed. Leftover state of the previous lease is wiped by the next
reset; a worker that cannot be reset is removed. Workers are labelled containers like every other, so
the reaper removes them if the process dies.
"""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

#: Exit status of :data:`RESET` when the world could not be emptied or the archive not extracted.
RESET_FAILED = 213
#: Marker of :data:`RESET`'s own error messages on stderr.
RESET_MARK = b"pivotrl-reset:"
#: Idle workers kept per configuration; more are removed when they come back.
MAX_IDLE_PER_KEY = 8

#: ``bash -c RESET pivotrl-reset NBYTES HOME argv...``: empty the world, extract NBYTES of tar from stdin,
#: then run ``argv`` (the command wrapper or a helper). Runs as the command user, from ``/``.
RESET = r"""
n=$1 home=$2; shift 2
roots=(/workspace)
[ -n "$home" ] && [ "$home" != /workspace ] && [ -d "$home" ] && roots+=("$home")
ipcrm --all 2>/dev/null
if ! find "${roots[@]}" /tmp /dev/shm /dev/mqueue -mindepth 1 -delete 2>/dev/null; then
  # Something was not deletable as it stood (a directory made read-only): open it up, try once more.
  chmod -R u+rwX "${roots[@]}" /tmp /dev/shm 2>/dev/null
  find "${roots[@]}" /tmp /dev/shm /dev/mqueue -mindepth 1 -delete 2>/dev/null
  if [ -n "$(find "${roots[@]}" -mindepth 1 -print -quit 2>/dev/null)" ]; then
    echo "pivotrl-reset: a file of the world could not be removed (owned by another user?)" >&2; exit 213
  fi
fi
if ! errors=$(head -c "$n" | tar -x -p -f - -C / 2>&1); then
  echo "pivotrl-reset: the world archive did not extract: ${errors:0:500}" >&2; exit 213
fi
exec "$@" </dev/null
"""


#: Prints every path the command user can write outside the world trees and scratch mounts (nothing for
#: the pivotrl image; ``/var/tmp`` is its link to ``/tmp``), then ``home=<the user's home>``.
PROBE = r"""
home=$(getent passwd "$(id -u)" | cut -d: -f6)
[ -d "$home" ] || home=/workspace
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /tmp -o -path /workspace -o -path "$home" \) -prune \
  -o -writable ! -type l -print 2>/dev/null | grep -v -x -e /var/tmp
echo "home=$home"
"""


@dataclass(frozen=True)
class WorldArchive:
    """The payload of a Docker world snapshot: the image it runs on and a tar of its world trees."""

    image: str
    tar: bytes = field(repr=False)
    home: str

    @property
    def nbytes(self) -> int:
        return len(self.tar)


def merge_archives(workspace: bytes, home_tar: bytes | None, home: str) -> bytes:
    """One tar rooted at ``/`` from the daemon's archives of ``/workspace`` (members ``workspace/...``) and of
    the home directory (members ``<basename>/...``, renamed to ``<home without the slash>/...``)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as merged:
        _copy_members(workspace, merged, lambda name: name)
        if home_tar is not None:
            parent = home.strip("/").rpartition("/")[0]
            _copy_members(home_tar, merged, lambda name: f"{parent}/{name}" if parent else name)
    return out.getvalue()


def _copy_members(data: bytes, into: tarfile.TarFile, rename: Callable[[str], str]) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as source:
        for member in source:
            body = source.extractfile(member) if member.isreg() else None
            member.name = rename(member.name)
            if member.islnk():
                member.linkname = rename(member.linkname)
            into.addfile(member, body)


class WorkerShelf:
    """Idle worker containers by configuration key (thread-safe). ``remove`` deletes a container for good."""

    def __init__(self, remove: Callable[[str], None]):
        self._remove = remove
        self._idle: dict[Hashable, list[str]] = {}
        self._lock = threading.Lock()
        self.leased = self.reused = self.returned = self.dropped = 0

    def take(self, key: Hashable) -> str | None:
        """An idle container of ``key``, or None (the caller starts one)."""
        with self._lock:
            self.leased += 1
            idle = self._idle.get(key)
            if idle:
                self.reused += 1
                return idle.pop()
        return None

    def give(self, key: Hashable, container: str) -> None:
        """Take ``container`` back for later leases (or remove it when the shelf of ``key`` is full)."""
        with self._lock:
            idle = self._idle.setdefault(key, [])
            keep = len(idle) < MAX_IDLE_PER_KEY
            if keep:
                idle.append(container)
                self.returned += 1
        if not keep:
            self._remove(container)

    def drop(self, container: str) -> None:
        with self._lock:
            self.dropped += 1
        self._remove(container)

    def idle(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def clear(self) -> None:
        """Remove every idle container (at exit and on ``close_all``)."""
        with self._lock:
            containers = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for container in containers:
            self._remove(container)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"leased": self.leased, "reused": self.reused, "returned": self.returned,
                    "dropped": self.dropped, "idle": sum(len(v) for v in self._idle.values())}
