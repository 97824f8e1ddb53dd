"""Object sandbox: a world made of Python objects whose public methods are the agent's tools.

Stateful-API benchmarks describe their world as classes (a bank with accounts, a file system, a
messaging service) and their tasks as calls of those classes' methods. :class:`ObjectSandbox` turns such
a world into a sandbox with no extra code:

* **tools**: the public methods of the root objects, by method name (``bank.transfer`` is the tool
  ``transfer``), or an explicit ``{tool name: "root.method" or function(world, **kwargs)}`` mapping;
  arguments are bound to the method's signature, and a binding error, a :class:`~sandboxes.inprocess.ToolError`
  or any other exception the method raises is an error result, never an exception of the sandbox;
* **snapshot / restore / fork**: deep copies of the whole object graph (one :func:`copy.deepcopy` of the
  roots together, so references shared between roots stay shared); a snapshot never aliases the live world;
* **state digest**: sha256 over a canonical walk of the object graph (:func:`object_digest`): classes by
  module and qualified name, attributes from ``__dict__`` and ``__slots__`` in name order, dict items and
  set members sorted by their own encoding, floats by ``repr``, shared and cyclic references as
  back-references in walk order. It does not depend on ``id()``, hash seeds or insertion order of sets, so
  the same world has the same digest in every process.

Threat model: none, like :class:`~sandboxes.inprocess.InProcessSandbox`. The classes are the domain's own
trusted code; only the *arguments* (and the choice of tool) come from the model. The sandbox protects
against: calls of anything but the exposed tools (private names, attributes that are not methods, other
roots' internals), wrong or missing arguments, and exceptions escaping into the training loop. It does not
protect against a method that does something dangerous with a model-chosen value (``getattr(self, name)``,
``eval``, opening a path): write the world so its methods are safe for any JSON argument. Worlds must be
deep-copyable and hold no outside resources (open files, sockets, threads, locks); an object the digest
cannot read raises :class:`ObjectDigestError` naming its path, because a digest that skips part of the
world would let different worlds compare equal. A class can take charge of its own digest by defining
``__pivotrl_state__(self)``, returning the JSON-like value to hash instead of its attributes.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import decimal
import enum
import fractions
import hashlib
import inspect
import json
import logging
import math
import pathlib
import struct
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sandboxes.core import ExecResult, Sandbox, Snapshot
from sandboxes.errors import SandboxError, SnapshotError
from sandboxes.inprocess import ToolError

logger = logging.getLogger(__name__)

#: What the tools of an object world may be: a method path ``"root.method"`` or ``fn(world, **kwargs)``,
#: where ``world`` is the dict of root objects (``{"bank": <Bank>}``).
ObjectTool = str | Callable[..., Any]

#: How deep the digest walks before it gives up (deeper graphs are almost always a linked list of
#: thousands of nodes; raising beats a RecursionError halfway through).
MAX_DIGEST_DEPTH = 200

_ROOT = "world"


class ObjectDigestError(SandboxError):
    """The object graph holds something the digest cannot read (a lock, a file, a C object).

    ``path`` names where it is (``world.bank._lock``); define ``__pivotrl_state__`` on its class, or keep
    such resources out of the world.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


# ---------------------------------------------------------------------------------------------------
# The digest


# Values with a canonical text of their own (their repr/isoformat never depends on the process).
_TEXT_TYPES: tuple[type, ...] = (decimal.Decimal, fractions.Fraction, uuid.UUID, datetime.date, datetime.time,
                                 datetime.datetime, datetime.timedelta, pathlib.PurePath, complex, range)


