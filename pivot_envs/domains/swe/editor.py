"""The file-editing tool of SWE agents, ``str_replace_editor``, run inside the sandbox.

The shape is the one SWE-agent's ``edit_anthropic`` bundle and OpenHands' ``str_replace_editor`` share
(itself Anthropic's text-editor tool), so released trajectories map onto it call for call:

* ``view``: a file with ``cat -n`` numbering (optionally ``view_range: [start, end]``, 1-based, ``-1`` =
  to the end), or a directory's files two levels deep (hidden ones left out);
* ``create``: a new file with ``file_text`` (an existing file is an error: edit it instead);
* ``str_replace``: replace ``old_str``, which must occur exactly once, by ``new_str`` (default empty);
* ``insert``: insert ``new_str`` after line ``insert_line`` (0 = at the top);
* ``undo_edit``: revert the last edit of ``path`` made with this tool.

How it runs. :data:`EDITOR_SCRIPT` is a fixed standard-library Python program; :func:`editor_command`
runs it with ``python3 -I -S`` (nothing the agent planted in the workspace, such as a ``json.py`` or a
``sitecustomize.py``, is imported) and hands it the arguments as base64-encoded JSON, so no argument is
ever interpolated into the shell. It runs through :meth:`~sandboxes.core.Sandbox.exec` like a ``bash``
call: in Docker it runs as the sandbox user, in the container, and the result is an ordinary
:class:`~sandboxes.core.ExecResult` (exit 0 and the text on stdout, or exit 1 and the error on stderr).

Paths: relative paths start at the workspace; absolute ones must lie under the workspace (the record's
``env.workdir``, ``/workspace``, ``/testbed`` and ``/repo`` name it). A path that leaves the workspace,
also through a symlink, is an error. The undo history is state: it lives in the workspace at
:data:`HISTORY_PATH` (the last :data:`HISTORY_DEPTH` versions per file), so a restored turn can undo an
edit made before it, exactly as a replay from turn 0 can.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Sequence
from typing import Any

from sandboxes.core import ExecResult, Sandbox

#: Tool names that mean this editor (SWE-agent, OpenHands, Anthropic spell it differently).
EDITOR_NAMES = ("str_replace_editor", "str_replace_based_edit_tool", "file_editor", "text_editor", "edit_file")
#: The editor's sub-commands.
COMMANDS = ("view", "create", "str_replace", "insert", "undo_edit")
#: Where the undo history lives, relative to the workspace (state, like the files it restores).
HISTORY_PATH = ".pivotrl/editor-history.json"
#: Versions kept per file for ``undo_edit``.
HISTORY_DEPTH = 5
#: Largest argument payload (JSON) the editor accepts: one shell argument is capped at 128 KiB by Linux.
MAX_PAYLOAD = 64 * 1024
#: Absolute prefixes that name the workspace besides the record's ``env.workdir``.
WORKDIR_ALIASES = ("/workspace", "/testbed", "/repo")

EDITOR_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "str_replace_editor",
        "description": (
            "View, create and edit files. `view` shows a file with line numbers (or a directory two levels "
            "deep); `create` writes a new file; `str_replace` replaces `old_str`, which must occur exactly "
            "once, by `new_str`; `insert` adds `new_str` after line `insert_line`; `undo_edit` reverts the "
            "last edit of `path`."),
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "enum": list(COMMANDS), "description": "The sub-command."},
                "path": {"type": "string", "description": "File or directory, relative to the workspace."},
                "file_text": {"type": "string", "description": "create: the new file's content."},
                "old_str": {"type": "string", "description": "str_replace: the exact text to replace."},
                "new_str": {"type": "string", "description": "str_replace / insert: the new text."},
                "insert_line": {"type": "integer", "description": "insert: the line after which to insert."},
                "view_range": {"type": "array", "items": {"type": "integer"},
                               "description": "view: [start, end] lines, 1-based; end -1 = to the end."},
            },
            "required": ["command", "path"],
        },
    },
}

# The program run inside the sandbox. Standard library only; reads its arguments from argv (base64 JSON
# chunks), works relative to its working directory (the workspace) and never follows a path out of it.
EDITOR_SCRIPT = r'''
import base64, json, os, sys
a = json.loads(base64.b64decode("".join(sys.argv[1:])).decode("utf-8"))
HIST, DEPTH = a["history"], a["depth"]
root = os.path.realpath(".")

def fail(msg):
    sys.stderr.write("Error: " + msg + "\n")
    sys.exit(1)

def resolve(p):
    if not isinstance(p, str) or not p.strip():
        fail("`path` must be a non-empty string, got %r" % (p,))
    p = p.strip()
    if os.path.isabs(p):
        for w in a["workdirs"]:
            w = w.rstrip("/")
            if w and (p == w or p.startswith(w + "/")):
                p = p[len(w):].lstrip("/") or "."
                break
        else:
            fail("%s is outside the workspace; use a path relative to it" % p)
    full = os.path.realpath(os.path.join(root, p))
    if full != root and not full.startswith(root + os.sep):
        fail("%s is outside the workspace; use a path relative to it" % p)
    rel = os.path.relpath(full, root)
    if rel.split(os.sep)[0] in (".git", ".pivotrl"):
        fail("%s is internal state of the repository or the tool, not an editable file" % p)
    return full, rel

def read(full, shown):
    try:
        with open(full, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        fail("the path %s does not exist" % shown)
    except IsADirectoryError:
        fail("%s is a directory; only `view` works on directories" % shown)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail("%s is not a UTF-8 text file" % shown)

def numbered(text, start=1):
    return "\n".join("%6d\t%s" % (i, line) for i, line in enumerate(text.split("\n"), start))

def load_hist():
    try:
        with open(HIST) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

def remember(rel, old):
    h = load_hist()
    h.setdefault(rel, []).append(old)
    h[rel] = h[rel][-DEPTH:]
    save_hist(h)

def save_hist(h):
    os.makedirs(os.path.dirname(HIST), exist_ok=True)
    with open(HIST, "w") as f:
        json.dump(h, f, sort_keys=True)

def write(full, text):
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8", newline="") as f:
        f.write(text)

def snippet(text, line, shown):
    lines = text.split("\n")
    lo, hi = max(0, line - 4), min(len(lines), line + 4)
    return ("The file %s has been edited. Here's the result of running `cat -n` on a snippet of %s:\n%s\n"
            "Review the changes and make sure they are as expected. Edit the file again if necessary."
            % (shown, shown, numbered("\n".join(lines[lo:hi]), lo + 1)))

cmd, shown = a.get("command"), a.get("path")
if cmd not in ("view", "create", "str_replace", "insert", "undo_edit"):
    fail("unknown command %r; expected one of view, create, str_replace, insert, undo_edit" % (cmd,))
full, rel = resolve(shown)
if cmd == "view":
    if os.path.isdir(full):
        if a.get("view_range") is not None:
            fail("`view_range` is not allowed when `path` is a directory")
        out = []
        for d, dirs, files in os.walk(full):
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            depth = os.path.relpath(d, full).count(os.sep) + (os.path.relpath(d, full) != ".")
            if depth >= 2:
                dirs[:] = []
            for x in sorted(dirs) + sorted(f for f in files if not f.startswith(".")):
                out.append(os.path.normpath(os.path.join(shown, os.path.relpath(os.path.join(d, x), full))))
        print("Here's the files and directories up to 2 levels deep in %s, excluding hidden items:\n%s"
              % (shown, "\n".join(sorted(out))))
        sys.exit(0)
    text = read(full, shown)
    lines = text.split("\n")
    vr = a.get("view_range")
    if vr is None:
        print("Here's the result of running `cat -n` on %s:\n%s" % (shown, numbered(text)))
        sys.exit(0)
    if (not isinstance(vr, list) or len(vr) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in vr)):
        fail("`view_range` must be a list of two integers [start, end], got %r" % (vr,))
    s, e = vr
    if not 1 <= s <= len(lines):
        fail("invalid `view_range` %r: start %d is not within the file's lines [1, %d]" % (vr, s, len(lines)))
    if e != -1 and not s <= e <= len(lines):
        fail("invalid `view_range` %r: end must be -1 or within [%d, %d]" % (vr, s, len(lines)))
    e = len(lines) if e == -1 else e
    print("Here's the result of running `cat -n` on %s:\n%s" % (shown, numbered("\n".join(lines[s - 1:e]), s)))
elif cmd == "create":
    text = a.get("file_text")
    if not isinstance(text, str):
        fail("create needs a string `file_text`")
    if os.path.lexists(full):
        fail("file already exists at %s; `create` cannot overwrite it, use `str_replace`" % shown)
    write(full, text)
    remember(rel, None)
    print("File created successfully at: %s" % shown)
elif cmd == "str_replace":
    old, new = a.get("old_str"), a.get("new_str", "")
    if not isinstance(old, str) or not old:
        fail("str_replace needs a non-empty string `old_str`")
    if not isinstance(new, str):
        fail("`new_str` must be a string")
    text = read(full, shown)
    n = text.count(old)
    if n == 0:
        fail("no replacement was performed: old_str `%s` did not appear verbatim in %s" % (old, shown))
    if n > 1:
        at = [i + 1 for i, line in enumerate(text.split("\n")) if old.split("\n")[0] in line]
        fail("no replacement was performed: old_str `%s` occurs %d times (lines %s); make it unique"
             % (old, n, at))
    result = text.replace(old, new, 1)
    write(full, result)
    remember(rel, text)
    print(snippet(result, text.split(old)[0].count("\n") + 1, shown))
elif cmd == "insert":
    line, new = a.get("insert_line"), a.get("new_str")
    if isinstance(line, bool) or not isinstance(line, int):
        fail("insert needs an integer `insert_line`")
    if not isinstance(new, str):
        fail("insert needs a string `new_str`")
    text = read(full, shown)
    lines = text.split("\n")
    if not 0 <= line <= len(lines):
        fail("invalid `insert_line` %d: it must be within [0, %d]" % (line, len(lines)))
    result = "\n".join(lines[:line] + new.split("\n") + lines[line:])
    write(full, result)
    remember(rel, text)
    print(snippet(result, line + 1, shown))
else:
    h = load_hist()
    if not h.get(rel):
        fail("no edit history found for %s" % shown)
    old = h[rel].pop()
    if not h[rel]:
        del h[rel]
    if old is None:
        os.remove(full)
    else:
        write(full, old)
    save_hist(h)
    print("Last edit to %s undone successfully." % shown)
'''


def editor_command(arguments: dict[str, Any], workdirs: Sequence[str] = WORKDIR_ALIASES) -> str | ExecResult:
    """The shell command that runs one editor call, or the error result when the arguments cannot be sent.

    The arguments travel as base64 (shell-safe letters only); the script itself is a constant.
    """
    payload = dict(arguments)
    payload.update(history=HISTORY_PATH, depth=HISTORY_DEPTH, workdirs=[w for w in workdirs if isinstance(w, str)])
    try:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        return ExecResult(1, stderr=f"Error: the editor's arguments are not JSON text ({type(exc).__name__}: {exc})")
    if len(data) > MAX_PAYLOAD:
        return ExecResult(1, stderr=f"Error: the editor's arguments are {len(data)} bytes, more than the {MAX_PAYLOAD} "
                                    "it accepts; create the file in smaller parts (create, then insert).")
    encoded = base64.b64encode(data).decode("ascii")
    return f"python3 -I -S -c {shlex.quote(EDITOR_SCRIPT)} {encoded}"


def run_editor(sandbox: Sandbox, arguments: dict[str, Any], *, workdir: str | None = None,
               timeout: float | None = None) -> ExecResult:
    """Run one ``str_replace_editor`` call in ``sandbox``; bad arguments give an error result, never raise."""
    workdirs = (workdir, *WORKDIR_ALIASES) if isinstance(workdir, str) and workdir else WORKDIR_ALIASES
    command = editor_command(arguments, workdirs)
    if isinstance(command, ExecResult):
        return command
    return sandbox.exec(command, timeout=timeout)


def editor_output(result: ExecResult) -> str:
    """The tool message text of an editor result: its output, or its error."""
    if result.timed_out:
        return "Error: the editor timed out"
    if result.exit_code == 0:
        return result.stdout.rstrip("\n")
    return (result.stderr or result.stdout or f"Error: exit code {result.exit_code}").rstrip("\n")


__all__ = ["COMMANDS", "EDITOR_NAMES", "EDITOR_SCRIPT", "EDITOR_TOOL", "HISTORY_PATH", "editor_command",
           "editor_output", "run_editor"]
