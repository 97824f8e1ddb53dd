"""Exec driver: one long-lived process per worker container that runs commands, instead of a ``docker exec`` each.

A ``docker exec`` costs the daemon, containerd and runc about 160 ms of CPU on a 2-core machine (85 ms of
wall-clock), more than the command, the world reset and the digest together, which caps a 2-core host at
about a dozen execution verdicts per second however the work is arranged. A warm worker therefore keeps
one exec open: :data:`DRIVER` (``python3 -I -S``, standard library only) reads requests from the exec's
stdin and starts each command as its own child process, with exactly what a ``docker exec`` would give it:
the same argv (the command wrapper and the world reset of :mod:`sandboxes.docker` and
:mod:`sandboxes.worlds`, unchanged), user, working directory, environment (the container's plus the
request's) and stdin (the request's bytes, else ``/dev/null``); it relays stdout and stderr as they arrive
and reports the exit status as Docker does (``128 + n`` for signal *n*).

Trust. The driver runs as the command user, so a command can kill it: the host then sees the stream end
after the driver acknowledged the command, reports the status Docker reports for a killed process (137),
and the sandbox sweeps the user's processes from outside and starts a new driver (as for a killed
wrapper). The driver makes itself non-dumpable (``PR_SET_DUMPABLE=0``), so commands of the same user can
neither ``ptrace`` it nor open its ``/proc/<pid>/fd`` pipes. The wrapper's final sweep kills every process
of the user but itself, PID 1 and its parent (the driver), with the same guarantee as ``kill -9 -1``: no
process of the command writes after the wrapper's trailer. Nothing of the driver is in the world trees, so
digests and archives are the same as with ``docker exec``.

Protocol (all integers big-endian): a request is ``u32 n`` + ``n`` bytes of JSON (``argv``, ``env``, ``cwd``,
``stdin``: a byte count) + that many stdin bytes. Replies are messages ``tag (1 byte) + u32 n + n bytes``:
``R`` ready (payload: the driver's pid), ``S`` started, ``1`` stdout data, ``2`` stderr data, ``D`` the
workspace digest after the command (when the request asks with ``digest``: :func:`sandboxes.digest.tree`
run inside the driver, which saves an interpreter start per command), ``X`` exit status (ASCII), ``E``
the command could not be started (reason; the status 127 follows as ``X``). At start the driver reads its
own source and then the digest module's source from stdin (``u32`` length first); a request with
``helper`` (a list of arguments) runs that module's command line inside the driver (the listings and git
views the verifiers ask for), not a new ``python3``.
"""

from __future__ import annotations

import json
import logging
import select
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

#: The in-container side (run as ``python3 -I -S -c DRIVER``): see the module docstring.
DRIVER = r"""
import io, json, os, selectors, struct, subprocess, sys, threading
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE: no ptrace, no /proc/<pid>/fd for the user
except Exception:
    pass
inp, out = sys.stdin.buffer, sys.stdout.buffer
base = dict(os.environ)
def send(tag, data=b""):
    out.write(tag + struct.pack(">I", len(data)) + data)
    out.flush()
def exact(n):
    buf = bytearray()
    while len(buf) < n:
        chunk = inp.read(n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return bytes(buf)
def feed(pipe, data):
    try:
        pipe.write(data)
    except OSError:
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass
digest = {"__name__": "pivotrl_digest"}  # sandboxes/digest.py, sent by the host before the first request
exec(compile(exact(struct.unpack(">I", exact(4))[0]).decode(), "pivotrl-digest", "exec"), digest)
def helper(args):
    # sandboxes/digest.py's command line, run in this interpreter: its stdout and stderr are captured.
    so, se, ob, eb = sys.stdout, sys.stderr, io.BytesIO(), io.BytesIO()
    wo, we = io.TextIOWrapper(ob, write_through=True), io.TextIOWrapper(eb, write_through=True)
    sys.stdout, sys.stderr = wo, we
    try:
        rc = digest["main"](["digest.py", *args])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        sys.stderr.write(f"pivotrl-driver: {type(exc).__name__}: {exc}\n")
        rc = 1
    finally:
        sys.stdout, sys.stderr = so, se
        wo.detach()  # keep the buffers open when the wrappers go
        we.detach()
    send(b"S")
    for tag, data in ((b"1", ob.getvalue()), (b"2", eb.getvalue())):
        for i in range(0, len(data), 65536):
            send(tag, data[i:i + 65536])
    send(b"X", str(rc or 0).encode())
send(b"R", str(os.getpid()).encode())
while True:
    req = json.loads(exact(struct.unpack(">I", exact(4))[0]))
    if req.get("helper") is not None:
        helper(req["helper"])
        continue
    data = exact(req["stdin"]) if req["stdin"] else None
    env = dict(base)
    env.update(req["env"])
    try:
        proc = subprocess.Popen(req["argv"], cwd=req["cwd"], env=env, close_fds=True,
                                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        send(b"S")
        send(b"E", str(exc).encode())
        send(b"X", b"127")
        continue
    send(b"S")
    writer = None
    if data is not None:
        writer = threading.Thread(target=feed, args=(proc.stdin, data), daemon=True)
        writer.start()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, b"1")
    sel.register(proc.stderr, selectors.EVENT_READ, b"2")
    while sel.get_map():
        for key, _ in sel.select():
            chunk = os.read(key.fd, 65536)
            if chunk:
                send(key.data, chunk)
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()
    rc = proc.wait()
    if writer is not None:
        writer.join()
    if req.get("digest"):  # after the wrapper's sweep: no process of the command is left to change it
        try:
            send(b"D", digest["tree"](os.path.realpath("/workspace")).encode())
        except Exception:
            send(b"D", b"-")
    send(b"X", str(128 - rc if rc < 0 else rc).encode())
"""