class _Walker:
    """One canonical walk: writes a self-delimiting token stream of the graph into ``sink``."""

    def __init__(self, sink: Callable[[bytes], None]):
        self.sink = sink
        self.seen: dict[int, int] = {}  # id(obj) -> visit number (back-references)
        self.keep: list[Any] = []  # keeps visited objects alive so their ids are not reused mid-walk

    def text(self, tag: bytes, value: str) -> None:
        data = value.encode("utf-8", "surrogatepass")
        self.sink(tag + str(len(data)).encode() + b":" + data)

    def walk(self, obj: Any, path: str, depth: int = 0) -> None:
        if depth > MAX_DIGEST_DEPTH:
            raise ObjectDigestError(f"the object graph is deeper than {MAX_DIGEST_DEPTH} levels at {path}; flatten "
                                    "it, or define __pivotrl_state__ on the class", path=path)
        if obj is None or isinstance(obj, bool):
            self.sink(b"N" if obj is None else (b"T" if obj else b"F"))
            return
        if isinstance(obj, enum.Enum):
            self.text(b"e", f"{_class_name(type(obj))}.{obj.name}")
            return
        if type(obj) is int or isinstance(obj, int):
            self.text(b"i", str(int(obj)) if type(obj) is int else f"{_class_name(type(obj))}:{int(obj)}")
            return
        if isinstance(obj, float):
            # repr is the shortest text that round-trips: equal floats, equal text; -0.0 and nan stay distinct.
            self.text(b"f", repr(obj) if math.isfinite(obj) else struct.pack(">d", obj).hex())
            return
        if isinstance(obj, str):
            self.text(b"s", obj)
            return
        if isinstance(obj, (bytes, bytearray)):
            self.text(b"b", bytes(obj).hex())
            return
        if isinstance(obj, _TEXT_TYPES):
            self.text(b"v", f"{_class_name(type(obj))}:{obj!r}")
            return
        if isinstance(obj, tuple):
            # Not identity-tracked: equal tuples may or may not be one object (constants are shared), and
            # a tuple cannot hold itself without a mutable object in between, which is tracked.
            self.sink(b"U")
            if type(obj) is not tuple:
                self.text(b"c", _class_name(type(obj)))
            for i, item in enumerate(obj):
                self.walk(item, f"{path}[{i}]", depth + 1)
            self.sink(b"]")
            return
        # Mutable containers and objects: a second visit (shared reference or cycle) is a back-reference.
        key = id(obj)
        if key in self.seen:
            self.text(b"@", str(self.seen[key]))
            return
        self.seen[key] = len(self.seen)
        self.keep.append(obj)
        if isinstance(obj, list):
            self.sink(b"L")
            if type(obj) is not list:
                self.text(b"c", _class_name(type(obj)))
            for i, item in enumerate(obj):
                self.walk(item, f"{path}[{i}]", depth + 1)
            self.sink(b"]")
        elif isinstance(obj, Mapping):
            self.sink(b"D")
            if type(obj) is not dict:
                self.text(b"c", _class_name(type(obj)))
            # Keys are hashable, so usually immutable: encode each alone and sort by the encoding.
            items = sorted(((_encode(k, f"{path}.<key>"), k) for k in obj), key=lambda pair: pair[0])
            for encoded, k in items:
                self.sink(encoded)
                self.walk(obj[k], f"{path}[{k!r}]", depth + 1)
            self.sink(b"}")
        elif isinstance(obj, (set, frozenset)):
            self.sink(b"S" if isinstance(obj, set) else b"Z")
            for encoded in sorted(_encode(x, f"{path}.<member>") for x in obj):
                self.sink(encoded)
            self.sink(b")")
        else:
            self.obj(obj, path, depth)

    def obj(self, obj: Any, path: str, depth: int) -> None:
        cls = type(obj)
        custom = getattr(obj, "__pivotrl_state__", None)
        if callable(custom):
            self.text(b"O", _class_name(cls))
            self.walk(custom(), f"{path}.__pivotrl_state__()", depth + 1)
            self.sink(b">")
            return
        if inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj):
            # A function, class or module held as a value: part of the code, named, not walked.
            self.text(b"r", f"{getattr(obj, '__module__', '') or ''}:{getattr(obj, '__qualname__', repr(obj))}")
            return
        fields = _attributes(obj)
        if fields is None:
            raise ObjectDigestError(
                f"cannot digest {_class_name(cls)} at {path}: it has no __dict__ or __slots__ to read (an outside "
                "resource such as a lock, file or socket?); keep it out of the world or define "
                "__pivotrl_state__() on the class", path=path)
        self.text(b"O", _class_name(cls))
        for name in sorted(fields):
            self.text(b"a", name)
            self.walk(fields[name], f"{path}.{name}", depth + 1)
        self.sink(b">")


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _attributes(obj: Any) -> dict[str, Any] | None:
    """The instance attributes of ``obj`` (``__dict__`` plus filled ``__slots__``), or None if it has neither."""
    found: dict[str, Any] | None = None
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        found = dict(d)
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__")
        if slots is None:
            continue
        found = {} if found is None else found
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            attr = name if not name.startswith("__") or name.endswith("__") else f"_{klass.__name__.lstrip('_')}{name}"
            if hasattr(obj, attr):
                found[name] = getattr(obj, attr)
    return found


