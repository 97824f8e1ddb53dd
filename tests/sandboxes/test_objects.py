"""ObjectSandbox: a world of Python objects with snapshot, fork and a digest over the object graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandboxes import ObjectSandbox, SnapshotError, ToolError, UnsupportedOperation
from sandboxes.objects import ObjectDigestError, object_digest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Account:
    owner: str
    balance: float = 0.0
    tags: set[str] = field(default_factory=set)


class Bank:
    def __init__(self):
        self.accounts: dict[str, Account] = {}
        self.log: list[tuple[str, float]] = []

    def open(self, name: str, owner: str) -> dict:
        if name in self.accounts:
            raise ToolError(f"account {name} exists")
        self.accounts[name] = Account(owner)
        return {"opened": name}

    def deposit(self, name: str, amount: float) -> float:
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.accounts[name].balance += amount
        self.log.append((name, amount))
        return self.accounts[name].balance

    def show(self, name: str) -> Account:
        return self.accounts[name]

    def _audit(self) -> None:  # private: never a tool
        self.log.clear()


def bank_with(*names: str) -> Bank:
    bank = Bank()
    for n in names:
        bank.open(n, owner=n.upper())
    return bank


def test_public_methods_are_tools_and_bad_calls_are_error_results():
    sb = ObjectSandbox(bank_with("a"))
    assert sb.tool_names() == ["deposit", "open", "show"]
    assert sb.capabilities == frozenset({"tools"})
    ok = sb.call_tool("deposit", {"name": "a", "amount": 5})
    assert ok.exit_code == 0 and ok.stdout == "5.0"
    assert json.loads(sb.call_tool("show", {"name": "a"}).stdout) == {"owner": "A", "balance": 5.0, "tags": []}
    missing = sb.call_tool("deposit", {"name": "a"})
    assert missing.exit_code == 1 and "bad arguments for deposit" in missing.stderr and "amount" in missing.stderr
    assert "unexpected keyword" in sb.call_tool("deposit", {"name": "a", "amount": 1, "x": 2}).stderr
    refused = sb.call_tool("deposit", {"name": "a", "amount": -1})
    assert refused.exit_code == 1 and refused.stderr == "Error: ValueError: amount must be positive"
    assert sb.call_tool("open", {"name": "a", "owner": "z"}).stderr == "Error: account a exists"
    assert "unknown tool '_audit'" in sb.call_tool("_audit", {}).stderr
    assert "unknown tool 'accounts'" in sb.call_tool("accounts", {}).stderr
    assert sb.call_tool("deposit", ["a", 1]).exit_code == 1  # type: ignore[arg-type]
    with pytest.raises(UnsupportedOperation, match="capability 'files'"):
        sb.read_file("x")
    with pytest.raises(UnsupportedOperation, match="capability 'exec'"):
        sb.exec("ls")


def test_explicit_tools_and_name_clashes():
    world = {"left": bank_with("a"), "right": bank_with("b")}
    with pytest.raises(ValueError, match="two roots offer a method 'deposit'"):
        ObjectSandbox(world)

    def total(w, owner: str) -> float:
        return sum(acc.balance for bank in w.values() for acc in bank.accounts.values() if acc.owner == owner)

    sb = ObjectSandbox(world, tools={"put_left": "left.deposit", "total": total})
    assert sb.call_tool("put_left", {"name": "a", "amount": 2}).stdout == "2.0"
    assert sb.call_tool("total", {"owner": "A"}).stdout == "2.0"
    with pytest.raises(ValueError, match="no method 'nope'"):
        ObjectSandbox(world, tools={"x": "left.nope"})
    with pytest.raises(ValueError, match="public method"):
        ObjectSandbox(world, tools={"x": "left._audit"})


def test_snapshot_restore_and_fork_are_isolated():
    sb = ObjectSandbox(bank_with("a", "b"))
    before = sb.state_digest()
    snap = sb.snapshot()
    sb.call_tool("deposit", {"name": "a", "amount": 3})
    sb.root.accounts["b"].tags.add("vip")  # a nested mutation the snapshot must not see
    assert sb.state_digest() != before and snap.digest == before
    sb.restore(snap)
    assert sb.state_digest() == before
    sb.call_tool("deposit", {"name": "a", "amount": 1})  # acting after a restore leaves the snapshot alone
    sb.restore(snap)
    assert sb.state_digest() == before and sb.root.accounts["a"].balance == 0.0

    forks = sb.fork(3)
    forks[0].call_tool("deposit", {"name": "b", "amount": 9})
    assert forks[0].state_digest() != before
    assert [f.state_digest() for f in forks[1:]] == [before, before] and sb.state_digest() == before
    assert forks[0].root is not sb.root and forks[1].root.accounts is not sb.root.accounts
    for f in forks:
        f.close()
    with pytest.raises(SnapshotError, match="cannot restore"):
        sb.restore(type(snap)("inprocess", before, "{}"))


def test_shared_references_between_roots_stay_shared_in_copies():
    shared = Account("S")
    sb = ObjectSandbox({"one": {"acc": shared}, "two": {"acc": shared}}, tools={})
    (fork,) = sb.fork(1)
    assert fork.world["one"]["acc"] is fork.world["two"]["acc"]
    assert fork.state_digest() == sb.state_digest()
    # The same values without the sharing are another world (a write through one name shows in the other).
    unshared = ObjectSandbox({"one": {"acc": Account("S")}, "two": {"acc": Account("S")}}, tools={})
    assert unshared.state_digest() != sb.state_digest()


def test_digest_sees_every_kind_of_change():
    base = bank_with("a")
    digests = {object_digest(base)}
    variants = []
    for mutate in (lambda b: b.accounts["a"].tags.add("x"),
                   lambda b: setattr(b.accounts["a"], "balance", 0.1 + 0.2),
                   lambda b: setattr(b.accounts["a"], "balance", -0.0),
                   lambda b: setattr(b.accounts["a"], "balance", 0),  # int 0 is not float 0.0
                   lambda b: b.log.append(("a", 1.0)),
                   lambda b: b.accounts.update({"b": Account("B")}),
                   lambda b: setattr(b.accounts["a"], "owner", "a"),
                   lambda b: setattr(b, "extra", None)):
        b = bank_with("a")
        mutate(b)
        variants.append(object_digest(b))
    digests.update(variants)
    assert len(digests) == 1 + len(variants)  # each change gives its own digest
    assert object_digest(bank_with("a")) == object_digest(base)


def test_digest_handles_cycles_slots_and_refuses_opaque_objects():
    class Node:
        __slots__ = ("value", "next")

        def __init__(self, value):
            self.value, self.next = value, None

    a, b = Node(1), Node(2)
    a.next, b.next = b, a  # a cycle
    c, d = Node(1), Node(2)
    c.next, d.next = d, c
    assert object_digest(a) == object_digest(c)
    d.value = 3
    assert object_digest(a) != object_digest(c)

    class Holder:
        def __init__(self):
            self.lock = threading.Lock()

    with pytest.raises(ObjectDigestError, match=r"world\.lock"):
        object_digest(Holder())

    class Custom:
        def __init__(self):
            self.lock, self.n = threading.Lock(), 1

        def __pivotrl_state__(self):
            return {"n": self.n}

    assert object_digest(Custom()) == object_digest(Custom())


_DIGEST_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from sandboxes.objects import object_digest

    class Item:
        def __init__(self, name, tags):
            self.name, self.tags = name, tags

    world = {"items": [Item("x", {"red", "green", "blue", "cyan"}), Item("y", frozenset({"a", "b", "c"}))],
             "index": {"zeta": 1, "alpha": 2.5, "mid": None}, "members": {"u1", "u2", "u3", "u4", "u5"}}
    print(object_digest(world))
""")


def test_digest_is_the_same_in_other_processes_whatever_the_hash_seed(tmp_path):
    script = tmp_path / "digest.py"
    script.write_text(_DIGEST_SCRIPT)
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}  # set iteration order differs between these runs
        out = subprocess.run([sys.executable, str(script), str(ROOT)], env=env, capture_output=True, text=True,
                             check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_closed_sandbox_refuses_work():
    sb = ObjectSandbox(bank_with("a"))
    sb.close()
    sb.close()
    with pytest.raises(Exception, match="closed"):
        sb.call_tool("show", {"name": "a"})


def test_snapshot_size_is_the_canonical_encoding_of_the_graph_and_grows_with_it():
    sb = ObjectSandbox(bank_with("a"))
    small = sb.snapshot()
    assert small.nbytes > 0 and small.digest == sb.state_digest()
    for _ in range(100):
        sb.call_tool("deposit", {"name": "a", "amount": 1})
    big = sb.snapshot()
    assert big.nbytes > small.nbytes + 500 and big.digest == sb.state_digest()  # 100 log entries
