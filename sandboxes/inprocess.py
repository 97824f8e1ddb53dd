"""In-process sandbox: Python tool functions over a JSON-able state (the databases of tool-use domains).

Threat model: none. The tool functions are the domain's own trusted code; only their *arguments* come
from the model, and a tool that raises on bad arguments gives an error result, not an exception. Never
put functions that execute model-written code here; use :class:`~sandboxes.local.LocalSandbox` or the
Docker sandbox for that.

Snapshot = the state's canonical JSON text (its size: ``nbytes``, what the text holds in memory); state
digest = sha256 of that text.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from sandboxes.core import ExecResult, Sandbox, Snapshot, canonical_json, sha256_json
from sandboxes.errors import SnapshotError

logger = logging.getLogger(__name__)


class ToolError(Exception):
    """Raised by a tool function to report a domain error ("order not found") to the agent."""


#: A tool function takes the mutable state and keyword arguments and returns a JSON-able result.
ToolFunction = Callable[..., Any]


class InProcessSandbox(Sandbox):
    """Tool functions called in this process over a mutable JSON-able ``state``.

    >>> def get(state, key):
    ...     return state["kv"][key]
    >>> sb = InProcessSandbox({"kv": {"a": 1}}, tools={"get": get})
    >>> sb.call_tool("get", {"key": "a"}).stdout
    '1'
    >>> sb.call_tool("get", {"key": "zz"}).exit_code
    1

    Files live in ``state["files"]`` (path -> text) so that file tools and the file API agree.
    """

    backend = "inprocess"

    def __init__(self, state: Mapping[str, Any] | None = None, tools: Mapping[str, ToolFunction] | None = None):
        self.state: dict[str, Any] = copy.deepcopy(dict(state or {}))
        self.tools: dict[str, ToolFunction] = dict(tools or {})

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ExecResult:
        self._check_open()
        start = time.perf_counter()
        fn = self.tools.get(name)
        if fn is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return ExecResult(1, stderr=f"Error: unknown tool {name!r} (known tools: {known})")
        if not isinstance(arguments, dict):
            return ExecResult(1, stderr=f"Error: arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            inspect.signature(fn).bind(self.state, **arguments)
        except TypeError as exc:
            # Wrong or missing keyword arguments from the model: an error result, like a tool error.
            return ExecResult(1, stderr=f"Error: bad arguments for {name}: {exc}", duration_s=time.perf_counter() - start)
        try:
            result = fn(self.state, **arguments)
        except ToolError as exc:
            return ExecResult(1, stderr=f"Error: {exc}", duration_s=time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - model-chosen values can trip tool code; a rollout never crashes
            logger.warning("tool %s raised %s on arguments %r", name, type(exc).__name__, arguments, exc_info=True)
            return ExecResult(1, stderr=f"Error: {name} failed: {type(exc).__name__}: {exc}",
                              duration_s=time.perf_counter() - start)
        text = result if isinstance(result, str) else json.dumps(result, sort_keys=True, ensure_ascii=False)
        return ExecResult(0, stdout=text, duration_s=time.perf_counter() - start)

    def read_file(self, path: str) -> bytes:
        self._check_open()
        files = self.state.get("files", {})
        if path not in files:
            raise FileNotFoundError(path)
        return str(files[path]).encode("utf-8")

    def write_file(self, path: str, data: bytes | str) -> None:
        self._check_open()
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        self.state.setdefault("files", {})[path] = text

    def snapshot(self) -> Snapshot:
        self._check_open()
        # A JSON round trip is both the deep copy and a check that the state stays JSON-able. The digest
        # is sha256_json(state), taken over the same text rather than serializing the state twice.
        payload = canonical_json(self.state)
        digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        return Snapshot(self.backend, digest, payload, nbytes=sys.getsizeof(payload))

    def restore(self, snapshot: Snapshot) -> None:
        self._check_open()
        if snapshot.backend != self.backend:
            raise SnapshotError(f"cannot restore a {snapshot.backend!r} snapshot into an in-process sandbox")
        self.state = json.loads(snapshot.payload)

    def fork(self, n: int = 1) -> list[Sandbox]:
        self._check_open()
        payload = canonical_json(self.state)
        return [InProcessSandbox.__new_from_json(payload, self.tools) for _ in range(n)]

    @staticmethod
    def __new_from_json(payload: str, tools: dict[str, ToolFunction]) -> InProcessSandbox:
        sb = InProcessSandbox.__new__(InProcessSandbox)
        sb.state = json.loads(payload)
        sb.tools = tools
        return sb

    def state_digest(self) -> str:
        self._check_open()
        return sha256_json(self.state)

    def _close(self) -> None:
        self.state = {}
