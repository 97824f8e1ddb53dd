"""Workspace digests: one file of standard-library Python that runs on the host and in containers.

:class:`sandboxes.local.LocalSandbox` imports it; :class:`sandboxes.docker.DockerSandbox` runs its
source with the image's ``python3`` (``python3 -c SOURCE TOP [PATH ...]``), so equal workspaces hash
equally on both backends by construction.

A git index (``.git/index``) counts by its entries, not its bytes: git caches each file's ``stat`` data
(ctime, inode, device) in it, which changes on every copy and restore without changing what git does,
so hashing the bytes would call equal repositories different. Keep this module free of imports from
the project and of syntax newer than the sandbox image's Python (3.11).
"""

import hashlib
import os
import struct
import sys


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
    """sha256 hex of a file's bytes; a git index (``rel`` ending in ``.git/index``) by its entries."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except PermissionError:
        return b"unreadable"
    h = hashlib.sha256()
    with open(fd, "rb") as f:
        if rel == b".git/index" or rel.endswith(b"/.git/index"):
            data = f.read()
            staged = git_index_entries(data)
            if staged is not None:
                return b"git-index:" + hashlib.sha256(staged).hexdigest().encode()
            h.update(data)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest().encode()

def tree(top):
    """sha256 over every file (path, executable bit, content), symlink (path, target) and directory
    under ``top``, in path order; ``.tmp/`` at the top and ``__pycache__/`` are skipped."""
    entries = []
    def visit(directory, prefix):
        try:
            with os.scandir(directory) as it:
                children = list(it)
        except PermissionError:
            entries.append((prefix, b"unreadable", b""))
            return
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
                entries.append((rel, b"exec" if executable else b"file", file_digest(entry.path, rel)))
    visit(top, b"")
    digest = hashlib.sha256(b"pivotrl-local-workspace-v1\0")
    for rel, kind, detail in sorted(entries):
        digest.update(kind + b"\0" + rel + b"\0" + detail + b"\0")
    return digest.hexdigest()

def one(top, rel):
    """(kind, detail) of one path under ``top``: a file's digest, a directory's tree digest, ..."""
    full = os.path.join(top, rel)
    parent = os.path.realpath(os.path.dirname(full))
    if parent != top and not parent.startswith(top + "/"):
        return b"outside", b""
    if os.path.islink(full):
        return b"link", os.fsencode(os.readlink(full))
    if os.path.isdir(full):
        return b"tree", tree(full).encode()
    if os.path.isfile(full):
        return (b"exec" if os.stat(full).st_mode & 0o111 else b"file"), file_digest(full)
    return (b"other" if os.path.lexists(full) else b"missing"), b""


def paths_digest(top, rels):
    """One digest over the given paths under ``top`` (what a command may have touched)."""
    digest = hashlib.sha256(b"pivotrl-docker-paths-v1\0")
    for rel in sorted(set(rels)):
        kind, detail = one(top, rel)
        digest.update(kind + b"\0" + os.fsencode(rel) + b"\0" + detail + b"\0")
    return digest.hexdigest()


def main(argv):
    top = os.path.realpath(argv[1])
    print(tree(top) if len(argv) == 2 else paths_digest(top, argv[2:]))


if __name__ == "__main__":
    main(sys.argv)