def _encode(value: Any, path: str) -> bytes:
    """The token stream of one value walked on its own (dict keys, set members)."""
    parts: list[bytes] = []
    _Walker(parts.append).walk(value, path)
    return b"".join(parts)


def object_digest(value: Any) -> str:
    """sha256 hex digest of the canonical walk of ``value`` (see the module docstring).

    >>> class Account:
    ...     def __init__(self, owner, balance):
    ...         self.owner, self.balance = owner, balance
    >>> a, b = Account("ann", 10.0), Account("ann", 10.0)
    >>> object_digest({"x": a}) == object_digest({"x": b})
    True
    >>> b.balance += 1
    >>> object_digest({"x": a}) == object_digest({"x": b})
    False

    Raises :class:`ObjectDigestError` for a part of the graph it cannot read.
    """
    h = hashlib.sha256()
    _Walker(h.update).walk(value, _ROOT)
    return h.hexdigest()


def _digest_and_size(value: Any) -> tuple[str, int]:
    """:func:`object_digest` of ``value`` and the length in bytes of the token stream it hashed (the
    object graph serialized canonically: what a snapshot of it holds, give or take Python's overhead)."""
    h = hashlib.sha256()
    size = 0

    def sink(data: bytes) -> None:
        nonlocal size
        size += len(data)
        h.update(data)

    _Walker(sink).walk(value, _ROOT)
    return h.hexdigest(), size


# ---------------------------------------------------------------------------------------------------
# Results


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A method's return value as JSON data: dataclasses and plain objects by their public attributes,
    sets sorted, enums by value. Deterministic, so replayed outputs compare equal to recorded ones."""
    if depth > 50:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, depth + 1)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_jsonable(v, depth + 1) for v in value]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True, ensure_ascii=False))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}
    fields = _attributes(value)
    if fields is not None and not inspect.isroutine(value):
        return {k: _jsonable(v, depth + 1) for k, v in sorted(fields.items()) if not k.startswith("_")}
    return str(value)


def _public_methods(obj: Any) -> list[str]:
    """Names of the public instance methods of ``obj``'s class (plain functions defined on the class)."""
    names = []
    for name in dir(type(obj)):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(type(obj), name)
        if inspect.isfunction(attr):
            names.append(name)
    return names


# ---------------------------------------------------------------------------------------------------
# The sandbox


