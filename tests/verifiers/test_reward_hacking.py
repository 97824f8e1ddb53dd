"""Reward hacking at the execution level: each test is one exploit a policy could use, and asserts that it
earns nothing (reward 0, an invalid or error verdict) or that nothing of it survives.

Every exploit runs on the local backend and, marked ``docker``, in the hardened Docker sandbox (under
``CI=true`` a missing daemon fails these tests instead of skipping them; see tests/conftest.py).
"""

from __future__ import annotations

import math
import os
import threading
import uuid

import pytest
from labelled import BASH_TOOLS, bash

from pivot_envs.actions import Action, ToolCall
from pivot_envs.domain import GENERIC
from pivot_envs.domains.terminal import run_success_script
from pivot_envs.trajectory import Trajectory
from sandboxes.digest import Limits, WalkLimit, walk
from sandboxes.local import SAFE_PATH, LocalSandbox
from verifiers import Category, VerifyContext
from verifiers.terminal import TerminalCascade

#: A success check in the style of the bundled records: answer.txt must hold the right digest.
SUCCESS = """python3 - <<'EOF' || exit 1
import hashlib, sys
data = open('answer.txt', 'rb').read() if __import__('os').path.isfile('answer.txt') else b''
sys.exit(0 if hashlib.sha256(data).hexdigest() == hashlib.sha256(b'42\\n').hexdigest() else 1)
EOF
"""
#: Python that ends the check with success wherever it gets imported or executed.
FAKE_PASS = "import os; os._exit(0)\n"


def _record(script: str = SUCCESS) -> Trajectory:
    return Trajectory(id="hack", messages=[{"role": "user", "content": "Write 42 to answer.txt."}],
                      domain="terminal", task={"success": {"kind": "script", "script": script, "timeout": 20}})


def _docker(**kwargs):
    from sandboxes.docker import DockerSandbox

    return DockerSandbox(**kwargs)


def _local(**kwargs):
    return LocalSandbox(**kwargs)


BACKENDS = [pytest.param(_local, id="local"), pytest.param(_docker, id="docker", marks=pytest.mark.docker)]


def _user_site(sb) -> str:
    return sb.exec("python3 -c 'import site; print(site.getusersitepackages())'").stdout.strip()


# -- episode success -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", BACKENDS)
def test_the_check_is_honest(make):
    with make(timeout=10) as sb:
        assert not run_success_script(_record(), sb).ok
        sb.exec("echo 42 > answer.txt")
        assert run_success_script(_record(), sb).ok


@pytest.mark.parametrize("make", BACKENDS)
def test_planted_hashlib_does_not_fake_success(make):
    with make(timeout=10) as sb:
        sb.exec(f"printf '{FAKE_PASS}' > hashlib.py")
        assert sb.exec(SUCCESS).ok  # the exploit works on a plain exec: the check must not be one
        assert not run_success_script(_record(), sb).ok


@pytest.mark.parametrize("name", ["evil.pth", "usercustomize.py", "sitecustomize.py"])
@pytest.mark.parametrize("make", BACKENDS)
def test_site_files_in_the_users_home_do_not_fake_success(make, name):
    content = FAKE_PASS if name.endswith(".py") else FAKE_PASS  # a .pth line starting with "import" runs
    with make(timeout=10) as sb:
        site = _user_site(sb)
        assert site.startswith("/")
        sb.exec(f"mkdir -p {site} && printf '{content}' > {site}/{name}")
        if name != "sitecustomize.py":  # sitecustomize is looked up on sys.path, the user site is on it
            assert sb.exec(SUCCESS).ok, "the planted file should fool a plain python3"
        assert not run_success_script(_record(), sb).ok


@pytest.mark.parametrize("make", BACKENDS)
def test_fake_python3_earlier_on_path_does_not_fake_success(make):
    # A sandbox whose PATH starts with a directory the agent can write (relative: the workspace's bin/).
    with make(timeout=10, env={"PATH": "bin:" + SAFE_PATH}) as sb:
        sb.exec("mkdir -p bin && printf '#!/bin/sh\\nexit 0\\n' > bin/python3 && chmod +x bin/python3")
        assert sb.exec(SUCCESS).ok
        assert not run_success_script(_record(), sb).ok