#: What ``python3 -I -S -c`` runs (``pivotrl-driver N``): the driver's source comes on stdin, so ``ps`` shows one
#: short line.
BOOT = "import sys; exec(sys.stdin.buffer.read(int(sys.argv[2])))"

_MESSAGE = struct.Struct(">cI")
_FRAME = struct.Struct(">BxxxL")


class DriverGone(Exception):
    """The driver's stream ended. ``started``: after it had acknowledged the current command."""

    def __init__(self, message: str, *, started: bool):
        super().__init__(message)
        self.started = started


class Driver:
    """The host side of one container's driver exec (used by one thread at a time)."""

    def __init__(self, api: Any, container: str, *, user: str, python: tuple[str, ...], digest_source: str,
                 start_timeout_s: float = 20.0):
        source = DRIVER.encode()
        exec_id = api.exec_create(container, [*python, "-c", BOOT, "pivotrl-driver", str(len(source))], stdin=True, stdout=True,
                                  stderr=True, tty=False, user=user, workdir="/")["Id"]
        self.container = container
        self._sock = api.exec_start(exec_id, socket=True)
        self._raw = getattr(self._sock, "_sock", self._sock)
        digest = digest_source.encode()
        try:
            self._raw.sendall(source + struct.pack(">I", len(digest)) + digest)
        except OSError as exc:
            self.close()
            raise DriverGone(f"could not start the exec driver: {exc}", started=False) from exc
        self._frames = bytearray()  # Docker's multiplexed stream, not yet split into frames
        self._data = bytearray()  # the driver's stdout, not yet split into messages
        self._stderr = bytearray()  # the driver's own stderr (a traceback, "python3: not found")
        self.closed = False
        try:
            tag, payload = self._next(time.monotonic() + start_timeout_s)
        except DriverGone as exc:
            self.close()
            raise DriverGone(f"the exec driver did not start: {self._stderr[-300:].decode(errors='replace')}",
                             started=False) from exc
        if tag != b"R":
            self.close()
            raise DriverGone(f"the exec driver did not start (got {tag!r})", started=False)
        self.pid = int(payload)

    def alive(self) -> bool:
        """False when the stream has ended (a command killed the driver, or the container is gone)."""
        if self.closed:
            return False
        try:
            readable = select.select([self._raw], [], [], 0)[0]
        except (OSError, ValueError):
            return False
        if readable:  # between commands the driver writes nothing: readable means end of stream
            try:
                chunk = self._raw.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return False
            self._frames += chunk
        return True

    def run(self, argv: list[str], *, env: Mapping[str, str], cwd: str, stdin: bytes | None, deadline: float,
            on_frame: Callable[[int, bytes], None], digest: bool = False,
            helper: list[str] | None = None) -> tuple[bool, int, str | None]:
        """Run ``argv``, or with ``helper`` the digest module's command line with those arguments inside the
        driver; (finished before ``deadline``, exit status, the workspace digest after it when asked and
        taken, else None). :class:`DriverGone` when the stream ends."""
        header = json.dumps({"argv": argv, "env": dict(env), "cwd": cwd, "stdin": len(stdin or b""),
                             "digest": digest, "helper": helper}).encode()
        try:
            self._raw.sendall(struct.pack(">I", len(header)) + header + (stdin or b""))
        except OSError as exc:
            self.close()
            raise DriverGone(f"could not send a command to the driver: {exc}", started=False) from exc
        started, tree = False, None
        while True:
            try:
                message = self._next(deadline)
            except DriverGone as exc:
                exc.started = started
                raise
            if message is None:
                return False, -9, None
            tag, payload = message
            if tag == b"S":
                started = True
            elif tag in (b"1", b"2"):
                on_frame(int(tag), payload)
            elif tag == b"E":
                on_frame(2, b"pivotrl-driver: could not start the command: " + payload + b"\n")
            elif tag == b"D":
                tree = payload.decode() if payload != b"-" else None
            elif tag == b"X":
                return True, int(payload), tree

    def _next(self, deadline: float) -> tuple[bytes, bytes] | None:
        """The next message, or None at ``deadline``."""
        while True:
            self._split_frames()
            if len(self._data) >= _MESSAGE.size:
                tag, size = _MESSAGE.unpack_from(self._data)
                if len(self._data) >= _MESSAGE.size + size:
                    payload = bytes(self._data[_MESSAGE.size:_MESSAGE.size + size])
                    del self._data[:_MESSAGE.size + size]
                    return tag, payload
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                if not select.select([self._raw], [], [], min(remaining, 60.0))[0]:
                    continue
                chunk = self._raw.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                self.close()
                raise DriverGone("the driver's stream ended", started=False)
            self._frames += chunk

    def _split_frames(self) -> None:
        """Move whole frames of Docker's stream: stdout to the messages, stderr to the driver's own log."""
        while len(self._frames) >= _FRAME.size:
            stream, size = _FRAME.unpack_from(self._frames)
            if len(self._frames) < _FRAME.size + size:
                return
            payload = self._frames[_FRAME.size:_FRAME.size + size]
            if stream == 1:
                self._data += payload
            else:
                self._stderr = (self._stderr + payload)[-4096:]
            del self._frames[:_FRAME.size + size]

    def close(self) -> None:
        self.closed = True
        close_stream(self._sock)


def close_stream(sock: Any) -> None:
    """Close a socket from docker-py's ``exec_start(socket=True)``."""
    # The hijacked connection belongs to a requests response that docker-py parks on the socket object.
    for closable in (getattr(sock, "_response", None), sock):
        try:
            if closable is not None:
                closable.close()
        except (OSError, ValueError):
            pass  # closed already, by the other one
