"""Workspace digests and listings: one file of standard-library Python for the host and for containers.

:class:`sandboxes.local.LocalSandbox` imports it; :class:`sandboxes.docker.DockerSandbox` runs its
source with the image's ``python3`` in isolated mode (``python3 -I -S -c SOURCE --tree TOP``), so equal
workspaces hash equally on both backends by construction, and nothing a command left in the workspace or
the user's home (a ``hashlib.py``, a ``.pth`` file, ``usercustomize.py``) is imported by it.

What a workspace is, for both the digest (:func:`tree`) and the listing (:func:`listing`, what the
terminal verifier compares):

* every regular file by content and permission bits (``mode & 0o777``: ``chmod +x`` and ``chmod 600``
  are changes), directories by permission bits, symlinks by target, FIFOs by mode only: they are
  never opened (a FIFO would block the reader forever); sockets and device files not at all (no
  snapshot can copy them, and a sandbox command cannot create a device);
* caches (``__pycache__/``, ``*.pyc``, ``.pytest_cache/`` ...) by *presence* only: their bytes embed
  timestamps and change whenever Python runs, but deleting them is an effect a policy could otherwise
  pass off as a no-op;
* a git index (``.git/index``) by its entries, not its bytes: git caches each file's ``stat`` data
  (ctime, inode, device) in it, which changes on every copy and restore without changing what git does;
* ``.tmp/`` at the top (the local sandbox's ``TMPDIR``) is not state.

Every walk has hard limits (:class:`Limits`: entries, depth, seconds); past one it raises
:class:`WalkLimit` rather than hash or list part of a workspace. Keep this module free of imports from
the project and of syntax newer than the sandbox image's Python (3.11).
"""

import hashlib
import os
import stat
import struct
import sys
import time

#: Directory names whose whole subtree is a cache (listed by presence).
CACHE_DIRS = frozenset({b"__pycache__", b".pytest_cache", b".mypy_cache", b".ruff_cache", b".ipynb_checkpoints"})
#: File suffixes of caches outside those directories.
CACHE_SUFFIXES = (b".pyc", b".pyo")
#: Exit status of ``main`` when a walk hit a limit (the message is on stderr).
LIMIT_EXIT = 3
#: Last record of a listing: without it the listing is incomplete.
END_MARK = b"\0pivotrl-listing-end "


class WalkLimit(Exception):
    """A walk stopped at a hard limit; ``limit`` is ``"entries"``, ``"depth"`` or ``"seconds"``."""

    def __init__(self, limit, message):
        super().__init__(message)
        self.limit = limit


class Limits:
    """Hard limits of one walk: entries seen, directory depth, wall-clock seconds."""

    def __init__(self, entries=200000, depth=64, seconds=60.0):
        self.entries, self.depth, self.seconds = int(entries), int(depth), float(seconds)


def git_index_entries(data):
    """A git index (versions 2 and 3) without its stat cache and extensions; None if not one of those.

    Each entry keeps what git acts on: mode, object id, flags (stage, assume-valid, skip-worktree,
    intent-to-add) and path. Dropped: ctime, mtime, device, inode, uid, gid and size (the stat cache
    that tells git whether to re-read a file) and extensions such as the cache tree (derived from the
    entries). Layout: https://git-scm.com/docs/index-format.
    """
    if len(data) < 12 or data[:4] != b"DIRC":
        return None
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        return None
    out, pos = [], 12
    for _ in range(count):
        if pos + 62 > len(data):
            return None
        mode, = struct.unpack(">I", data[pos + 24:pos + 28])
        oid = data[pos + 40:pos + 60]
        flags, = struct.unpack(">H", data[pos + 60:pos + 62])
        head, extended = 62, 0
        if flags & 0x4000:
            if version < 3 or pos + 64 > len(data):
                return None
            extended, = struct.unpack(">H", data[pos + 62:pos + 64])
            head = 64
        end = data.find(b"\0", pos + head)
        if end < 0:
            return None
        path = data[pos + head:end]
        out.append(struct.pack(">IHH", mode, flags & 0xF000, extended) + oid + path + b"\0")
        pos += (head + len(path) + 8) & ~7
    return b"".join(out)