@pytest.mark.parametrize("make", BACKENDS)
def test_git_fsmonitor_of_the_agent_does_not_run_in_the_check(make):
    # A marker name of its own: the local backend's /tmp is the host's, where an earlier run may have left one.
    marker = f"/tmp/pivotrl-fsmonitor-{uuid.uuid4().hex}"
    script = f"git status --porcelain > /dev/null; test ! -e .tmp/ran && test ! -e {marker}"
    try:
        with make(timeout=10) as sb:
            sb.exec(f"git init -q . && printf '#!/bin/sh\\ntouch {marker}\\n' > mon.sh && chmod +x mon.sh "
                    "&& git config core.fsmonitor \"$PWD/mon.sh\"")
            assert sb.exec("git status --porcelain > /dev/null").ok
            assert sb.exec(f"test -e {marker} && rm -f {marker}").ok  # the agent's own git does run it
            assert run_success_script(_record(script), sb).ok
    finally:
        if os.path.exists(marker):
            os.remove(marker)


# -- tool arguments never raise limits --------------------------------------------------------------


@pytest.mark.parametrize("make", BACKENDS)
def test_timeout_argument_cannot_exceed_the_domain_limit(make):
    with make(timeout=1) as sb:
        _, result = GENERIC.execute(sb, ToolCall.from_parts("bash", {"command": "sleep 12", "timeout": 999}))
        assert result.timed_out and result.duration_s < 11


@pytest.mark.parametrize("bad", ["ten", -1, 0, math.nan, math.inf, True, [5], 10**400])
def test_bad_timeout_is_an_invalid_action_not_a_crash(bad):
    call = ToolCall.from_parts("bash", {"command": "echo hi > out.txt", "timeout": bad})
    with LocalSandbox(timeout=2) as sb:
        text, result = GENERIC.execute(sb, call)
        assert result.exit_code != 0 and "invalid action" in text and "timeout" in text
        assert not os.path.exists(sb.workspace / "out.txt")  # the command did not run
        verdict = TerminalCascade().verify(bash("echo hi > out.txt"), Action(tool_calls=(call,)),
                                           VerifyContext(tools=BASH_TOOLS, sandbox=sb, executor=GENERIC.execute))
        assert verdict.score == 0 and verdict.method == "error" and verdict.category == Category.ARG_VALUE


# -- no-ops passed off as effects -------------------------------------------------------------------


@pytest.mark.parametrize("make", BACKENDS)
@pytest.mark.parametrize("gold, noop", [
    ("chmod +x run.sh", "true"),
    ("chmod 600 run.sh", "true"),
    ("chmod 600 run.sh", "chmod 644 run.sh"),
    ("rm -rf src/__pycache__", "true"),
    ("find . -name '*.pyc' -delete", "ls"),
])
def test_permission_and_cache_no_ops_earn_nothing(make, gold, noop):
    with make(files={"run.sh": "#!/bin/sh\necho hi\n", "src/m.py": "X = 1\n"}, timeout=10) as sb:
        assert sb.exec("cd src && python3 -c 'import m'").ok and sb.exec("test -d src/__pycache__").ok
        ctx = VerifyContext(tools=BASH_TOOLS, sandbox=sb, executor=GENERIC.execute)
        verdict = TerminalCascade().verify(bash(gold), bash(noop), ctx)
        assert verdict.score == 0 and verdict.category == Category.FS_EFFECT_DIFFERS, verdict


def _big_workspace(sb, n: int = 3000) -> None:
    # Names long enough that the listing is far over one command's output cap (64 KB).
    assert sb.exec(f"mkdir d && for i in $(seq -w 1 {n}); do echo $i > d/file-with-a-long-name-$i.txt; done").ok


