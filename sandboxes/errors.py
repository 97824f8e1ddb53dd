"""Sandbox exceptions.

Only infrastructure faults raise. What the candidate's code did (a non-zero exit, a timeout, an
out-of-memory kill, a flood of output) is an :class:`~sandboxes.core.ExecResult`, never an exception.
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base class: the sandbox itself failed, not the code running inside it."""


class SandboxClosedError(SandboxError):
    """An operation was attempted on a sandbox after :meth:`close`."""


class SnapshotError(SandboxError):
    """A snapshot could not be taken or restored (wrong backend, missing image, corrupt copy)."""

    def __init__(self, message: str, *, snapshot_id: str | None = None) -> None:
        super().__init__(message)
        self.snapshot_id = snapshot_id


class UnsupportedOperation(SandboxError):
    """The backend does not implement this operation (e.g. ``exec`` on an in-process tool sandbox)."""

    def __init__(self, backend: str, operation: str, hint: str = "") -> None:
        message = f"{backend} sandboxes do not support {operation!r}."
        if hint:
            message += f" {hint}"
        super().__init__(message)
        self.backend = backend
        self.operation = operation


class WalkLimitError(SandboxError):
    """A workspace walk (digest or listing) stopped at a hard limit of entries, depth or time.

    The workspace is too big or too deep to hash or compare completely; nothing partial is returned.
    ``limit`` names which: ``"entries"``, ``"depth"`` or ``"seconds"``.
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class IncompleteListingError(SandboxError):
    """A workspace listing came back cut or without its end mark; it must not be compared."""
