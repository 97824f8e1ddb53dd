from __future__ import annotations

import pytest

from sandboxes import InProcessSandbox, SandboxClosedError, SnapshotError, ToolError, UnsupportedOperation
from sandboxes.core import Snapshot, sha256_json


def add(state, key, value=1):
    if not isinstance(value, int):
        raise ToolError("value must be an integer")
    state["kv"][key] = state["kv"].get(key, 0) + value
    return {"key": key, "value": state["kv"][key]}


def make():
    return InProcessSandbox({"kv": {}}, tools={"add": add})


def test_call_results_and_errors_are_data():
    sb = make()
    assert sb.call_tool("add", {"key": "a", "value": 2}).stdout == '{"key": "a", "value": 2}'
    assert sb.call_tool("add", {"key": "a", "value": "x"}).stderr == "Error: value must be an integer"
    bad = sb.call_tool("add", {"nope": 1})
    assert bad.exit_code == 1 and "bad arguments" in bad.stderr
    assert "unknown tool" in sb.call_tool("rm", {}).stderr
    with pytest.raises(UnsupportedOperation):
        sb.exec("ls")


def test_snapshot_restore_fork_and_digest():
    sb = make()
    sb.call_tool("add", {"key": "a"})
    snap = sb.snapshot()
    assert snap.digest == sb.state_digest() == sha256_json({"kv": {"a": 1}})
    sb.call_tool("add", {"key": "a"})
    assert sb.state_digest() != snap.digest
    sb.restore(snap)
    assert sb.state == {"kv": {"a": 1}}
    f1, f2 = sb.fork(2)
    f1.call_tool("add", {"key": "b"})
    assert f2.state == sb.state == {"kv": {"a": 1}} and f1.state["kv"]["b"] == 1
    with pytest.raises(SnapshotError):
        sb.restore(Snapshot("docker", "x", None))


def test_files_and_close():
    sb = make()
    sb.write_file("notes.txt", b"hi")
    assert sb.read_file("notes.txt") == b"hi"
    with pytest.raises(FileNotFoundError):
        sb.read_file("other")
    sb.close()
    sb.close()  # idempotent
    assert sb.closed
    with pytest.raises(SandboxClosedError):
        sb.call_tool("add", {"key": "a"})


def test_snapshot_size_is_the_serialized_state_in_memory():
    import sys

    from sandboxes.core import canonical_json

    sb = InProcessSandbox({"kv": {"a": 1}})
    small = sb.snapshot()
    assert small.nbytes == sys.getsizeof(canonical_json(sb.state)) and small.digest == sb.state_digest()
    sb.write_file("big.txt", "x" * 10_000)
    big = sb.snapshot()
    assert big.nbytes - small.nbytes >= 10_000 and big.digest == sha256_json(sb.state)