@pytest.mark.parametrize("make", BACKENDS)
def test_noop_is_not_rm_of_a_middle_file_in_a_big_workspace(make):
    with make(timeout=60) as sb:
        _big_workspace(sb)
        ctx = VerifyContext(tools=BASH_TOOLS, sandbox=sb, executor=GENERIC.execute)
        verdict = TerminalCascade().verify(bash("rm d/file-with-a-long-name-1500.txt"), bash("true"), ctx)
        assert verdict.score == 0 and verdict.category == Category.FS_EFFECT_DIFFERS, verdict
        assert verdict.details["paths"] == ["d/file-with-a-long-name-1500.txt"]


def test_a_cut_exec_listing_is_an_error_verdict_not_a_comparison():
    # Listed through one command (the path of sandboxes without their own manifest()), 3,000 files
    # exceed the output cap: the verdict must be an error, never "nothing changed".
    with LocalSandbox(timeout=60) as sb:
        _big_workspace(sb)
        ctx = VerifyContext(tools=BASH_TOOLS, sandbox=sb, executor=GENERIC.execute)
        verdict = TerminalCascade(manifest_via_exec=True).verify(
            bash("rm d/file-with-a-long-name-1500.txt"), bash("true"), ctx)
        assert verdict.score == 0 and verdict.method == "error" and verdict.category == Category.WALK_LIMIT


def test_walks_stop_at_hard_limits(tmp_path):
    for i in range(20):
        (tmp_path / f"f{i}").write_text("x")
    with pytest.raises(WalkLimit) as err:
        list(walk(os.fspath(tmp_path), Limits(entries=10)))
    assert err.value.limit == "entries"
    deep = tmp_path / "/".join(["d"] * 12)
    deep.mkdir(parents=True)
    with pytest.raises(WalkLimit) as err:
        list(walk(os.fspath(tmp_path), Limits(depth=5)))
    assert err.value.limit == "depth"


# -- FIFOs and leftovers ----------------------------------------------------------------------------


@pytest.mark.parametrize("make", BACKENDS)
def test_fifo_in_the_workspace_never_hangs_the_verifier(make):
    with make(files={"a.txt": "a\n"}, timeout=10) as sb:
        sb.exec("mkfifo pipe")
        ctx = VerifyContext(tools=BASH_TOOLS, sandbox=sb, executor=GENERIC.execute)
        verdicts = []
        # A hang guard, not a speed test: a walk that opened the FIFO would block forever.
        worker = threading.Thread(target=lambda: verdicts.append(
            TerminalCascade().verify(bash("rm a.txt"), bash("mkfifo p2; true"), ctx)), daemon=True)
        worker.start()
        worker.join(120)
        assert verdicts, "the verifier hung on a FIFO"
        assert verdicts[0].score == 0 and verdicts[0].category == Category.FS_EFFECT_DIFFERS
        assert sb.state_digest() and sb.snapshot()  # digests and snapshots skip over it too


def _live_sleepers(uid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                with open(f"/proc/{name}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X"):
                        found.append(int(name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("command", [
    "setsid sleep 1000 & sleep 0.2",
    "HOME=/ TMPDIR=/ setsid sleep 1000 > /dev/null 2>&1 & sleep 0.2",
    "(setsid env -i /bin/sleep 1000 &); sleep 0.2",
])
def test_setsid_leftovers_do_not_survive_the_local_sandbox(command):
    if os.geteuid() != 0:
        pytest.skip("without root the sandbox runs as the host user; see sandboxes.local's known limits")
    sb = LocalSandbox(timeout=5)
    uid = sb._uid
    sb.exec(command)
    assert _live_sleepers(uid) == []  # killed when the command returned
    sb.exec("sleep 0.1")
    sb.close()
    assert _live_sleepers(uid) == []


@pytest.mark.docker
def test_setsid_leftovers_do_not_survive_a_docker_command():
    with _docker(timeout=5) as sb:
        sb.exec("(setsid env -i /bin/sleep 1000 &); sleep 0.2")
        assert sb.exec("ps -u sandbox -o comm= | grep -c sleep").stdout.strip() == "0"
