"""Where actions run: the sandbox contract and its backends.

>>> from sandboxes import InProcessSandbox
>>> with InProcessSandbox({"n": 1}) as sb:
...     len(sb.state_digest())
64
"""

from sandboxes.core import ExecResult, Sandbox, Snapshot, canonical_json, sha256_json
from sandboxes.errors import SandboxClosedError, SandboxError, SnapshotError, UnsupportedOperation
from sandboxes.inprocess import InProcessSandbox, ToolError

__all__ = [
    "ExecResult",
    "InProcessSandbox",
    "LocalSandbox",
    "Sandbox",
    "SandboxClosedError",
    "SandboxError",
    "Snapshot",
    "SnapshotError",
    "ToolError",
    "UnsupportedOperation",
    "canonical_json",
    "sha256_json",
]


def __getattr__(name: str):
    # LocalSandbox pulls in subprocess/resource handling; import it on first use.
    if name == "LocalSandbox":
        from sandboxes.local import LocalSandbox

        return LocalSandbox
    raise AttributeError(f"module 'sandboxes' has no attribute {name!r}")
