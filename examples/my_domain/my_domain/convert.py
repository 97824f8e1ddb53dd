"""The data converter: the benchmark's own task format -> pivotrl records.

The source format (one task per line, made up for this example, shaped like many stateful-API benchmarks)
gives the world at the start and, per user turn, the user's words and the ground-truth calls::

    {"task_id": "t01", "world": {"events": [...], "contacts": {"Ann": "ann@example.com"}},
     "dialogue": [{"user": "What do I have on March 2?", "gold": [["list_events", {"day": "2026-03-02"}]]}]}

The converter plays the gold calls in the real world (an ``ObjectSandbox``) so every tool message is what
the world answers, and writes one record per task: the user turns end after their tool calls (no invented
closing message), tool schemas are referenced (``"tools": "domain"``), and ``task`` holds the digest of
the world after each user turn and at the end (the success rules in ``__init__.py`` compare with them).

    python -m my_domain.convert my_domain/data/tasks.jsonl my_domain/data/my_domain.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from my_domain.world import build_world
from sandboxes.objects import ObjectSandbox

DOMAIN_NAME = "my_domain"


class ConversionError(ValueError):
    """A task the converter cannot turn into a record (a gold call the world refuses, a missing field)."""


def convert_task(task: dict[str, Any]) -> dict[str, Any]:
    """One source task -> one pivotrl record (raises :class:`ConversionError` saying what is wrong)."""
    for key in ("task_id", "world", "dialogue"):
        if key not in task:
            raise ConversionError(f"task {task.get('task_id', '?')}: missing field {key!r}")
    world = ObjectSandbox(build_world(task["world"]))
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You manage the user's calendar and email."}]
    turn_digests = []
    n = 0
    for u, step in enumerate(task["dialogue"]):
        messages.append({"role": "user", "content": step["user"]})
        for name, args in step["gold"]:
            n += 1
            call_id = f"call_{n}"
            result = world.call_tool(name, args)
            if not result.ok:
                raise ConversionError(f"task {task['task_id']} user turn {u}: gold call {name}({args}) failed: "
                                      f"{result.stderr}")
            messages.append({"role": "assistant", "tool_calls": [{"id": call_id, "type": "function", "function": {
                "name": name, "arguments": json.dumps(args, sort_keys=True)}}]})
            messages.append({"role": "tool", "tool_call_id": call_id, "content": result.stdout})
        turn_digests.append(world.state_digest())
    return {"id": f"{DOMAIN_NAME}-{task['task_id']}", "domain": DOMAIN_NAME, "tools": "domain", "messages": messages,
            "env": {"sandbox": "objects", **task["world"]},
            "task": {"success": {"kind": "final_state", "expected_state_sha256": world.state_digest()},
                     "user_turn_digests": turn_digests},
            "metadata": {"source": "tasks.jsonl", "task_id": task["task_id"]}}


def convert_file(src: str | Path, dst: str | Path) -> int:
    """Convert every task of ``src`` into ``dst``; returns the number of records."""
    lines = Path(src).read_text(encoding="utf-8").splitlines()
    records = [convert_task(json.loads(line)) for line in lines if line.strip()]
    Path(dst).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return len(records)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m my_domain.convert TASKS.jsonl RECORDS.jsonl")
    print(f"wrote {convert_file(sys.argv[1], sys.argv[2])} records to {sys.argv[2]}")
