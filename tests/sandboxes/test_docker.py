"""DockerSandbox: one adversarial test per property of its threat model, then the functional contract,
lifecycle (labels, reaper, exit hooks), the warm pool and the image build.

Every test needs a Docker daemon (``docker`` marker: skipped locally without one, failed under CI). No
test sends network traffic. The session-end leak check lives in ``conftest.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from sandboxes import LocalSandbox, SandboxClosedError, SandboxError, SnapshotError

pytestmark = pytest.mark.docker

docker = pytest.importorskip("docker")

#: The session label of the fake orphans below; conftest.py checks that none is left at the end.
FAKE_SESSION = "pivotrl-test-fake-session"


@pytest.fixture(scope="module")
def image() -> str:
    from sandboxes.images import ensure_image

    return ensure_image()


@pytest.fixture(scope="module")
def client(image: str):
    from sandboxes.docker import docker_client

    return docker_client()


@pytest.fixture(scope="module")
def shared(image: str) -> Iterator:
    """One sandbox for the tests that leave no state behind (each exec kills what it started)."""
    from sandboxes.docker import DockerSandbox

    sb = DockerSandbox(image=image, timeout=5)
    yield sb
    sb.close()


@pytest.fixture
def sandbox(image: str) -> Iterator:
    from sandboxes.docker import DockerSandbox

    sb = DockerSandbox(image=image, timeout=5)
    yield sb
    sb.close()


@pytest.fixture
def image_sandbox(image: str) -> Iterator:
    """A sandbox whose snapshots are committed images (``snapshots="image"``), for the image-mode contract."""
    from sandboxes.docker import DockerSandbox

    sb = DockerSandbox(image=image, timeout=5, snapshots="image")
    yield sb
    sb.close()


def user_processes(sb) -> list[str]:
    """Commands of the sandbox user's processes other than the ps pipeline that lists them."""
    listing = sb.exec("ps -u 1000 -o pid=,args=").stdout.splitlines()
    return [line for line in listing if "ps -u 1000" not in line and "pivotrl" not in line]


def container_exists(client, container_id: str) -> bool:
    try:
        client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return False
    return True


def image_exists(client, name: str) -> bool:
    try:
        client.api.inspect_image(name)
    except docker.errors.ImageNotFound:
        return False
    return True


# -- adversarial: one test per protected property ----------------------------------------------------


def test_only_loopback_network(shared) -> None:
    result = shared.exec("ls /sys/class/net")
    assert result.ok and result.stdout.split() == ["lo"]


def test_writes_outside_workspace_and_tmp_fail(shared) -> None:
    for target in (
        "/etc/pivotrl-x",
        "/usr/bin/pivotrl-x",
        "/root/pivotrl-x",
        "/run/lock/pivotrl-x",
        "/pivotrl-x",
    ):
        result = shared.exec(f"touch {target}")
        assert result.exit_code != 0 and "Permission denied" in result.stderr, target
    assert shared.exec("touch /workspace/ok /tmp/ok /var/tmp/ok && rm /workspace/ok /tmp/ok").ok
    assert shared.exec("echo x >> /etc/passwd").exit_code != 0


