"""LocalSandbox: one adversarial test per property of its threat model, then the functional contract.

Every command that could leave processes behind runs with a unique ``PIVOTRL_TEST_MARK`` in its
environment, so the tests can find its processes in /proc whoever they run as. No test uses the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from sandboxes import SandboxClosedError, SandboxError, SnapshotError
from sandboxes.local import SAFE_PATH, SANDBOX_UID_RANGE, LocalLimits, LocalSandbox

IS_ROOT = os.geteuid() == 0
needs_python3 = pytest.mark.skipif(
    shutil.which("python3", path=SAFE_PATH) is None, reason="no python3 on the sandbox PATH"
)


def live_marked_processes(token: str) -> list[int]:
    """Pids of running (not zombie) processes whose environment carries ``PIVOTRL_TEST_MARK=token``."""
    needle = f"PIVOTRL_TEST_MARK={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X"):
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except (OSError, IndexError):
            continue
    return found


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def private_tempdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make tempfile use a fresh directory, so a test can see everything a sandbox created there."""
    path = tempfile.mkdtemp(prefix="pivotrl-test-")
    os.chmod(path, 0o711)  # the sandbox user must be able to reach its workspace by absolute path
    monkeypatch.setattr(tempfile, "tempdir", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox(token: str) -> Iterator[LocalSandbox]:
    sb = LocalSandbox(timeout=5, env={"PIVOTRL_TEST_MARK": token})
    yield sb
    sb.close()


# -- adversarial: one test per protected property ----------------------------------------------------


def test_infinite_loop_times_out_and_leaves_no_process(sandbox: LocalSandbox, token: str) -> None:
    start = time.monotonic()
    result = sandbox.exec("sleep 1000 & while true; do :; done", timeout=1)
    elapsed = time.monotonic() - start

    assert result.timed_out and not result.ok
    assert result.exit_code == -9
    assert 0.9 <= elapsed < 3
    assert live_marked_processes(token) == []


def test_cpu_limit_stops_a_busy_process(token: str) -> None:
    with LocalSandbox(limits=LocalLimits(cpu_seconds=1), env={"PIVOTRL_TEST_MARK": token}) as sb:
        result = sb.exec("while true; do :; done", timeout=8)
    assert not result.timed_out
    assert result.exit_code == -24  # SIGXCPU at the soft limit
    assert result.duration_s < 4


@needs_python3
def test_memory_bomb_is_contained(token: str) -> None:
    limits = LocalLimits(memory_bytes=512 * 1024**2)
    with LocalSandbox(limits=limits, env={"PIVOTRL_TEST_MARK": token}) as sb:
        result = sb.exec('python3 -c "x = bytearray(4 * 1024**3)"')
        assert not result.ok
        assert result.oom and not result.timed_out
        assert "MemoryError" in result.stderr
        assert sb.exec("echo still here").stdout == "still here\n"


def test_fork_bomb_is_contained(token: str) -> None:
    limits = LocalLimits(max_processes=16)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(live_marked_processes(token)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    with LocalSandbox(limits=limits, env={"PIVOTRL_TEST_MARK": token}) as sb:
        sampler.start()
        try:
            result = sb.exec("bomb() { bomb | bomb & }; bomb; sleep 30", timeout=2)
        finally:
            done.set()
            sampler.join()
        assert result.timed_out or result.exit_code != 0
        assert "Resource temporarily unavailable" in result.stderr  # the process limit was hit
        # A scan of /proc is not atomic, so allow some slack; an unlimited bomb reaches thousands.
        assert 0 < peak <= 2 * limits.max_processes
        assert live_marked_processes(token) == []
        assert sb.exec("echo alive").stdout == "alive\n"
    assert live_marked_processes(token) == []


def test_processes_do_not_outlive_their_command(sandbox: LocalSandbox, token: str) -> None:
    # A classic bomb returns at once and leaves its children forking; setsid escapes the process group.
    result = sandbox.exec(
        ":(){ :|:& };:; setsid sleep 300 >/dev/null 2>&1 & nohup sleep 300 >/dev/null 2>&1 &"
    )
    assert result.exit_code == 0 and not result.timed_out
    assert live_marked_processes(token) == []


def test_output_flood_is_truncated(token: str) -> None:
    cap = 10_000
    with LocalSandbox(max_output_bytes=cap, env={"PIVOTRL_TEST_MARK": token}) as sb:
        result = sb.exec("yes | head -c 5000000; yes no | head -c 3000000 >&2")
    assert result.exit_code == 0 and result.truncated
    marker = f"\n[... {5_000_000 - cap} bytes truncated ...]\n"
    assert marker in result.stdout
    assert len(result.stdout) == cap + len(marker)
    assert result.stdout.startswith("y\ny\n") and result.stdout.endswith("y\n")
    assert len(result.stderr) <= cap + 64


def test_endless_output_is_stopped_by_the_file_size_limit(token: str) -> None:
    limits = LocalLimits(file_size_bytes=1024**2)
    with LocalSandbox(limits=limits, max_output_bytes=1000, env={"PIVOTRL_TEST_MARK": token}) as sb:
        result = sb.exec("yes", timeout=5)
    assert not result.timed_out
    assert result.exit_code == -25  # SIGXFSZ: the captured stdout reached RLIMIT_FSIZE
    assert result.truncated and "bytes truncated" in result.stdout
    assert len(result.stdout) < 1100


def test_host_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch, sandbox: LocalSandbox) -> None:
    monkeypatch.setenv("PIVOTRL_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter3")
    monkeypatch.setenv("PATH", "/opt/host-only/bin:" + os.environ.get("PATH", ""))
    result = sandbox.exec("env")
    assert result.ok
    assert "hunter" not in result.stdout
    variables = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert variables["PATH"] == SAFE_PATH
    assert variables["HOME"] == str(sandbox.workspace)
    assert variables["TMPDIR"] == str(sandbox.workspace / ".tmp")
    assert variables["LC_ALL"] == "C.UTF-8" and variables["TERM"] == "dumb"


def test_close_leaves_nothing_behind(private_tempdir: str, token: str) -> None:
    sb = LocalSandbox({"a.txt": "a"}, env={"PIVOTRL_TEST_MARK": token})
    sb.exec("sleep 300 &")
    snap = sb.snapshot()
    (child,) = sb.fork(1)
    workspace = sb.workspace
    assert workspace.is_dir() and os.path.isdir(snap.payload)

    sb.close()
    sb.close()  # idempotent

    assert not workspace.exists() and not os.path.exists(snap.payload)
    assert child.read_file("a.txt") == b"a"  # a fork is independent of its parent's lifetime
    child.close()
    assert os.listdir(private_tempdir) == []
    assert live_marked_processes(token) == []


@pytest.mark.parametrize(
    "operation",
    [
        lambda sb: sb.exec("true"),
        lambda sb: sb.read_file("a.txt"),
        lambda sb: sb.write_file("a.txt", "x"),
        lambda sb: sb.snapshot(),
        lambda sb: sb.fork(1),
        lambda sb: sb.state_digest(),
    ],
    ids=["exec", "read_file", "write_file", "snapshot", "fork", "state_digest"],
)
def test_operations_after_close_raise(operation) -> None:
    sb = LocalSandbox({"a.txt": "a"})
    snap = sb.snapshot()
    sb.close()
    with pytest.raises(SandboxClosedError):
        operation(sb)
    with pytest.raises(SandboxClosedError):
        sb.restore(snap)


def test_runs_as_its_own_uid_when_host_is_root(sandbox: LocalSandbox) -> None:
    if not IS_ROOT:
        pytest.skip("privileges are only dropped when the host runs as root")
    uid = str(sandbox._uid)
    assert int(uid) >= SANDBOX_UID_RANGE[0]
    assert sandbox.exec("id -u; id -g; id -G").stdout.split() == [uid, uid, uid]
    # The sandbox user cannot write outside its workspace or reach the host-only snapshots.
    snap = sandbox.snapshot()
    assert sandbox.exec("touch /etc/pivotrl-test").exit_code != 0
    assert sandbox.exec(f"ls {snap.payload}").exit_code != 0
    assert not os.path.exists("/etc/pivotrl-test")


def test_planted_symlinks_cannot_reach_host_files(sandbox: LocalSandbox) -> None:
    sandbox.exec("ln -s /etc/passwd leak && ln -s / rootdir && ln -s /etc/pivotrl-test-new dangling")
    before = open("/etc/passwd", "rb").read()
    for path in ("leak", "rootdir/etc/passwd"):
        with pytest.raises(ValueError, match="outside"):
            sandbox.read_file(path)
        with pytest.raises(ValueError, match="outside"):
            sandbox.write_file(path, "pwned")
    with pytest.raises(ValueError, match="outside"):
        sandbox.write_file("dangling", "pwned")
    assert open("/etc/passwd", "rb").read() == before
    assert not os.path.exists("/etc/pivotrl-test-new")
    # Snapshots and digests keep links as links instead of following them.
    snap = sandbox.snapshot()
    assert os.path.islink(os.path.join(snap.payload, "leak"))


# -- functional contract -----------------------------------------------------------------------------


def test_files_roundtrip_and_exec_sees_them(sandbox: LocalSandbox) -> None:
    sandbox.write_file("src/pkg/mod.py", "print('hi')\n")
    sandbox.write_file("bin.dat", b"\x00\xff")
    assert sandbox.read_file("src/pkg/mod.py") == b"print('hi')\n"
    assert sandbox.read_file("./src/../bin.dat") == b"\x00\xff"
    result = sandbox.exec("cat src/pkg/mod.py && echo more >> src/pkg/mod.py && wc -c < bin.dat")
    assert result.ok and result.stdout == "print('hi')\n2\n"
    assert sandbox.read_file("src/pkg/mod.py") == b"print('hi')\nmore\n"


def test_constructor_files_and_exit_codes(token: str) -> None:
    with LocalSandbox({"a.txt": "alpha", "d/b.txt": b"beta"}, env={"PIVOTRL_TEST_MARK": token}) as sb:
        assert sb.exec("cat a.txt d/b.txt").stdout == "alphabeta"
        failed = sb.exec("echo oops >&2; exit 7")
        assert failed.exit_code == 7 and failed.stderr == "oops\n" and not failed.ok and not failed.oom
        assert sb.exec("cat missing").exit_code == 1
        assert sb.exec("no-such-command").exit_code == 127
        assert sb.exec("kill -TERM $$").exit_code == -15
        assert sb.exec("echo a\0b").exit_code == 2  # a NUL byte is a result, not an exception


def test_read_file_errors(sandbox: LocalSandbox) -> None:
    sandbox.exec("mkdir dir && mkfifo pipe")
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("missing.txt")
    with pytest.raises(IsADirectoryError):
        sandbox.read_file("dir")
    with pytest.raises(ValueError, match="not a regular file"):
        sandbox.read_file("pipe")


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../escape.txt", "..", "/etc/passwd", ""])
def test_path_escapes_are_rejected(sandbox: LocalSandbox, path: str) -> None:
    with pytest.raises(ValueError):
        sandbox.read_file(path)
    with pytest.raises(ValueError):
        sandbox.write_file(path, "x")
    with pytest.raises(ValueError):
        LocalSandbox({path: "x"})


def test_absolute_paths_are_rejected_with_a_hint(sandbox: LocalSandbox) -> None:
    with pytest.raises(ValueError, match="relative to the workspace"):
        sandbox.write_file("/tmp/x", "x")


def test_snapshot_and_restore(sandbox: LocalSandbox) -> None:
    sandbox.write_file("a.txt", "one")
    sandbox.exec("mkdir -p d/e && echo two > d/e/b.txt && chmod +x d/e/b.txt && ln -s a.txt link && mkfifo p")
    snap = sandbox.snapshot()
    assert snap.backend == "local" and snap.digest == sandbox.state_digest()

    sandbox.exec("rm -rf d link && echo changed > a.txt && touch new.txt")
    assert sandbox.state_digest() != snap.digest

    sandbox.restore(snap)
    assert sandbox.state_digest() == snap.digest
    assert sandbox.read_file("a.txt") == b"one"
    assert sandbox.exec("test -x d/e/b.txt && readlink link && test ! -e new.txt").stdout == "a.txt\n"
    assert sandbox.exec("touch after-restore && ls -d .tmp").ok  # writable again, TMPDIR exists

    sandbox.restore(snap)  # a snapshot can be restored any number of times
    assert sandbox.state_digest() == snap.digest


def test_snapshot_restores_into_another_sandbox_while_its_owner_is_open() -> None:
    with LocalSandbox({"a.txt": "from one"}) as one, LocalSandbox({"b.txt": "two"}) as two:
        snap = one.snapshot()
        two.restore(snap)
        assert two.read_file("a.txt") == b"from one"
        assert two.state_digest() == one.state_digest()
        with pytest.raises(FileNotFoundError):
            two.read_file("b.txt")
    with LocalSandbox() as three:
        with pytest.raises(SnapshotError, match="no longer exists"):
            three.restore(snap)


def test_fork_gives_independent_copies(sandbox: LocalSandbox) -> None:
    sandbox.write_file("shared.txt", "base")
    forks = sandbox.fork(2)
    try:
        first, second = forks
        assert first.state_digest() == second.state_digest() == sandbox.state_digest()
        first.exec("echo first > shared.txt && touch only-first")
        sandbox.write_file("only-parent", "p")

        assert first.read_file("shared.txt") == b"first\n"
        assert second.read_file("shared.txt") == b"base"
        assert sandbox.read_file("shared.txt") == b"base"
        assert second.exec("ls").stdout == "shared.txt\n"
        assert len({first.state_digest(), second.state_digest(), sandbox.state_digest()}) == 3
        assert first.exec("id -u").stdout == sandbox.exec("id -u").stdout  # same settings
        assert first.limits == sandbox.limits
    finally:
        for sb in forks:
            sb.close()
    assert sandbox.fork(0) == []


def test_state_digest_reflects_content_only() -> None:
    files = {"a.txt": "a", "dir/b.txt": "b"}
    with LocalSandbox(files) as one, LocalSandbox(dict(reversed(files.items()))) as two:
        assert one.state_digest() == two.state_digest()
        assert one.state_digest() == one.state_digest()
        # TMPDIR is not state; caches are, by presence only (their bytes embed timestamps, but deleting
        # them is an effect).
        one.exec("touch .tmp/scratch")
        assert one.state_digest() == two.state_digest()
        for sb in (one, two):
            sb.exec("mkdir __pycache__ dir/__pycache__ && touch __pycache__/x.pyc")
        assert one.state_digest() == two.state_digest()
        one.exec("echo other bytes > __pycache__/x.pyc")
        assert one.state_digest() == two.state_digest()
        one.exec("rm __pycache__/x.pyc")
        assert one.state_digest() != two.state_digest()
        one.exec("touch __pycache__/x.pyc")
        assert one.state_digest() == two.state_digest()

        one.write_file("a.txt", "A")
        assert one.state_digest() != two.state_digest()
        one.write_file("a.txt", "a")
        assert one.state_digest() == two.state_digest()

        for change, undo in [
            ("chmod +x a.txt", "chmod -x a.txt"),
            ("chmod 600 a.txt", "chmod 644 a.txt"),
            ("chmod 700 dir", "chmod 755 dir"),
            ("mkfifo pipe", "rm pipe"),
            ("mkdir empty", "rmdir empty"),
            ("ln -s a.txt link", "rm link"),
            ("mv dir/b.txt dir/c.txt", "mv dir/c.txt dir/b.txt"),
        ]:
            one.exec(change)
            assert one.state_digest() != two.state_digest(), change
            one.exec(undo)
            assert one.state_digest() == two.state_digest(), undo


@needs_python3
def test_setup_commands_run_in_order() -> None:
    files = {"gen.py": "print(40 + 2)"}
    with LocalSandbox(files, setup=["python3 gen.py > out.txt", "python3 gen.py >> out.txt"]) as sb:
        assert sb.read_file("out.txt") == b"42\n42\n"


def test_failing_setup_raises_and_cleans_up(private_tempdir: str) -> None:
    with pytest.raises(SandboxError) as info:
        LocalSandbox(setup=["true", "echo boom >&2; exit 3", "touch never"])
    message = str(info.value)
    assert "echo boom >&2; exit 3" in message and "exit code 3" in message and "boom" in message
    assert os.listdir(private_tempdir) == []


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_processes"):
        LocalLimits(max_processes=0)
    with pytest.raises(ValueError, match="timeout"):
        LocalSandbox(timeout=0)
    with pytest.raises(TypeError, match="env"):
        LocalSandbox(env={"N": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="sequence of commands"):
        LocalSandbox(setup="echo hi")


def test_snapshot_size_counts_the_copy_as_a_tar_archive_would(sandbox: LocalSandbox) -> None:
    empty = sandbox.snapshot()
    assert empty.nbytes == 512  # the workspace's own entry (.tmp/ is not copied)
    sandbox.write_file("a.txt", "x" * 1000)  # a header and two blocks of content
    sandbox.exec("mkdir d && ln -s a.txt d/link && : > d/empty && mkfifo p")  # a header each
    snap = sandbox.snapshot()
    assert snap.nbytes == 512 + (512 + 1024) + 512 + 512 + 512 + 512
    sandbox.exec("head -c 100000 /dev/zero > d/zeros")
    assert sandbox.snapshot().nbytes == snap.nbytes + 512 + 100352