def file_digest(path, rel=b""):
    """sha256 hex of a regular file's bytes; a git index (``rel`` ending in ``.git/index``) by its entries.

    Opened without following links and without blocking, and checked to be a regular file before any
    read, so a FIFO or device swapped in after the walk looked is reported, never read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except PermissionError:
        return b"unreadable"
    except OSError:
        return b"vanished"
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b"not-a-file"
        h = hashlib.sha256()
        if rel == b".git/index" or rel.endswith(b"/.git/index"):
            data = f.read()
            staged = git_index_entries(data)
            if staged is not None:
                return b"git-index:" + hashlib.sha256(staged).hexdigest().encode()
            h.update(data)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest().encode()


def _mode(st):
    return b"%03o" % (st.st_mode & 0o777)


def walk(top, limits=None):
    """Yield ``(rel, kind, detail)`` for everything under ``top`` (bytes), parents before children.

    Kinds: ``dir`` (detail: mode), ``file`` (``mode:sha256``), ``link`` (target), ``fifo`` (mode),
    ``cache`` (presence only); sockets and devices are skipped. Iterative, so depth is bounded by
    ``limits.depth`` and never by Python's recursion limit.
    """
    limits = limits or Limits()
    deadline = time.monotonic() + limits.seconds
    seen = 0
    stack = [(os.fsencode(top), b"", 0, False)]
    while stack:
        directory, prefix, depth, in_cache = stack.pop()
        if depth > limits.depth:
            at = prefix.decode(errors="replace")
            raise WalkLimit("depth", f"the workspace is nested deeper than {limits.depth} directories (at {at!r})")
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=lambda e: e.name)
        except PermissionError:
            yield prefix, b"unreadable", b""
            continue
        except OSError:
            continue  # removed while we walked (another process); nothing to list
        subdirs = []
        for entry in children:
            seen += 1
            if seen > limits.entries:
                raise WalkLimit("entries", f"the workspace has more than {limits.entries} entries")
            if seen % 256 == 0 and time.monotonic() > deadline:
                raise WalkLimit("seconds", f"walking the workspace took longer than {limits.seconds:.0f} s")
            name = entry.name  # bytes: the walk lists a bytes path
            rel = prefix + name
            if not prefix and name == b".tmp":
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            cache = in_cache or (stat.S_ISDIR(st.st_mode) and name in CACHE_DIRS) or (
                stat.S_ISREG(st.st_mode) and name.endswith(CACHE_SUFFIXES))
            if stat.S_ISDIR(st.st_mode):
                yield rel + b"/", (b"cache" if cache else b"dir"), (b"" if cache else _mode(st))
                subdirs.append((entry.path, rel + b"/", depth + 1, cache))
            elif cache:
                yield rel, b"cache", b""
            elif stat.S_ISLNK(st.st_mode):
                try:
                    yield rel, b"link", os.fsencode(os.readlink(entry.path))
                except OSError:
                    yield rel, b"link", b"?"
            elif stat.S_ISREG(st.st_mode):
                yield rel, b"file", _mode(st) + b":" + file_digest(entry.path, rel)
            elif stat.S_ISFIFO(st.st_mode):
                yield rel, b"fifo", _mode(st)
        stack.extend(reversed(subdirs))


def tree(top, limits=None):
    """sha256 over :func:`walk` of ``top``, in path order (see the module docstring)."""
    digest = hashlib.sha256(b"pivotrl-workspace-v2\0")
    for rel, kind, detail in sorted(walk(top, limits)):
        digest.update(kind + b"\0" + rel + b"\0" + detail + b"\0")
    return digest.hexdigest()


def listing(top, out, limits=None):
    """Write :func:`walk` of ``top`` to the binary stream ``out`` as NUL-separated ``kind, detail, rel``
    records, then :data:`END_MARK` and the count: a reader that does not find the mark knows the
    listing is incomplete (cut, or the walk died) and must not compare it."""
    count = 0
    for rel, kind, detail in walk(top, limits):
        out.write(kind + b"\0" + detail + b"\0" + rel + b"\0")
        count += 1
    out.write(END_MARK + str(count).encode() + b"\0")
    out.flush()


def parse_listing(data):
    """``{rel: (kind, detail)}`` of a :func:`listing`; None when its end mark or count is missing."""
    end = data.rfind(END_MARK)
    if end < 0 or not data.endswith(b"\0"):
        return None
    try:
        count = int(data[end + len(END_MARK):-1])
    except ValueError:
        return None
    fields = data[:end].split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    if len(fields) != 3 * count:
        return None
    out = {}
    for i in range(0, len(fields), 3):
        out[fields[i + 2]] = (fields[i], fields[i + 1])
    return out


def one(top, rel):
    """(kind, detail) of one path under ``top``: a file's mode and digest, a directory's tree digest, ..."""
    full = os.path.join(top, rel)
    parent = os.path.realpath(os.path.dirname(full))
    if parent != top and not parent.startswith(top + "/"):
        return b"outside", b""
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return b"missing", b""
    except OSError:
        return b"unreadable", b""
    if stat.S_ISLNK(st.st_mode):
        return b"link", os.fsencode(os.readlink(full))
    if stat.S_ISDIR(st.st_mode):
        return b"tree", _mode(st) + b":" + tree(full).encode()
    if stat.S_ISREG(st.st_mode):
        return b"file", _mode(st) + b":" + file_digest(full)
    return b"other", b""


def paths_digest(top, rels):
    """One digest over the given paths under ``top`` (what a command may have touched)."""
    digest = hashlib.sha256(b"pivotrl-docker-paths-v2\0")
    for rel in sorted(set(rels)):
        kind, detail = one(top, rel)
        digest.update(kind + b"\0" + os.fsencode(rel) + b"\0" + detail + b"\0")
    return digest.hexdigest()


def _git(repo, *args):
    import subprocess  # noqa: PLC0415 - only the git view needs it

    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    # The repository's own config may name programs (core.fsmonitor runs one on many commands): never.
    cmd = ["git", "-C", repo, "-c", "core.fsmonitor=false", "-c", "safe.directory=*", *args]
    return subprocess.run(cmd, capture_output=True, env=env, stdin=subprocess.DEVNULL)


def git_view(repo):
    """What a git repository *is*, without what only records when it happened: ``{key: value}`` for
    ``HEAD`` (the ref it points to, or the commit), every ref, and the index entries.

    Commits are named by content (tree, parents by content, author and committer name and email,
    message), not by object id, which embeds timestamps: ``git commit -am m`` and ``git add -A && git
    commit -m m`` a second apart give the same view. Reflogs, object packing and the index's stat cache
    are not part of it.
    """
    cid = {}
    log = _git(repo, "log", "--all", "--topo-order", "--reverse",
               "--format=%x01%H%x00%T%x00%P%x00%an <%ae>%x00%cn <%ce>%x00%B")
    if log.returncode == 0:
        for record in log.stdout.split(b"\x01")[1:]:
            oid, tree_id, parents, author, committer, message = record.split(b"\0", 5)
            h = hashlib.sha256(b"commit\0" + tree_id + b"\0" + author + b"\0" + committer + b"\0"
                               + message.rstrip(b"\n") + b"\0")
            for parent in parents.split():
                h.update(cid.get(parent, b"?" + parent) + b"\0")
            cid[oid] = h.hexdigest()[:40].encode()
    view = {}
    head = _git(repo, "symbolic-ref", "-q", "HEAD")
    if head.returncode == 0:
        view["HEAD"] = "ref:" + head.stdout.decode(errors="replace").strip()
    else:
        oid = _git(repo, "rev-parse", "-q", "--verify", "HEAD").stdout.strip()
        view["HEAD"] = "commit:" + cid.get(oid, oid).decode()
    refs = _git(repo, "for-each-ref", "--format=%(refname)%00%(objecttype)%00%(objectname)%00%(*objectname)")
    for line in refs.stdout.splitlines():
        name, kind, oid, peeled = line.split(b"\0")
        target = peeled or oid
        view[name.decode(errors="replace")] = kind.decode() + ":" + cid.get(target, target).decode()
    index = _git(repo, "ls-files", "--stage", "-z")
    view["index"] = hashlib.sha256(index.stdout).hexdigest() if index.returncode == 0 else "unreadable"
    return view


def main(argv):
    """``--tree TOP`` prints the digest, ``--list TOP`` writes the listing to stdout, ``--paths TOP REL...``
    the digest of some paths, ``--git REPO`` the :func:`git_view` of a repository as JSON. Limits: ``--limits ENTRIES,DEPTH,SECONDS`` before the mode."""
    args = list(argv[1:])
    limits = None
    if args[:1] == ["--limits"]:
        entries, depth, seconds = args[1].split(",")
        limits, args = Limits(entries, depth, seconds), args[2:]
    mode, top, rest = args[0], os.path.realpath(args[1]), args[2:]
    try:
        if mode == "--tree":
            print(tree(top, limits))
        elif mode == "--list":
            listing(top, sys.stdout.buffer, limits)
        elif mode == "--paths":
            print(paths_digest(top, rest))
        elif mode == "--git":
            import json  # noqa: PLC0415

            print(json.dumps(git_view(top), sort_keys=True))
        else:
            sys.stderr.write("usage: digest.py [--limits E,D,S] --tree|--list|--paths|--git TOP [REL ...]\n")
            return 2
    except WalkLimit as exc:
        sys.stderr.write(f"pivotrl-walk-limit {exc.limit} {exc}\n")
        return LIMIT_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