class ObjectSandbox(Sandbox):
    """A world of Python objects; their public methods are the tools (see the module docstring).

    Args:
        world: One root object, or ``{name: object}`` for several. Taken over as is: the sandbox owns it
            (pass a fresh world, or a deep copy of a shared one).
        tools: ``None`` exposes every public method of every root under its method name (two roots with a
            method of the same name raise: name them in ``tools``). Or an explicit mapping from tool name to
            ``"root.method"`` or a function ``fn(world, **kwargs)`` taking the roots dict.

    >>> class Counter:
    ...     def __init__(self):
    ...         self.n = 0
    ...     def add(self, k: int) -> int:
    ...         self.n += k
    ...         return self.n
    >>> sb = ObjectSandbox(Counter())
    >>> sb.call_tool("add", {"k": 2}).stdout, sb.call_tool("add", {"j": 2}).exit_code
    ('2', 1)
    >>> snap = sb.snapshot(); _ = sb.call_tool("add", {"k": 5}); sb.restore(snap); sb.call_tool("add", {"k": 0}).stdout
    '2'
    """

    backend = "objects"
    capabilities = frozenset({"tools"})

    def __init__(self, world: Any, tools: Mapping[str, ObjectTool] | None = None):
        if world is None:
            raise ValueError("ObjectSandbox needs a world: an object, or a dict {name: object}")
        self.world: dict[str, Any] = dict(world) if isinstance(world, Mapping) else {_ROOT: world}
        self.tools: dict[str, ObjectTool] = dict(tools) if tools is not None else self._discover()
        for name, target in self.tools.items():
            if isinstance(target, str):
                self._resolve(name, target)  # fail now, with the name, not at the first call
            elif not callable(target):
                raise TypeError(f"tool {name!r}: expected 'root.method' or a function(world, **kwargs), "
                                f"got {type(target).__name__}")

    def _discover(self) -> dict[str, ObjectTool]:
        tools: dict[str, ObjectTool] = {}
        for root, obj in self.world.items():
            for method in _public_methods(obj):
                if method in tools:
                    raise ValueError(f"two roots offer a method {method!r} ({tools[method]} and {root}.{method}); "
                                     "pass tools={name: 'root.method', ...} to name them apart")
                tools[method] = f"{root}.{method}"
        return tools

    def _resolve(self, name: str, target: str) -> Callable[..., Any]:
        root, _, method = target.partition(".")
        if root not in self.world or not method or method.startswith("_"):
            raise ValueError(f"tool {name!r} -> {target!r}: expected 'root.method' with a root among "
                             f"{sorted(self.world)} and a public method")
        bound = getattr(self.world[root], method, None)
        if not callable(bound):
            raise ValueError(f"tool {name!r} -> {target!r}: {type(self.world[root]).__name__} has no method {method!r}")
        return bound

    @property
    def root(self) -> Any:
        """The single root object (for worlds built from one object)."""
        if len(self.world) != 1:
            raise AttributeError(f"this world has several roots: {sorted(self.world)}; use .world[name]")
        return next(iter(self.world.values()))

    def tool_names(self) -> list[str]:
        """The names the agent can call."""
        return sorted(self.tools)

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ExecResult:
        self._check_open()
        start = time.perf_counter()
        target = self.tools.get(name)
        if target is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return ExecResult(1, stderr=f"Error: unknown tool {name!r} (known tools: {known})")
        if not isinstance(arguments, dict):
            return ExecResult(1, stderr=f"Error: arguments must be a JSON object, got {type(arguments).__name__}")
        if isinstance(target, str):
            fn, bind_args = self._resolve(name, target), ()
        else:
            fn, bind_args = target, (self.world,)
        try:
            inspect.signature(fn).bind(*bind_args, **arguments)
        except TypeError as exc:
            return ExecResult(1, stderr=f"Error: bad arguments for {name}: {exc}", duration_s=time.perf_counter() - start)
        try:
            result = fn(*bind_args, **arguments)
        except ToolError as exc:
            return ExecResult(1, stderr=f"Error: {exc}", duration_s=time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - the world reports refusals by raising; a rollout never crashes
            return ExecResult(1, stderr=f"Error: {type(exc).__name__}: {exc}", duration_s=time.perf_counter() - start)
        text = result if isinstance(result, str) else json.dumps(_jsonable(result), sort_keys=True, ensure_ascii=False)
        return ExecResult(0, stdout=text, duration_s=time.perf_counter() - start)

    def snapshot(self) -> Snapshot:
        self._check_open()
        # The payload is a private deep copy: acting on the world afterwards cannot reach it, and restore
        # copies it again so that it is never handed out either. Its size is the length of the digest's
        # canonical encoding of the graph, counted in the same walk.
        digest, nbytes = _digest_and_size(self.world)
        return Snapshot(self.backend, digest, self._copy_world(), nbytes=nbytes)

    def restore(self, snapshot: Snapshot) -> None:
        self._check_open()
        if snapshot.backend != self.backend or not isinstance(snapshot.payload, dict):
            raise SnapshotError(f"cannot restore a {snapshot.backend!r} snapshot into an object sandbox")
        self.world = copy.deepcopy(snapshot.payload)

    def fork(self, n: int = 1) -> list[Sandbox]:
        self._check_open()
        forks: list[Sandbox] = []
        for _ in range(n):
            sb = ObjectSandbox.__new__(ObjectSandbox)
            sb.world, sb.tools = self._copy_world(), dict(self.tools)
            forks.append(sb)
        return forks

    def _copy_world(self) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.world)
        except Exception as exc:  # noqa: BLE001 - deepcopy raises TypeError, PicklingError, anything
            raise SnapshotError(f"the object world cannot be deep-copied ({type(exc).__name__}: {exc}); keep outside "
                                "resources (locks, files, sockets, generators) out of it") from exc

    def state_digest(self) -> str:
        self._check_open()
        return object_digest(self.world)

    def _close(self) -> None:
        self.world = {}