def test_runs_as_non_root_without_capabilities(shared) -> None:
    assert shared.exec("id -u; id -g").stdout.split() == ["1000", "1000"]
    status = dict(
        line.split(":\t", 1)
        for line in shared.exec("cat /proc/self/status").stdout.splitlines()
        if ":\t" in line
    )
    assert status["CapEff"].strip() == "0000000000000000"
    assert status["CapPrm"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # the default seccomp filter is on
    # setuid binaries do not elevate, and no capability means no mount or chown of others' files.
    assert shared.exec("su -c true root </dev/null").exit_code != 0
    assert shared.exec("chown 0 /workspace").exit_code != 0


def test_container_processes_are_out_of_reach(shared) -> None:
    # init and `sleep infinity` run as another uid: a command can neither kill them nor stop the container.
    result = shared.exec("kill -9 1; kill -9 $(pgrep -x sleep); kill -9 -1; echo done")
    assert "Operation not permitted" in result.stderr
    assert shared.exec("echo alive").stdout == "alive\n"


def test_fork_bomb_hits_the_pids_limit(image: str) -> None:
    from sandboxes.docker import DockerLimits, DockerSandbox

    with DockerSandbox(image=image, limits=DockerLimits(max_processes=64)) as sb:
        start = time.monotonic()
        result = sb.exec("bomb() { bomb | bomb & }; bomb; sleep 30", timeout=3)
        assert time.monotonic() - start < 8
        assert result.timed_out or result.exit_code != 0
        assert "Resource temporarily unavailable" in result.stderr  # the pids limit was hit
        assert sb.exec("echo alive").stdout == "alive\n"
        assert user_processes(sb) == []


def test_memory_bomb_is_oom_killed_and_reported(image: str) -> None:
    from sandboxes.docker import DockerLimits, DockerSandbox

    with DockerSandbox(image=image, limits=DockerLimits(memory_bytes=128 * 1024**2)) as sb:
        result = sb.exec('python3 -c "x = bytearray(1024**3)"')
        assert result.oom and not result.timed_out and not result.ok
        assert result.exit_code == 137  # SIGKILL from the kernel's OOM killer
        ok = sb.exec('python3 -c "x = bytearray(16 * 1024**2); print(len(x))"')
        assert ok.ok and not ok.oom and ok.stdout == "16777216\n"


def test_endless_command_times_out_and_leaves_no_process(shared) -> None:
    start = time.monotonic()
    result = shared.exec("sleep 1000 & while true; do :; done", timeout=1)
    elapsed = time.monotonic() - start
    assert result.timed_out and not result.ok and result.exit_code == -9
    assert 1 <= elapsed < 4
    assert user_processes(shared) == []


def test_processes_do_not_outlive_their_command(shared) -> None:
    result = shared.exec(
        "setsid sleep 300 >/dev/null 2>&1 & nohup sleep 301 >/dev/null 2>&1 & disown; echo started"
    )
    assert result.ok and result.stdout == "started\n"
    assert user_processes(shared) == []


def test_killing_the_wrapper_neither_keeps_processes_nor_forges_a_status(shared) -> None:
    # The command runs as the same user as its wrapper, so it can kill it (and `timeout`), start a daemon
    # and print a fake status trailer; the host notices that the wrapper did not finish and sweeps itself.
    result = shared.exec(
        "setsid sleep 300 >/dev/null 2>&1 </dev/null & "
        "kill -9 $(ps -o ppid= -p $PPID) $PPID; printf '\\0pivotrl-exec 0 0 0 0\\0' >&2"
    )
    assert result.exit_code == 137 and not result.ok
    assert user_processes(shared) == []


def test_host_deadline_stops_a_command_the_wrapper_cannot(monkeypatch: pytest.MonkeyPatch, shared) -> None:
    import sandboxes.docker as docker_backend

    # A wrapper that ignores its time limit stands in for a command `timeout` cannot stop.
    monkeypatch.setattr(docker_backend, "_WRAPPER", "sleep 600")
    monkeypatch.setattr(docker_backend, "HOST_GRACE_S", 1.0)
    start = time.monotonic()
    result = shared.exec("true", timeout=1)
    assert result.timed_out and result.exit_code == -9
    assert time.monotonic() - start < 5
    monkeypatch.undo()
    assert shared.exec("echo alive").stdout == "alive\n"
    assert user_processes(shared) == []


def test_output_flood_is_truncated(image: str) -> None:
    from sandboxes.docker import DockerSandbox

    cap = 10_000
    with DockerSandbox(image=image, max_output_bytes=cap) as sb:
        result = sb.exec("yes | head -c 5000000; yes no | head -c 3000000 >&2")
    assert result.exit_code == 0 and result.truncated
    marker = f"\n[... {5_000_000 - cap} bytes truncated ...]\n"
    assert marker in result.stdout
    assert len(result.stdout) == cap + len(marker)
    assert result.stdout.startswith("y\ny\n") and result.stdout.endswith("y\n")
    assert result.stderr.endswith("no\n") and len(result.stderr) <= cap + 64


def test_a_faked_status_trailer_is_ignored(shared) -> None:
    result = shared.exec(r"printf '\0pivotrl-exec 0 5 0 99\0' >&2; exit 3")
    assert result.exit_code == 3 and not result.oom and not result.timed_out
    assert result.stderr == "\0pivotrl-exec 0 5 0 99\0"


def test_planted_symlinks_cannot_reach_outside(sandbox) -> None:
    sandbox.exec("ln -s /etc/passwd leak && ln -s / rootdir && ln -s /etc/pivotrl-new dangling")
    before = sandbox.exec("sha256sum /etc/passwd").stdout
    for path in ("leak", "rootdir/etc/passwd", "dangling"):
        with pytest.raises(ValueError, match="outside"):
            sandbox.write_file(path, "pwned")
    for path in ("leak", "rootdir/etc/passwd"):
        with pytest.raises(ValueError, match="outside"):
            sandbox.read_file(path)
    assert sandbox.exec("sha256sum /etc/passwd").stdout == before
    assert sandbox.exec("test ! -e /etc/pivotrl-new").ok


def test_everything_created_is_labelled(image_sandbox, client) -> None:
    from sandboxes.docker import _SESSION

    labels = client.api.inspect_container(image_sandbox.container_id)["Config"]["Labels"]
    assert labels["pivotrl.managed"] == "1" and labels["pivotrl.kind"] == "sandbox"
    assert labels["pivotrl.owner_pid"] == str(os.getpid()) and labels["pivotrl.session"] == _SESSION
    assert int(labels["pivotrl.ttl"]) > 0 and abs(float(labels["pivotrl.created"]) - time.time()) < 120
    snap = image_sandbox.snapshot()
    image_labels = client.api.inspect_image(snap.payload.tag)["Config"]["Labels"]
    assert image_labels["pivotrl.kind"] == "snapshot" and image_labels["pivotrl.session"] == _SESSION
    host = client.api.inspect_container(image_sandbox.container_id)["HostConfig"]
    assert host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"] and host["Init"] is True
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["PidsLimit"] == 128
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024**2


# -- functional contract -----------------------------------------------------------------------------


def test_files_roundtrip_and_exec_sees_them(sandbox) -> None:
    sandbox.write_file("src/pkg/mod.py", "print('hi')\n")
    sandbox.write_file("bin.dat", b"\x00\xff")
    assert sandbox.read_file("src/pkg/mod.py") == b"print('hi')\n"
    assert sandbox.read_file("./src/../bin.dat") == b"\x00\xff"
    result = sandbox.exec(
        "cat src/pkg/mod.py && echo more >> src/pkg/mod.py && wc -c < bin.dat && stat -c %U src/pkg"
    )
    assert result.ok and result.stdout == "print('hi')\n2\nsandbox\n"
    assert sandbox.read_file("src/pkg/mod.py") == b"print('hi')\nmore\n"
    sandbox.exec("chmod +x src/pkg/mod.py")
    sandbox.write_file("src/pkg/mod.py", "print('new')\n")  # an existing file keeps its mode
    assert sandbox.exec("test -x src/pkg/mod.py && cat src/pkg/mod.py").stdout == "print('new')\n"


def test_constructor_files_and_exit_codes(image: str) -> None:
    from sandboxes.docker import DockerSandbox

    with DockerSandbox({"a.txt": "alpha", "d/e/b.txt": b"beta"}, image=image, env={"GREETING": "hi"}) as sb:
        assert sb.exec("cat a.txt d/e/b.txt").stdout == "alphabeta"
        assert sb.exec("echo $GREETING $HOME $PWD").stdout == "hi /home/sandbox /workspace\n"
        assert sb.exec("stat -c %U d/e d/e/b.txt").stdout == "sandbox\nsandbox\n"
        failed = sb.exec("echo oops >&2; exit 7")
        assert failed.exit_code == 7 and failed.stderr == "oops\n" and not failed.ok and not failed.oom
        assert sb.exec("cat missing").exit_code == 1
        assert sb.exec("no-such-command").exit_code == 127
        assert sb.exec("kill -TERM $$").exit_code == 128 + 15  # the shell's convention
        assert sb.exec("exit 124").exit_code == 124 and not sb.exec("exit 124").timed_out
        assert sb.exec("echo a\0b").exit_code == 2  # a NUL byte is a result, not an exception
        assert sb.exec("cat", timeout=2).ok  # stdin is empty, not the terminal


def test_read_and_write_file_errors(sandbox) -> None:
    sandbox.exec("mkdir dir && mkfifo pipe && touch plain")
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("missing.txt")
    with pytest.raises(IsADirectoryError):
        sandbox.read_file("dir")
    with pytest.raises(IsADirectoryError):
        sandbox.write_file("dir", "x")
    with pytest.raises(ValueError, match="not a regular file"):
        sandbox.read_file("pipe")
    with pytest.raises(NotADirectoryError):
        sandbox.write_file("plain/child.txt", "x")


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../escape.txt", "..", "/etc/passwd", ""])
def test_path_escapes_are_rejected(shared, image: str, path: str) -> None:
    from sandboxes.docker import DockerSandbox

    with pytest.raises(ValueError):
        shared.read_file(path)
    with pytest.raises(ValueError):
        shared.write_file(path, "x")
    with pytest.raises(ValueError):
        DockerSandbox({path: "x"}, image=image)


def test_snapshot_and_restore(image_sandbox, client) -> None:
    image_sandbox.write_file("a.txt", "one")
    image_sandbox.exec("mkdir -p d/e && echo two > d/e/b.txt && chmod +x d/e/b.txt && ln -s a.txt link")
    snap = image_sandbox.snapshot()
    assert snap.backend == "docker" and snap.digest == image_sandbox.state_digest()

    first = image_sandbox.container_id
    image_sandbox.exec("rm -rf d link && echo changed > a.txt && touch new.txt")
    assert image_sandbox.state_digest() != snap.digest

    image_sandbox.restore(snap)
    assert image_sandbox.container_id != first and not container_exists(client, first)
    assert image_sandbox.state_digest() == snap.digest
    assert image_sandbox.read_file("a.txt") == b"one"
    assert image_sandbox.exec("test -x d/e/b.txt && readlink link && test ! -e new.txt").stdout == "a.txt\n"
    assert image_sandbox.exec("touch after-restore && id -u").stdout == "1000\n"
    image_sandbox.restore(snap)  # a snapshot can be restored any number of times
    assert image_sandbox.state_digest() == snap.digest


def test_snapshots_restore_into_another_sandbox_and_die_with_their_owner(image: str, client) -> None:
    from sandboxes.docker import DockerSandbox

    with (
        DockerSandbox({"a.txt": "from one"}, image=image, snapshots="image") as one,
        DockerSandbox({"b.txt": "two"}, image=image, snapshots="image") as two,
    ):
        snap = one.snapshot()
        two.restore(snap)
        assert two.read_file("a.txt") == b"from one"
        with pytest.raises(FileNotFoundError):
            two.read_file("b.txt")
        one.close()
        assert image_exists(client, snap.payload.tag)  # `two` still runs on it
    assert not image_exists(client, snap.payload.tag)
    with DockerSandbox(image=image) as three:
        with pytest.raises(SnapshotError, match="no longer exists"):
            three.restore(snap)


def test_discarded_snapshot_images_go_unless_a_sandbox_runs_on_them(image: str, client) -> None:
    from sandboxes.docker import DockerSandbox

    with DockerSandbox({"a.txt": "x"}, image=image, snapshots="image") as one, DockerSandbox(image=image) as two:
        kept, dropped = one.snapshot(), one.snapshot()
        two.restore(kept)
        one.discard(kept)
        one.discard(dropped)
        assert image_exists(client, kept.payload.tag)  # `two` runs on it
        assert not image_exists(client, dropped.payload.tag)
        two.discard(kept)  # not `two`'s snapshot: its hold as a user stays
        assert image_exists(client, kept.payload.tag)
    assert not image_exists(client, kept.payload.tag)


def test_fork_gives_independent_copies(image_sandbox, client) -> None:
    image_sandbox.write_file("shared.txt", "base")
    forks = image_sandbox.fork(2)
    try:
        first, second = forks
        assert first.state_digest() == second.state_digest() == image_sandbox.state_digest()
        first.exec("echo first > shared.txt && touch only-first")
        image_sandbox.write_file("only-parent", "p")
        assert first.read_file("shared.txt") == b"first\n"
        assert second.read_file("shared.txt") == b"base"
        assert image_sandbox.read_file("shared.txt") == b"base"
        assert second.exec("ls").stdout == "shared.txt\n"
        assert len({first.state_digest(), second.state_digest(), image_sandbox.state_digest()}) == 3
        assert first.limits == image_sandbox.limits and first.exec("id -u").stdout == "1000\n"
        fork_image = first.image
    finally:
        for sb in forks:
            sb.close()
    assert not image_exists(client, fork_image)  # the fork snapshot goes with the last fork
    assert image_sandbox.fork(0) == []


# -- world mode: snapshots as archives, restores and forks on warm workers (sandboxes/worlds.py) ----------

WORLD_SETUP = [
    "git init -q repo && cd repo && echo a > f && git add f && git commit -qm first",
    "mkdir -p d/e && echo two > d/e/b.txt && chmod 751 d/e/b.txt && chmod 500 d && ln -s a.txt link",
    "mkfifo pipe && chmod 600 a.txt && echo home > ~/home.txt && git config --global user.name agent",
]


def world_view(sb) -> str:
    """What a command sees of the world, beyond what the digest covers (home, modes, git identity)."""
    return sb.exec("cat a.txt ~/home.txt; stat -c '%n %a %F' a.txt d d/e/b.txt pipe link; readlink link; "
                   "git config --global user.name; git -C repo log --format=%s; ls -A /tmp /dev/shm").stdout


def test_world_snapshot_restores_in_place_exactly(image: str) -> None:
    from sandboxes.docker import DockerSandbox
    from sandboxes.worlds import WorldArchive

    with DockerSandbox({"a.txt": "one"}, setup=WORLD_SETUP, image=image) as sb:
        before, view = sb.state_digest(), world_view(sb)
        snap = sb.snapshot()
        assert isinstance(snap.payload, WorldArchive) and snap.digest == before and snap.nbytes == len(snap.payload.tar)
        container = sb.container_id
        sb.exec("chmod 700 d && rm -rf d repo link pipe && echo changed > a.txt && echo x > ~/home.txt "
                "&& git config --global user.name other && touch ~/new /tmp/scratch /dev/shm/s")
        assert sb.state_digest() != before
        sb.restore(snap)
        assert sb.container_id == container  # in place: no container start
        assert world_view(sb) == view
        sb._digest_cache = None  # recompute instead of trusting the snapshot's digest
        assert sb.state_digest() == before
        sb.exec("touch after")
        sb.restore(snap)  # any number of times
        assert world_view(sb) == view and "after" not in sb.exec("ls").stdout


def test_world_restore_equals_image_restore(image: str) -> None:
    # The two snapshot modes must be indistinguishable to state_digest and to commands.
    from sandboxes.docker import DockerSandbox

    with DockerSandbox({"a.txt": "one"}, setup=WORLD_SETUP, image=image, snapshots="image") as sb:
        image_snap, world_snap = sb.snapshot(), None
        sb._snapshots = "world"
        world_snap = sb.snapshot()
        sb._snapshots = "image"
        views = []
        for snap in (image_snap, world_snap):
            sb.exec("rm -rf repo d; echo gone > a.txt; rm ~/home.txt")
            sb.restore(snap)
            sb._digest_cache = None
            views.append((sb.state_digest(), world_view(sb)))
        assert views[0] == views[1] and image_snap.digest == world_snap.digest


def test_world_forks_are_independent_and_reuse_warm_workers(image: str) -> None:
    from sandboxes.docker import DockerSandbox, shelf

    with DockerSandbox({"shared.txt": "base"}, image=image) as sb:
        base = sb.state_digest()
        first, second = sb.fork(2)
        containers = {first.container_id, second.container_id}
        assert sb.container_id not in containers and len(containers) == 2
        assert first.state_digest() == second.state_digest() == base
        first.exec("echo first > shared.txt && touch only-first ~/h /tmp/t && sleep 60 & disown; true")
        assert second.exec("cat shared.txt; ls -A").stdout == "baseshared.txt\n"
        assert sb.read_file("shared.txt") == b"base"
        assert first.state_digest() != base and second.state_digest() == base
        first.close()
        second.close()
        assert shelf().idle() >= 2
        reused = 0
        for fork in sb.fork(2):  # leased from the shelf: the last lease's files, home, /tmp and processes gone
            reused += fork.container_id in containers
            assert fork.exec("cat shared.txt; echo; ls -A; ls -A /tmp; ls ~").stdout == "base\nshared.txt\n"
            assert fork.exec("ls -A ~").stdout.split() == [".bash_logout", ".bashrc", ".profile"]
            assert fork.exec("ps -u 1000 -o comm=").stdout.split().count("sleep") == 0
            fork.close()
        assert reused == 2


def test_a_worker_that_died_on_the_shelf_is_replaced(image: str, client) -> None:
    from sandboxes.docker import DockerSandbox, shelf

    with DockerSandbox({"a.txt": "x"}, image=image) as sb:
        (fork,) = sb.fork(1)
        dead = fork.container_id
        fork.close()
        client.api.kill(dead)
        (fork,) = sb.fork(1)
        with fork:
            assert fork.exec("cat a.txt").stdout == "x" and fork.container_id != dead
        assert not container_exists(client, dead)
        assert shelf().stats()["dropped"] >= 1


def test_closing_everything_removes_idle_workers(image: str, client) -> None:
    from sandboxes.docker import DockerSandbox, close_all, shelf

    sb = DockerSandbox({"a.txt": "x"}, image=image)
    forks = sb.fork(2)
    workers = [f.container_id for f in forks]
    for f in forks:
        f.close()
    assert all(container_exists(client, c) for c in workers)  # warm on the shelf
    close_all()  # what atexit and SIGTERM run
    assert sb.closed and shelf().idle() == 0
    assert not any(container_exists(client, c) for c in workers)


def test_root_sandboxes_keep_image_snapshots(image: str) -> None:
    from sandboxes.docker import DockerImageRef, DockerSandbox

    with DockerSandbox({"a.txt": "x"}, image=image, user="0:0") as sb:
        assert not sb.parallel_forks
        assert isinstance(sb.snapshot().payload, DockerImageRef)


def test_deep_snapshot_chains_are_flattened(monkeypatch: pytest.MonkeyPatch, image_sandbox, client) -> None:
    import sandboxes.docker as docker_backend

    monkeypatch.setattr(docker_backend, "MAX_CHAIN", 2)
    depths = []
    for i in range(3):
        image_sandbox.exec(f"echo {i} >> chain.txt && echo {i} >> ~/home.txt")
        snap = image_sandbox.snapshot()
        depths.append(snap.payload.depth)
        image_sandbox.restore(snap)
    assert depths == [1, 2, 1]
    layers = client.api.inspect_image(image_sandbox.image)["RootFS"]["Layers"]
    assert len(layers) == 1  # flattened
    assert (
        image_sandbox.exec("cat chain.txt ~/home.txt; id -u; pwd").stdout == "0\n1\n2\n0\n1\n2\n1000\n/workspace\n"
    )


def test_state_digest_matches_the_local_backend(image: str) -> None:
    from sandboxes.docker import DockerSandbox

    files = {"a.txt": "a", "dir/b.txt": "b", "dir/sub/c.bin": b"\x00\x01"}
    with DockerSandbox(files, image=image) as docker_sb, LocalSandbox(files) as local_sb:
        assert docker_sb.state_digest() == local_sb.state_digest()
        for command in ("chmod +x a.txt", "mkdir empty", "ln -s a.txt link"):
            docker_sb.exec(command)
            local_sb.exec(command)
            assert docker_sb.state_digest() == local_sb.state_digest(), command


def test_state_digest_reflects_content_only(image: str) -> None:
    from sandboxes.docker import DockerSandbox

    files = {"a.txt": "a", "dir/b.txt": "b"}
    with (
        DockerSandbox(files, image=image) as one,
        DockerSandbox(dict(reversed(files.items())), image=image) as two,
    ):
        assert one.state_digest() == two.state_digest() == one.state_digest()
        one.exec("touch /tmp/scratch ~/not-workspace")
        assert one.state_digest() == two.state_digest()
        # Caches count by presence, not bytes: rewriting one is no change, deleting one is.
        for sb in (one, two):
            sb.exec("mkdir __pycache__ && touch __pycache__/x.pyc")
        one.exec("echo other > __pycache__/x.pyc")
        assert one.state_digest() == two.state_digest()
        one.exec("rm -r __pycache__")
        assert one.state_digest() != two.state_digest()
        one.exec("mkdir __pycache__ && touch __pycache__/x.pyc")
        assert one.state_digest() == two.state_digest()
        for change, undo in [("chmod 600 a.txt", "chmod 644 a.txt"), ("mkfifo p", "rm p")]:
            one.exec(change)
            assert one.state_digest() != two.state_digest(), change
            one.exec(undo)
            assert one.state_digest() == two.state_digest(), undo
        # A planted module cannot change the digest (it runs isolated, from /).
        one.exec("printf 'raise SystemExit(0)\\n' > hashlib.py")
        two.write_file("hashlib.py", "raise SystemExit(0)\n")
        assert one.state_digest() == two.state_digest() and len(one.state_digest()) == 64
        one.write_file("a.txt", "A")
        assert one.state_digest() != two.state_digest()
        one.write_file("a.txt", "a")
        assert one.state_digest() == two.state_digest()
        one.exec("chmod 000 dir/b.txt")  # unreadable to its owner: still digested, differently
        assert one.state_digest() != two.state_digest()


def test_state_digest_ignores_the_git_stat_cache(image: str) -> None:
    from sandboxes.docker import DockerSandbox

    files = {"a.txt": "a", "src/b.py": "print(1)\n"}
    make_repo = (
        "git init -q && git add -A && GIT_AUTHOR_DATE=2020-01-01T00:00:00Z "
        "GIT_COMMITTER_DATE=2020-01-01T00:00:00Z git commit -qm init"
    )
    with DockerSandbox(files, image=image) as one, DockerSandbox(files, image=image) as two:
        assert one.exec(make_repo).ok and two.exec(make_repo).ok
        # Same repository, different inodes and ctimes in the index: the digest must not see them.
        assert one.state_digest() == two.state_digest()
        (fork,) = one.fork(1)
        with fork:
            assert fork.exec("git status --short").stdout == ""  # rewrites the index's stat cache
            assert fork.state_digest() == one.state_digest()
            fork.exec("echo b > a.txt && git add a.txt")  # staging is state
            assert fork.state_digest() != one.state_digest()


def test_content_digest(sandbox) -> None:
    sandbox.write_file("a.txt", "a")
    sandbox.write_file("d/b.txt", "b")
    digest = sandbox.content_digest(["a.txt", "d"])
    assert digest == sandbox.content_digest(["d", "a.txt", "a.txt"])
    sandbox.write_file("other.txt", "not covered")
    assert sandbox.content_digest(["a.txt", "d"]) == digest
    sandbox.write_file("d/b.txt", "B")
    assert sandbox.content_digest(["a.txt", "d"]) != digest
    assert sandbox.content_digest(["missing"]) != sandbox.content_digest(["a.txt"])
    with pytest.raises(ValueError):
        sandbox.content_digest(["../x"])


def test_changed_paths(image_sandbox) -> None:
    assert image_sandbox.changed_paths() == []
    image_sandbox.exec("echo x > new.txt && mkdir d && touch d/f && echo y > ~/.bashrc && touch /tmp/scratch")
    changes = dict(image_sandbox.changed_paths())
    assert changes["/workspace/new.txt"] == "added" and changes["/workspace/d/f"] == "added"
    assert changes["/home/sandbox/.bashrc"] == "modified"
    assert not any(path.startswith("/tmp") for path in changes)
    snap = image_sandbox.snapshot()
    image_sandbox.restore(snap)
    assert image_sandbox.changed_paths() == []
    image_sandbox.exec("rm new.txt")
    assert image_sandbox.changed_paths() == [("/workspace", "modified"), ("/workspace/new.txt", "deleted")]


def test_setup_commands_run_in_order(image: str) -> None:
    from sandboxes.docker import DockerSandbox

    files = {"gen.py": "print(40 + 2)"}
    with DockerSandbox(
        files, setup=["python3 gen.py > out.txt", "python3 gen.py >> out.txt"], image=image
    ) as sb:
        assert sb.read_file("out.txt") == b"42\n42\n"


def test_failing_setup_raises_and_removes_the_container(image: str, client) -> None:
    from sandboxes.docker import _SESSION, LABEL_SESSION, DockerSandbox

    def mine() -> list[str]:
        found = client.api.containers(all=True, filters={"label": f"{LABEL_SESSION}={_SESSION}"})
        return sorted(c["Id"] for c in found)

    before = mine()
    with pytest.raises(SandboxError) as info:
        DockerSandbox(setup=["true", "echo boom >&2; exit 3", "touch never"], image=image)
    message = str(info.value)
    assert "echo boom >&2; exit 3" in message and "exit code 3" in message and "boom" in message
    assert mine() == before


def test_close_leaves_nothing_behind(image: str, client) -> None:
    from sandboxes.docker import DockerSandbox

    sb = DockerSandbox({"a.txt": "a"}, image=image, snapshots="image")
    snap = sb.snapshot()
    (child,) = sb.fork(1)
    container = sb.container_id
    sb.close()
    sb.close()  # idempotent
    assert not container_exists(client, container)
    assert not image_exists(client, snap.payload.tag)
    assert child.read_file("a.txt") == b"a"  # a fork is independent of its parent's lifetime
    child_container, child_image = child.container_id, child.image
    child.close()
    assert not container_exists(client, child_container) and not image_exists(client, child_image)


@pytest.mark.parametrize(
    "operation",
    [
        lambda sb: sb.exec("true"),
        lambda sb: sb.read_file("a.txt"),
        lambda sb: sb.write_file("a.txt", "x"),
        lambda sb: sb.snapshot(),
        lambda sb: sb.fork(1),
        lambda sb: sb.state_digest(),
        lambda sb: sb.changed_paths(),
    ],
    ids=["exec", "read_file", "write_file", "snapshot", "fork", "state_digest", "changed_paths"],
)
def test_operations_after_close_raise(image: str, operation) -> None:
    from sandboxes.docker import DockerSandbox

    sb = DockerSandbox({"a.txt": "a"}, image=image)
    snap = sb.snapshot()
    sb.close()
    with pytest.raises(SandboxClosedError):
        operation(sb)
    with pytest.raises(SandboxClosedError):
        sb.restore(snap)


def test_invalid_settings_are_rejected(image: str) -> None:
    from sandboxes.docker import DockerLimits, DockerSandbox

    with pytest.raises(ValueError, match="max_processes"):
        DockerLimits(max_processes=0)
    with pytest.raises(ValueError, match="cpus"):
        DockerLimits(cpus=0)
    with pytest.raises(ValueError, match="timeout"):
        DockerSandbox(image=image, timeout=0)
    with pytest.raises(ValueError, match="uid:gid"):
        DockerSandbox(image=image, user="sandbox")
    with pytest.raises(TypeError, match="env"):
        DockerSandbox(image=image, env={"N": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="sequence of commands"):
        DockerSandbox(image=image, setup="echo hi")
    with pytest.raises(SandboxError, match="build-image"):
        DockerSandbox(image="pivotrl/no-such-image:never")


def test_network_opt_out_is_logged(image: str, caplog: pytest.LogCaptureFixture) -> None:
    from sandboxes.docker import DockerSandbox

    with caplog.at_level(logging.WARNING, logger="sandboxes.docker"):
        with DockerSandbox(image=image, network=True) as sb:
            interfaces = sb.exec("ls /sys/class/net").stdout.split()
    assert "network=True" in caplog.text
    assert "lo" in interfaces and len(interfaces) > 1


# -- lifecycle: reaper and exit hooks ------------------------------------------------------------------


def _fake_container(client, image: str, **overrides: str) -> str:
    from sandboxes.docker import _owner_labels

    labels = {**_owner_labels("sandbox", 3600), "pivotrl.session": FAKE_SESSION, **overrides}
    created = client.api.create_container(
        image,
        command=["sleep", "infinity"],
        labels=labels,
        host_config=client.api.create_host_config(network_mode="none"),
    )
    return created["Id"]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_reaper_removes_orphans_and_nothing_else(image: str, client) -> None:
    from sandboxes.docker import reap

    dead = _fake_container(client, image, **{"pivotrl.owner_pid": str(_dead_pid())})
    reused = _fake_container(client, image, **{"pivotrl.owner_start": "1"})  # our pid, but an older process
    expired = _fake_container(client, image, **{"pivotrl.host": "elsewhere", "pivotrl.created": "0"})
    alive = _fake_container(client, image)  # a live owner (us, under another session)
    fresh_remote = _fake_container(client, image, **{"pivotrl.host": "elsewhere"})
    unlabelled = client.api.create_container(image, command=["true"])["Id"]
    try:
        report = reap(client)
        removed = set(report.containers)
        assert {dead[:12], reused[:12], expired[:12]} <= removed
        for kept in (alive, fresh_remote, unlabelled):
            assert kept[:12] not in removed and container_exists(client, kept)
        assert image_exists(client, image)
        all_report = reap(client, all_sessions=True, session=FAKE_SESSION)  # spare other runs
        assert {alive[:12], fresh_remote[:12]} <= set(all_report.containers)
        assert container_exists(client, unlabelled)
    finally:
        for container in (dead, reused, expired, alive, fresh_remote, unlabelled):
            try:
                client.api.remove_container(container, force=True)
            except docker.errors.NotFound:
                pass


def test_reaper_prunes_snapshots_beyond_the_budget(sandbox, client) -> None:
    from sandboxes.docker import _owner_labels, reap

    def commit(tag: str) -> dict:
        labels = {**_owner_labels("snapshot", 3600), "pivotrl.session": FAKE_SESSION}
        change = ["LABEL " + " ".join(f'{k}="{v}"' for k, v in labels.items())]
        return client.api.commit(sandbox.container_id, repository="pivotrl/snapshot", tag=tag, changes=change)

    sandbox.exec("head -c 3000000 /dev/urandom > one.bin")
    old = commit("budget-old")
    sandbox.exec("head -c 3000000 /dev/urandom > two.bin")  # the newer layer holds both files: 6 MB
    new = commit("budget-new")
    try:
        assert reap(client, session=FAKE_SESSION).images == []  # a live owner's snapshots are no orphans
        report = reap(client, max_snapshot_bytes=7_000_000, session=FAKE_SESSION)  # room for the newer one
        assert report.images == ["pivotrl/snapshot:budget-old"] and report.bytes_freed >= 3_000_000
        assert image_exists(client, new["Id"]) and not image_exists(client, old["Id"])
    finally:
        for tag in ("pivotrl/snapshot:budget-old", "pivotrl/snapshot:budget-new"):
            try:
                client.api.remove_image(tag)
            except docker.errors.ImageNotFound:
                pass


def test_sigterm_closes_the_sandboxes_of_a_process(image: str, client) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from sandboxes.docker import DockerSandbox
        sb = DockerSandbox(image={image!r}, snapshots="image")
        snap = sb.snapshot()
        print(sb.container_id, snap.payload.tag, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        container, snapshot = child.stdout.readline().split()
        assert container_exists(client, container) and image_exists(client, snapshot)
        child.terminate()
        assert child.wait(timeout=30) == -15  # the default action still ends the process
    finally:
        child.kill()
        child.wait()
    assert not container_exists(client, container)
    assert not image_exists(client, snapshot)


# -- warm pool -------------------------------------------------------------------------------------------


def test_pool_hands_out_live_fresh_containers_once(image: str, client) -> None:
    from sandboxes.pool import SandboxPool

    with SandboxPool(image, size=2, timeout=5) as pool:
        assert pool.wait_ready(timeout=30) and pool.ready == 2
        first = pool.acquire({"a.txt": "one"})
        second = pool.acquire()
        try:
            assert pool.hits == 2 and pool.misses == 0
            assert first.container_id != second.container_id
            assert first.exec("cat a.txt; id -u").stdout == "one1000\n"
            assert second.exec("ls -A").stdout == ""  # fresh: nothing of the first
            used = first.container_id
        finally:
            first.close()
            second.close()
        assert not container_exists(client, used)  # never returned to the pool
        assert pool.wait_ready(timeout=30)
        # A container that died while waiting is replaced, not handed out.
        dead = pool._ready[0]
        client.api.kill(dead)
        with pool.acquire() as third:
            assert third.container_id != dead and third.exec("echo ok").stdout == "ok\n"
        waiting = list(pool._ready)
    for container in [*waiting, dead]:
        assert not container_exists(client, container)


# -- image -----------------------------------------------------------------------------------------------


def test_image_build_is_a_no_op_when_up_to_date(image: str, client) -> None:
    from sandboxes.images import SANDBOX_IMAGE, ensure_image, image_tag

    assert image == image_tag()
    before = client.api.inspect_image(image)["Id"]
    lines: list[str] = []
    start = time.monotonic()
    assert ensure_image(client, progress=lines.append) == image
    assert time.monotonic() - start < 2 and lines == []
    assert client.api.inspect_image(image)["Id"] == before == client.api.inspect_image(SANDBOX_IMAGE)["Id"]
    labels = client.api.inspect_image(image)["Config"]["Labels"]
    assert labels["pivotrl.managed"] == "1" and labels["pivotrl.kind"] == "base"


def test_a_digest_whose_output_was_lost_is_an_error_not_an_empty_digest(sandbox, monkeypatch):
    # Two forks that both lost their digest output would compare equal: a reward for nothing.
    real = sandbox.state_digest()
    assert len(real) == 64
    sandbox.exec("touch changed")  # a digest is cached until the world changes
    calls = []
    monkeypatch.setattr(sandbox, "_digest_helper", lambda args, what: calls.append(args) or "")
    with pytest.raises(SandboxError, match="not a sha256 digest"):
        sandbox.state_digest()
    with pytest.raises(SandboxError, match="not a sha256 digest"):
        sandbox.content_digest(["a"])
    assert len(calls) == 4  # each retried once


# -- the exec driver (sandboxes/driver.py) ---------------------------------------------------------------


def test_world_sandboxes_run_commands_through_one_driver_exec(image: str, client, monkeypatch) -> None:
    from sandboxes.docker import DockerSandbox

    created = []
    real = client.api.exec_create
    monkeypatch.setattr(client.api, "exec_create", lambda *a, **k: created.append(a[1]) or real(*a, **k))
    with DockerSandbox(image=image, client=client) as sb:
        sb.exec("true")
        before = len(created)
        for i in range(5):
            assert sb.exec(f"echo {i}").stdout == f"{i}\n"
        assert len(created) == before  # no docker exec per command
    monkeypatch.setenv("PIVOTRL_DOCKER_DRIVER", "0")
    with DockerSandbox(image=image, client=client) as sb:
        sb.exec("true")
        before = len(created)
        for _ in range(5):
            sb.exec("true")
        assert len(created) == before + 5


DRIVER_PARITY_COMMANDS = [
    "echo out; echo err >&2; exit 3",
    "pwd; id; echo $HOME; umask; ulimit -n; ulimit -f",
    "env | grep -v -e '^_=' -e '^SHLVL=' | sort",
    "cat; echo read-stdin",  # stdin is /dev/null either way
    "kill -9 $$",
    "printf 'no newline'",
    "head -c 300000 /dev/zero | tr '\\0' x",
    "mkdir -p d/e && echo hi > d/e/f && chmod 600 d/e/f && ln -s d/e/f link && mkfifo pipe; ls -lR --time-style=+ .",
    "exit 124",
]


def test_the_driver_gives_what_docker_exec_gives(image: str, monkeypatch) -> None:
    from sandboxes.docker import DockerSandbox

    def run_all() -> tuple[list, str, list[str]]:
        with DockerSandbox({"seed.txt": "seed\n"}, image=image, timeout=5) as sb:
            results = [sb.exec(c) for c in DRIVER_PARITY_COMMANDS]
            sb.snapshot()
            (fork,) = sb.fork(1)  # a fork: the world reset and the digest after its command
            fork.exec("echo forked >> seed.txt")
            fork_digest = fork.state_digest()
            fork.close()
            return ([(r.exit_code, r.stdout, r.stderr, r.timed_out, r.oom, r.truncated) for r in results],
                    sb.state_digest() + fork_digest, sorted(sb.changed_paths()))

    with_driver = run_all()
    monkeypatch.setenv("PIVOTRL_DOCKER_DRIVER", "0")
    assert run_all() == with_driver


def test_a_command_that_kills_the_driver_gets_a_killed_status_and_nothing_survives(sandbox) -> None:
    sandbox.exec("true")
    result = sandbox.exec("setsid sleep 300 >/dev/null 2>&1 </dev/null & pkill -9 -x python3; sleep 2")
    assert result.exit_code == 137 and not result.ok
    assert sandbox.exec("echo next").stdout == "next\n"  # a new driver runs it
    assert user_processes(sandbox) == []


def test_commands_cannot_reach_the_driver(sandbox) -> None:
    # Non-dumpable: same-user commands can neither open its pipes (/proc/<pid>/fd) nor trace it.
    sandbox.exec("true")
    pid = sandbox.exec("pgrep -x python3").stdout.split()
    assert len(pid) == 1
    for command in (f"ls /proc/{pid[0]}/fd", f"cat /proc/{pid[0]}/environ", f"echo x > /proc/{pid[0]}/fd/1",
                    f"head -c 1 /proc/{pid[0]}/mem"):
        result = sandbox.exec(command)
        assert result.exit_code != 0 and "ermission denied" in result.stderr, (command, result)
    assert sandbox.exec("echo still").stdout == "still\n"


def test_leased_sandboxes_start_from_the_image_world_on_a_warm_worker(image: str) -> None:
    from sandboxes.docker import DockerSandbox

    files, setup = {"a.txt": "a\n", "d/b.txt": "b\n"}, ["echo setup >> a.txt"]
    look = "cat a.txt d/b.txt; ls -A; ls -A ~; ls -A /tmp; ps -u 1000 -o comm= | grep -c sleep"
    with DockerSandbox(files, setup, image=image) as plain:
        want = (plain.state_digest(), plain.exec(look).stdout)
    first = DockerSandbox(files, setup, image=image, lease=True)
    used = first.container_id
    assert (first.state_digest(), first.exec(look).stdout) == want
    first.exec("echo left > extra; touch ~/home-left /tmp/tmp-left; chmod 000 d; (sleep 60 &) ; true")
    first.close()
    second = DockerSandbox(files, setup, image=image, lease=True)
    try:
        assert second.container_id == used  # the same container, back from the shelf
        assert (second.state_digest(), second.exec(look).stdout) == want
    finally:
        second.close()
