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
    "DockerLimits",
    "DockerSandbox",
    "ExecResult",
    "InProcessSandbox",
    "LocalSandbox",
    "ObjectSandbox",
    "Sandbox",
    "SandboxClosedError",
    "SandboxError",
    "SandboxPool",
    "Snapshot",
    "SnapshotError",
    "ToolError",
    "UnsupportedOperation",
    "canonical_json",
    "reap",
    "sha256_json",
]


# Backends with heavier imports (subprocess handling, the docker SDK, an optional extra) load on first use.
_LAZY = {"LocalSandbox": "sandboxes.local", "DockerSandbox": "sandboxes.docker", "DockerLimits": "sandboxes.docker",
         "reap": "sandboxes.docker", "SandboxPool": "sandboxes.pool",
         "ObjectSandbox": "sandboxes.objects"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sandboxes' has no attribute {name!r}")
