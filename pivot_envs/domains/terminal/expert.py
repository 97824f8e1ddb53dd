"""A programmatic expert for the terminal domain: seeded workspaces and successful bash sessions.

Every record gets its own small workspace (files plus setup commands; git tasks get a repository with
history) and one task. The session is produced by actually running each command in a local sandbox
through :meth:`pivot_envs.domain.Domain.execute`, the executor the environment replays with, so every
recorded tool output is byte for byte what a restore reproduces. Each record's ``task.success.script``
(bash, exit 0 iff the task is done) is checked at generation time: it passes on the final workspace and
fails on the turn-0 one.

Task types (:data:`TASK_TYPES`, each with sub-variants cycled over the records): organise files (move by
extension, strip a name prefix, back up configs), rename an identifier across a code base, fix a wrong
value in an INI/JSON/YAML/.env config, log analysis (errors per component, 5xx count, busiest client,
errors across files), write an executable shell or Python script, git (fix and commit, commit on a new
branch, bump a version and tag), search (where is a function defined, which files have TODOs, delete
backup files, count files) and CSV processing (filter rows, totals per product, distinct values).

Variety, so a policy has something to generalise over:

* names, values, file contents and log lines are drawn from the record's seed;
* every step has several equivalent commands (``grep -c X f`` / ``grep X f | wc -l`` / ``awk``,
  ``sed -i`` / ``python3``, ``cat`` / ``head -n 50`` / ``sed -n``, ``git checkout -b`` / ``git switch -c``,
  heredoc / ``printf``, ``chmod +x`` / ``chmod 755``, single or double quotes, one or two commands);
* an inspection step before acting and a check afterwards appear on some records, not all; 3-8 assistant
  turns per record; hidden reasoning (``reasoning_content``) on some turns.

Determinism: no command prints times, PIDs, absolute paths, user names or ``ls -l`` columns; ``find``
and ``grep -r`` listings are sorted; git commits run with fixed author and committer dates (the system
prompt of git records asks for them), print no hashes (``-q``), and reflogs are off.

>>> records = generate(3, seed=0)
>>> [r["metadata"]["task_type"] for r in records]
['organize_files', 'rename_identifier', 'fix_config']
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pivot_envs.actions import ToolCall
from pivot_envs.domains.terminal import DOMAIN
from pivot_envs.domains.terminal.sandbox import local_sandbox
from pivot_envs.trajectory import save_trajectories

IMAGE = "pivotrl/sandbox:latest"
WORKDIR = "/workspace"

SYSTEM_PROMPT = (
    "You are a terminal agent working in a Linux shell (bash, coreutils, grep, sed, awk, find, git, "
    "python3). The current directory is the workspace: use relative paths. Run one command per turn with "
    "the bash tool, look before you change things, check your work, and finish with a short summary."
)
#: Fixed commit date, so that commits (and with them the workspace state) are reproducible.
GIT_DATE = "2024-06-01T12:00:00+00:00"
GIT_NOTE = (f" Commits must be reproducible: run git commit with GIT_AUTHOR_DATE and GIT_COMMITTER_DATE set "
            f"to {GIT_DATE}.")

BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a bash command in the workspace and return its output (stdout, then stderr).",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command line to run."}},
            "required": ["command"],
        },
    },
}

TASK_TYPES = ("organize_files", "rename_identifier", "fix_config", "log_analysis", "write_script", "git",
              "search", "csv")

PROJECTS = ["atlas", "beacon", "cobalt", "delta", "ember", "falcon", "garnet", "harbor", "juniper", "kestrel",
            "lumen", "mosaic", "nimbus", "orbit", "pylon", "quartz", "raven", "sierra", "tundra", "vertex"]
NOUNS = ["budget", "invoice", "roster", "metrics", "survey", "inventory", "payroll", "schedule", "contacts",
         "expenses", "forecast", "summary", "minutes", "backlog", "release", "audit", "campaign", "quotes"]
COMPONENTS = ["db", "auth", "cache", "api", "queue", "mailer", "scheduler", "storage", "billing", "search"]
CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "cyberdyne", "soylent",
             "tyrell", "vandelay"]
PRODUCTS = ["widget", "gadget", "gizmo", "sprocket", "doohickey", "flange"]
REGIONS = ["EU", "US", "APAC", "LATAM"]

# ---------------------------------------------------------------------------------------------------
# A session: messages plus the sandbox the commands run in


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Session:
    """One demonstration under construction; its commands run for real in a local sandbox."""

    def __init__(self, record_id: str, rng: random.Random, files: dict[str, str], setup: list[str], task: str,
                 *, git: bool = False):
        self.record_id, self.rng = record_id, rng
        self.env = {"sandbox": "docker", "image": IMAGE, "workdir": WORKDIR, "files": files, "setup": setup}
        self.sandbox = local_sandbox(self.env)
        self.initial = self.sandbox.fork(1)[0]
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT + (GIT_NOTE if git else "")},
            {"role": "user", "content": task},
        ]

    def run(self, command: str, why: str | None = None, *, ok: bool = True) -> str:
        """One assistant turn calling ``bash``, executed; returns the tool message text."""
        k = sum(m["role"] == "assistant" for m in self.messages)
        call_id = "call_" + _sha(f"{self.record_id}:{k}")[:8]
        call = ToolCall.from_parts("bash", {"command": command}, call_id)
        text, result = DOMAIN.execute(self.sandbox, call)
        if ok and not result.ok:
            raise RuntimeError(f"{self.record_id}: the expert's command {command!r} failed: {text!r}")
        msg: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call.to_openai(call_id)]}
        if why and self.rng.random() < 0.4:
            msg["reasoning_content"] = why
        self.messages += [msg, {"role": "tool", "tool_call_id": call_id, "content": text}]
        return text

    def maybe(self, p: float, command: str, why: str | None = None, *, ok: bool = True,
              last: bool = False) -> str | None:
        """Run ``command`` with probability ``p``; always when ``last`` and fewer than two commands ran,
        so every record has at least three assistant turns."""
        n_calls = sum(bool(m.get("tool_calls")) for m in self.messages)
        if self.rng.random() < p or (last and n_calls < 2):
            return self.run(command, why, ok=ok)
        return None

    def finish(self, summary: str, script: str, metadata: dict[str, Any]) -> dict[str, Any]:
        """The closing summary; checks the success script both ways and returns the record."""
        self.messages.append({"role": "assistant", "content": summary})
        n_turns = sum(m["role"] == "assistant" for m in self.messages)
        try:
            if not 3 <= n_turns <= 8:
                raise RuntimeError(f"{self.record_id}: {n_turns} assistant turns, expected 3 to 8")
            for sandbox, want in ((self.sandbox, True), (self.initial, False)):
                fork = sandbox.fork(1)[0]
                result = fork.exec(script, timeout=30)
                fork.close()
                if result.ok != want:
                    where = "at the end" if want else "at turn 0"
                    raise RuntimeError(f"{self.record_id}: the success script {'fails' if want else 'passes'} {where}: "
                                       f"{result.stdout}{result.stderr}")
        finally:
            self.sandbox.close()
            self.initial.close()
        return {
            "id": self.record_id,
            "domain": "terminal",
            "messages": self.messages,
            "tools": [copy.deepcopy(BASH_TOOL)],
            "env": self.env,
            "task": {"success": {"kind": "script", "script": script}},
            "metadata": metadata,
        }


def check_script(*, files: dict[str, str] | None = None, absent: Sequence[str] = (), only: Sequence[str] = (),
                 json_files: dict[str, Any] | None = None, answers: dict[str, list[str]] | None = None,
                 shell: Sequence[str] = ()) -> str:
    """A bash success script.

    Args:
        files: path -> exact content.
        absent: paths that must not exist.
        only: directories that must hold exactly the files of ``files`` under them, nothing else.
        json_files: path -> the value the file must parse to (formatting is free).
        answers: path -> accepted texts (compared without surrounding blank space or trailing spaces).
        shell: further bash lines, each ``condition || fail "why"``.
    """
    lines = ['fail() { echo "FAIL: $*" >&2; exit 1; }'] if shell else []
    checks: list[str] = []
    if files:
        checks += [f"files = {({p: _sha(c) for p, c in sorted(files.items())})!r}",
                   "for path, digest in files.items():",
                   "    if not os.path.isfile(path):",
                   "        bad.append(f'{path} is missing')",
                   "    elif hashlib.sha256(open(path, 'rb').read()).hexdigest() != digest:",
                   "        bad.append(f'{path} has the wrong content')"]
    if absent:
        checks += [f"bad += [f'{{p}} should not exist' for p in {sorted(absent)!r} if os.path.lexists(p)]"]
    for top in only:
        want = sorted(p for p in files or {} if p.startswith(top + "/"))
        checks += [f"found = sorted(os.path.join(d, f) for d, _, fs in os.walk({top!r}) for f in fs)",
                   f"if found != {want!r}:",
                   f"    bad.append(f'{top}/ holds {{found}}')"]
    for path, value in sorted((json_files or {}).items()):
        checks += [f"if not os.path.isfile({path!r}) or json.load(open({path!r})) != {value!r}:",
                   f"    bad.append('{path} does not hold the expected settings')"]
    for path, accepted in sorted((answers or {}).items()):
        checks += [f"text = open({path!r}).read() if os.path.isfile({path!r}) else ''",
                   f"if norm(text) not in {sorted({_norm(a) for a in accepted})!r}:",
                   f"    bad.append(f'{path} holds {{text!r}}')"]
    if checks:
        lines += ["python3 - <<'EOF' || exit 1", "import hashlib, json, os, sys", "",
                  "def norm(text):", "    return '\\n'.join(line.rstrip() for line in text.strip().splitlines())",
                  "", "bad = []", *checks, "print('\\n'.join(bad), file=sys.stderr)", "sys.exit(1 if bad else 0)",
                  "EOF"]
    return "\n".join(lines + list(shell)) + "\n"


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _listing(paths: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------------------------------
# Tasks: each builds a workspace, runs the session and returns the record


def organize_files(rid: str, rng: random.Random, variant: str) -> dict[str, Any]:
    if variant == "move_by_extension":
        src = rng.choice(["inbox", "downloads", "incoming", "uploads"])
        ext, *others = rng.sample(["csv", "json", "log", "md", "txt"], 3)
        dest = rng.choice(["archive/2024", f"data/{ext}", "reports/raw", "sorted"])
        names = rng.sample(NOUNS, rng.randint(5, 8))
        n_move = rng.randint(3, len(names) - 2)
        body = {"csv": "id,value\n{a},{b}\n", "json": '{{"id": {a}, "value": {b}}}\n', "log": "INFO job {a} took {b}s\n",
                "md": "# Note {a}\n\nValue: {b}\n", "txt": "item {a}: {b}\n"}
        files, moved, kept = {}, [], []
        for i, name in enumerate(names):
            e = ext if i < n_move else rng.choice(others)
            fname = f"{name}_{rng.randint(2019, 2024)}.{e}"
            files[f"{src}/{fname}"] = body[e].format(a=rng.randint(1, 99), b=rng.randint(100, 999))
            (moved if e == ext else kept).append(fname)
        moved.sort()
        task = rng.choice([
            f"Move every `.{ext}` file from `{src}/` into `{dest}/` (create it if needed). Leave the other files in `{src}/` alone.",
            f"Please tidy up `{src}/`: all the .{ext} files belong in `{dest}/`, which doesn't exist yet. Don't move anything else.",
            f"I need the .{ext} files out of {src}/ and in {dest}/. Only those; everything else stays where it is.",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.75, rng.choice([f"ls {src}", f"ls -1 {src}", f"find {src} -type f | sort", f"ls {src}/*.{ext}"]),
                f"Let me see what is in {src}/ before moving anything.")
        mkdir = f"mkdir -p {dest}" if "/" in dest else rng.choice([f"mkdir -p {dest}", f"mkdir {dest}"])
        move = rng.choice([f"mv {src}/*.{ext} {dest}/", f"mv {src}/*.{ext} {dest}",
                           f"find {src} -maxdepth 1 -name '*.{ext}' -exec mv {{}} {dest}/ \\;",
                           f'for f in {src}/*.{ext}; do mv "$f" {dest}/; done'])
        why = f"Create {dest}/ and move only the .{ext} files; a glob keeps the other extensions in place."
        if rng.random() < 0.3:
            s.run(mkdir, why)
            s.run(move)
        else:
            s.run(f"{mkdir} && {move}" if rng.random() < 0.7 else f"{mkdir}; {move}", why)
        s.maybe(0.7, rng.choice([f"ls {dest} {src}", f"find {src} {dest} -type f | sort", f"ls {dest}"]), last=True)
        expect = {f"{dest}/{f}": files[f"{src}/{f}"] for f in moved} | {f"{src}/{f}": files[f"{src}/{f}"] for f in kept}
        script = check_script(files=expect, absent=[f"{src}/{f}" for f in moved], only=[src, dest])
        summary = rng.choice([
            f"Moved the {len(moved)} .{ext} files ({_listing(moved)}) from `{src}/` into the new `{dest}/`; "
            f"the other {len(kept)} files are still in `{src}/`.",
            f"Done: `{dest}/` now holds {_listing(moved)}, and `{src}/` keeps only the non-.{ext} files.",
        ])
        return s.finish(summary, script, {})

    if variant == "strip_prefix":
        folder = rng.choice(["posts", "notes", "drafts", "chapters"])
        prefix = rng.choice(["draft-", "old_", "tmp-", "copy_of_"])
        ext = rng.choice(["md", "txt"])
        names = rng.sample(NOUNS, rng.randint(5, 7))
        n_prefixed = rng.randint(3, len(names) - 1)
        files, renamed, kept = {}, [], []
        for i, name in enumerate(names):
            fname = f"{prefix}{name}.{ext}" if i < n_prefixed else f"{name}.{ext}"
            files[f"{folder}/{fname}"] = f"{name.capitalize()}\n\nWritten by {rng.choice(CUSTOMERS)}.\n"
            (renamed if i < n_prefixed else kept).append(fname)
        renamed.sort()
        example = renamed[0]
        task = rng.choice([
            f"In `{folder}/`, rename every file whose name starts with `{prefix}` so that it loses that prefix "
            f"(`{folder}/{example}` becomes `{folder}/{example[len(prefix):]}`). Leave the other files as they are.",
            f"The files in {folder}/ named {prefix}*.{ext} should not have the `{prefix}` prefix any more. "
            f"Please rename them (keep the rest of each name).",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.8, rng.choice([f"ls {folder}", f"ls {folder}/{prefix}*", f"ls -1 {folder}"]),
                f"Check which files carry the {prefix} prefix and that no target name is taken.")
        s.run(rng.choice([
            f'for f in {folder}/{prefix}*; do mv "$f" "{folder}/${{f#{folder}/{prefix}}}"; done',
            f'cd {folder} && for f in {prefix}*; do mv -- "$f" "${{f#{prefix}}}"; done',
            f"python3 -c \"import glob, os; [os.rename(p, os.path.join('{folder}', os.path.basename(p)[{len(prefix)}:])) "
            f"for p in glob.glob('{folder}/{prefix}*')]\"",
            f"find {folder} -maxdepth 1 -name '{prefix}*' | while read -r f; do "
            f"mv \"$f\" \"{folder}/$(basename \"$f\" | sed 's/^{prefix}//')\"; done",
        ]), f"Strip the leading `{prefix}` from each matching name with one loop.")
        s.maybe(0.75, rng.choice([f"ls {folder}", f"ls -1 {folder}", f"find {folder} -type f | sort"]), last=True)
        expect = {f"{folder}/{f[len(prefix):]}": files[f"{folder}/{f}"] for f in renamed}
        expect |= {f"{folder}/{f}": files[f"{folder}/{f}"] for f in kept}
        script = check_script(files=expect, absent=[f"{folder}/{f}" for f in renamed], only=[folder])
        summary = (f"Renamed {len(renamed)} files in `{folder}/` to drop the `{prefix}` prefix: "
                   + ", ".join(f"`{f}` -> `{f[len(prefix):]}`" for f in renamed) + ". The other files are unchanged.")
        return s.finish(summary, script, {})

    # backup_copies
    folder = rng.choice(["etc", "config", "conf.d"])
    names = rng.sample(COMPONENTS, rng.randint(2, 4))
    files = {f"{folder}/{n}.conf": f"# {n} settings\nenabled = {rng.choice(['yes', 'no'])}\nlimit = {rng.randint(1, 64)}\n"
             for n in names}
    files[f"{folder}/README"] = "Configuration files, one per service.\n"
    if rng.random() < 0.5:
        files[f"{folder}/{rng.choice(PROJECTS)}.service"] = "[Unit]\nDescription=demo\n"
    confs = sorted(p for p in files if p.endswith(".conf"))
    task = rng.choice([
        f"Before I edit anything, back up every `.conf` file in `{folder}/`: copy each to the same name with `.bak` "
        f"appended (`{confs[0]}` -> `{confs[0]}.bak`). Don't change the originals.",
        f"Make a .bak copy next to each .conf file in {folder}/ (e.g. {confs[0]}.bak). Other files need no backup.",
    ])
    s = Session(rid, rng, files, [], task)
    s.maybe(0.7, rng.choice([f"ls {folder}", f"ls {folder}/*.conf", f"find {folder} -name '*.conf' | sort"]),
            "List the .conf files first.")
    s.run(rng.choice([
        f'for f in {folder}/*.conf; do cp "$f" "$f.bak"; done',
        f'for f in {folder}/*.conf; do cp -- "$f" "${{f}}.bak"; done',
        f"find {folder} -name '*.conf' -exec cp {{}} {{}}.bak \\;",
        f"python3 -c \"import glob, shutil; [shutil.copyfile(p, p + '.bak') for p in glob.glob('{folder}/*.conf')]\"",
    ]), "Copy each .conf to <name>.conf.bak in place.")
    s.maybe(0.8, rng.choice([f"ls {folder}", f"ls {folder}/*.bak", f"find {folder} -type f | sort"]), last=True)
    expect = dict(files) | {f"{p}.bak": files[p] for p in confs}
    script = check_script(files=expect, only=[folder])
    summary = f"Backed up {len(confs)} config files: " + ", ".join(f"`{p}.bak`" for p in confs) + ". The originals are untouched."
    return s.finish(summary, script, {})


RENAMES = [("fetch_rows", "load_rows"), ("get_user", "find_user"), ("calc_total", "compute_total"),
           ("parse_cfg", "parse_config"), ("send_msg", "send_message"), ("make_conn", "open_connection"),
           ("to_str", "format_value"), ("chk_input", "validate_input")]


def rename_identifier(rid: str, rng: random.Random, variant: str) -> dict[str, Any]:
    old, new = rng.choice(RENAMES)
    pkg = rng.choice(PROJECTS)
    base = f"src/{pkg}"
    files = {
        f"{base}/__init__.py": f'"""The {pkg} package."""\n',
        f"{base}/core.py": (f'"""Core helpers for {pkg}."""\n\n\ndef {old}(items):\n'
                            f'    """Return the items that are set."""\n    return [item for item in items if item]\n'),
        f"{base}/cli.py": (f"import sys\n\nfrom {pkg}.core import {old}\n\n\ndef main(argv=None):\n"
                           f"    args = sys.argv[1:] if argv is None else argv\n    print(len({old}(args)))\n"),
        f"{base}/util.py": "def clamp(value, low, high):\n    return max(low, min(high, value))\n",
        "docs/CHANGELOG.md": f"# Changelog\n\n## 0.{rng.randint(2, 9)}.0\n\n- Added `{old}`.\n",
    }
    users = ["cli.py"]
    if variant == "three_files":
        files[f"{base}/report.py"] = (f"from {pkg}.core import {old}\n\n\ndef summary(rows):\n"
                                      f"    kept = {old}(rows)\n    return f\"{{len(kept)}} of {{len(rows)}} rows\"\n")
        users.append("report.py")
    if rng.random() < 0.5:
        files["README.md"] = f"# {pkg}\n\nUse `{pkg}.core.{old}` to filter rows.\n"
    touched = sorted([f"{base}/core.py"] + [f"{base}/{u}" for u in users])
    task = rng.choice([
        f"Rename the function `{old}` to `{new}` everywhere under `src/` (its definition and every import and call). "
        f"Leave `docs/` alone: the changelog must keep the old name.",
        f"Please rename `{old}` -> `{new}` in the code under src/. Only src/; don't edit docs or the README.",
    ])
    s = Session(rid, rng, files, [], task)
    s.maybe(0.85, rng.choice([f"grep -rn {old} src | sort", f"grep -rln {old} src | sort", f"grep -n {old} {base}/*.py",
                              f"grep -c {old} {base}/*.py"]),
            f"Find every use of {old} under src/ before editing.")
    expr = rng.choice([f"s/{old}/{new}/g", f"s/\\b{old}\\b/{new}/g"])
    quote = rng.choice(["'", '"'])
    s.run(rng.choice([
        f"sed -i {quote}{expr}{quote} " + " ".join(touched),
        f"grep -rl {old} src | xargs sed -i {quote}{expr}{quote}",
        f"find src -name '*.py' -exec sed -i {quote}{expr}{quote} {{}} +",
        f"python3 -c \"import pathlib; [p.write_text(p.read_text().replace('{old}', '{new}')) "
        f"for p in pathlib.Path('src').rglob('*.py') if '{old}' in p.read_text()]\"",
    ]), f"Replace {old} with {new} in the Python files under src/ only.")
    s.maybe(0.8, rng.choice([f"grep -rn {new} src | sort", f"grep -rc {old} src | sort", f"grep -rn {old} . | sort",
                             f"grep -rn '{old}\\|{new}' src docs | sort"]), last=True)
    expect = {p: (c.replace(old, new) if p.startswith("src/") else c) for p, c in files.items()}
    script = check_script(files=expect, only=["src", "docs"])
    summary = (f"Renamed `{old}` to `{new}` in {len(touched)} files under src/ ({_listing(touched)}). "
               f"`docs/CHANGELOG.md` still mentions `{old}`, as asked.")
    return s.finish(summary, script, {})


def _faults(rng: random.Random) -> list[tuple[str, str, Any, Any, str]]:
    port = rng.choice([8000, 8080, 8443, 9000])
    workers = rng.choice([2, 4, 8])
    host = rng.choice([("localhots", "localhost"), ("db.interal", "db.internal"), ("postgress", "postgres")])
    level = rng.choice(["info", "warning", "debug"])
    ttl = rng.choice([60, 300, 900])
    return [
        ("server", "port", port * 10, port, f"port out of range: {port * 10}"),
        ("server", "workers", 0, workers, "workers must be at least 1, got 0"),
        ("database", "host", host[0], host[1], f"could not resolve host '{host[0]}'"),
        ("logging", "level", "verbose", level, "unknown log level 'verbose'"),
        ("cache", "ttl", -ttl, ttl, f"cache ttl must be positive, got {-ttl}"),
    ]


def _render(fmt: str, cfg: dict[str, dict[str, Any]], pkg: str) -> str:
    if fmt == "json":
        return json.dumps(cfg, indent=2) + "\n"
    if fmt == "ini":
        return f"# {pkg} settings\n" + "\n".join(
            f"[{sec}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) for sec, kv in cfg.items())
    if fmt == "yaml":
        return f"# {pkg} settings\n" + "".join(
            f"{sec}:\n" + "".join(f"  {k}: {v}\n" for k, v in kv.items()) for sec, kv in cfg.items())
    return f"# {pkg} environment\n" + "".join(f"{sec.upper()}_{k.upper()}={v}\n" for sec, kv in cfg.items() for k, v in kv.items())


def fix_config(rid: str, rng: random.Random, variant: str) -> dict[str, Any]:
    pkg = rng.choice(PROJECTS)
    fmt = variant
    section, key, bad, good, symptom = rng.choice(_faults(rng))
    cfg = {
        "server": {"host": "0.0.0.0", "port": rng.choice([8000, 8080, 8443, 9000]), "workers": rng.choice([2, 4, 8])},
        "database": {"host": "localhost", "port": 5432, "name": f"{pkg}_prod", "pool_size": rng.choice([5, 10, 20])},
        "logging": {"level": "info", "file": f"/var/log/{pkg}.log"},
        "cache": {"enabled": "true" if fmt != "json" else True, "ttl": 300},
    }
    good_cfg = copy.deepcopy(cfg)
    good_cfg[section][key] = good
    bad_cfg = copy.deepcopy(cfg)
    bad_cfg[section][key] = bad
    path = {"ini": rng.choice(["config/app.ini", f"config/{pkg}.ini"]),
            "json": rng.choice(["config/settings.json", f"config/{pkg}.json"]),
            "yaml": rng.choice(["config/app.yaml", "config/deploy.yml"]),
            "env": rng.choice(["config/app.env", "config/production.env"])}[fmt]
    defaults = f"config/defaults.{fmt}"
    files = {path: _render(fmt, bad_cfg, pkg), defaults: _render(fmt, cfg, pkg),
             "README.md": f"# {pkg}\n\nSettings live in `{path}`; `{defaults}` holds the shipped defaults.\n"}
    env_key = f"{section.upper()}_{key.upper()}"
    where = f"`{env_key}` in `{path}`" if fmt == "env" else f"`{key}` in the `{section}` section of `{path}`"
    task = rng.choice([
        f"{where} is set to `{bad}`, but it must be `{good}`. Please fix it and leave everything else unchanged.",
        f"The {pkg} service won't start; it logs \"{symptom}\". The right value is {good}. "
        f"Find the bad setting in config/ and fix it. Don't touch the defaults file.",
    ])
    s = Session(rid, rng, files, [], task)
    grep_key = env_key if fmt == "env" else key
    inspect = [f"cat {path}", f"head -n 40 {path}", f"sed -n '1,40p' {path}", f"grep -rn {grep_key} config | sort",
               f"grep -rn -e '{bad}' config | sort"]
    s.maybe(0.85, rng.choice(inspect), f"Look at the config to find the {key} line and its current value.")
    if fmt == "ini":
        edits = [f"sed -i 's/^{key} = {bad}$/{key} = {good}/' {path}",
                 f"sed -i '/^\\[{section}\\]/,/^\\[/ s/^{key} = .*/{key} = {good}/' {path}",
                 f"python3 -c \"import pathlib; p = pathlib.Path('{path}'); "
                 f"p.write_text(p.read_text().replace('{key} = {bad}', '{key} = {good}'))\""]
    elif fmt == "yaml":
        edits = [f"sed -i 's/^  {key}: {bad}$/  {key}: {good}/' {path}", f'sed -i "s/{key}: {bad}/{key}: {good}/" {path}',
                 f"python3 -c \"import pathlib; p = pathlib.Path('{path}'); "
                 f"p.write_text(p.read_text().replace('  {key}: {bad}', '  {key}: {good}'))\""]
    elif fmt == "env":
        edits = [f"sed -i 's/^{env_key}={bad}$/{env_key}={good}/' {path}", f"sed -i 's/^{env_key}=.*/{env_key}={good}/' {path}",
                 f"python3 -c \"import pathlib; p = pathlib.Path('{path}'); "
                 f"p.write_text(p.read_text().replace('{env_key}={bad}', '{env_key}={good}'))\""]
    else:
        jb, jg = json.dumps(bad), json.dumps(good)
        edits = [f"sed -i 's/\"{key}\": {jb}/\"{key}\": {jg}/' {path}",
                 f"python3 - <<'EOF'\nimport json\n\nwith open('{path}') as f:\n    cfg = json.load(f)\n"
                 f"cfg['{section}']['{key}'] = {good!r}\nwith open('{path}', 'w') as f:\n    json.dump(cfg, f, indent=2)\n"
                 f"    f.write('\\n')\nEOF"]
    s.run(rng.choice(edits), f"Change only the {section}.{key} value from {bad} to {good}.")
    if fmt == "json":
        verify = [f"python3 -m json.tool {path}", f"python3 -c \"import json; print(json.load(open('{path}'))['{section}']['{key}'])\"",
                  f"grep -n '\"{key}\"' {path}"]
    else:
        verify = [f"grep -n {grep_key} {path}", f"cat {path}", f"diff {defaults} {path}"]
    check = rng.choice(verify)
    s.maybe(0.75, check, ok=not check.startswith("diff"), last=True)  # diff exits 1 when the files differ
    if fmt == "json":
        script = check_script(json_files={path: good_cfg}, files={defaults: files[defaults]})
    else:
        script = check_script(files={path: _render(fmt, good_cfg, pkg), defaults: files[defaults]})
    summary = rng.choice([
        f"Fixed {where}: it was `{bad}` and is now `{good}`. Nothing else changed.",
        f"The bad setting was {section}.{key} = {bad} in `{path}`; I set it to {good}. `{defaults}` is untouched.",
    ])
    return s.finish(summary, script, {"format": fmt})


LOG_MESSAGES = {
    "INFO": ["request served in {n}ms", "job {n} finished", "connected to upstream", "cache warmed with {n} keys",
             "user session started"],
    "WARN": ["slow response: {n}ms", "retrying after {n}ms", "disk usage at {n}%", "deprecated option used"],
    "ERROR": ["ConnectionTimeout: no reply after {n}ms", "PermissionDenied: cannot open spool file",
              "KeyError: missing field id", "DiskFull: {n} bytes requested", "RateLimited: {n} requests per minute"],
    "DEBUG": ["payload size {n}", "lock acquired", "queue depth {n}"],
}


def _app_log(rng: random.Random, components: list[str], n: int, day: int) -> list[str]:
    lines, seconds = [], rng.randint(0, 3600)
    weights = {"INFO": 50, "WARN": 18, "ERROR": 22, "DEBUG": 10}
    for _ in range(n):
        seconds += rng.randint(1, 90)
        level = rng.choices(list(weights), list(weights.values()))[0]
        h, m, sec = 8 + seconds // 3600, seconds // 60 % 60, seconds % 60
        msg = rng.choice(LOG_MESSAGES[level]).format(n=rng.randint(2, 999))
        lines.append(f"2024-03-{day:02d} {h:02d}:{m:02d}:{sec:02d} {level} [{rng.choice(components)}] {msg}")
    return lines


def _access_log(rng: random.Random, n: int, ips: list[str], weights: list[int]) -> list[str]:
    paths = ["/", "/api/orders", "/api/users", "/login", "/static/app.js", "/api/search", "/health"]
    statuses = [200] * 14 + [201, 204, 301, 304, 400, 401, 404, 404, 500, 502, 503]
    lines, seconds = [], rng.randint(0, 3600)
    for _ in range(n):
        seconds += rng.randint(1, 40)
        ip = rng.choices(ips, weights)[0]
        method = rng.choice(["GET", "GET", "GET", "POST"])
        h, m, sec = 10 + seconds // 3600, seconds // 60 % 60, seconds % 60
        lines.append(f'{ip} - - [05/Mar/2024:{h:02d}:{m:02d}:{sec:02d} +0000] "{method} {rng.choice(paths)} HTTP/1.1" '
                     f"{rng.choice(statuses)} {rng.randint(120, 9000)}")
    return lines


def log_analysis(rid: str, rng: random.Random, variant: str) -> dict[str, Any]:
    if variant == "errors_by_component":
        log = rng.choice(["logs/app.log", "var/log/service.log", "app.log"])
        components = rng.sample(COMPONENTS, 4)
        while True:
            lines = _app_log(rng, components, rng.randint(30, 55), rng.randint(1, 28))
            counts = Counter(line.split()[3].strip("[]") for line in lines if line.split()[2] == "ERROR")
            if len(counts) >= 2:
                break
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        out = rng.choice(["report.txt", "errors_by_component.txt", "reports/errors.txt"])
        files = {log: "\n".join(lines) + "\n"}
        task = rng.choice([
            f"Count the ERROR lines in `{log}` per component (the name in square brackets) and write them to `{out}`, "
            f"one `<component> <count>` per line, most errors first (ties in alphabetical order).",
            f"Which components log the most errors? From {log}, write `{out}` with lines like `db 7` "
            f"(component, space, number of ERROR lines), sorted by count descending, then by name.",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.8, rng.choice([f"head -n 5 {log}", f"tail -n 5 {log}", f"grep ERROR {log} | head -n 5", f"wc -l {log}"]),
                "Look at the log format: the level is field 3, the component field 4 in brackets.")
        s.maybe(0.35, rng.choice([f"grep -c ERROR {log}", f"grep ERROR {log} | wc -l", f"awk '$3 == \"ERROR\"' {log} | wc -l"]))
        mk = "mkdir -p reports && " if out.startswith("reports/") else ""
        s.run(mk + rng.choice([
            f"grep ' ERROR ' {log} | awk '{{print $4}}' | tr -d '[]' | sort | uniq -c | sort -k1,1nr -k2,2 | awk '{{print $2, $1}}' > {out}",
            f"awk '$3 == \"ERROR\" {{c[substr($4, 2, length($4) - 2)]++}} END {{for (k in c) print k, c[k]}}' {log} | sort -k2,2nr -k1,1 > {out}",
            f"python3 - <<'EOF'\nfrom collections import Counter\n\ncounts = Counter()\nwith open('{log}') as f:\n"
            f"    for line in f:\n        parts = line.split()\n        if parts[2] == 'ERROR':\n"
            f"            counts[parts[3].strip('[]')] += 1\nwith open('{out}', 'w') as f:\n"
            f"    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):\n        f.write(f'{{name}} {{n}}\\n')\nEOF",
        ]), "Count ERROR lines per bracketed component, sort by count then name.")
        s.maybe(0.85, rng.choice([f"cat {out}", f"head -n 20 {out}"]), last=True)
        answer = "\n".join(f"{c} {n}" for c, n in ranked)
        script = check_script(answers={out: [answer]}, files={log: files[log]})
        summary = (f"Wrote `{out}`: " + ", ".join(f"{c} {n}" for c, n in ranked)
                   + f" ({sum(counts.values())} ERROR lines in total).")
        return s.finish(summary, script, {})

    if variant == "errors_across_files":
        components = rng.sample(COMPONENTS, 3)
        names = rng.sample(["api", "worker", "web", "cron", "gateway"], rng.randint(2, 3))
        files, total = {}, 0
        for name in sorted(names):
            lines = _app_log(rng, components, rng.randint(12, 25), rng.randint(1, 28))
            total += sum(line.split()[2] == "ERROR" for line in lines)
            files[f"logs/{name}.log"] = "\n".join(lines) + "\n"
        out = rng.choice(["answer.txt", "error_total.txt"])
        task = rng.choice([
            f"How many ERROR lines are there in all the `.log` files under `logs/` together? Write just the number to `{out}`.",
            f"Count the ERROR entries across every log in logs/ (all files combined) and put the total in {out}.",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.8, rng.choice(["ls logs", "grep -c ERROR logs/*.log", "wc -l logs/*.log"]), "See which log files there are.")
        s.run(rng.choice([f"cat logs/*.log | grep -c ERROR > {out}", f"grep -h ERROR logs/*.log | wc -l > {out}",
                          f"awk '$3 == \"ERROR\"' logs/*.log | wc -l > {out}",
                          f"grep -ch ' ERROR ' logs/*.log | awk '{{s += $1}} END {{print s}}' > {out}"]),
              "Sum the ERROR lines over all files into one number.")
        s.maybe(0.8, f"cat {out}", last=True)
        script = check_script(answers={out: [str(total)]})
        summary = f"There are {total} ERROR lines across {len(names)} log files; I wrote {total} to `{out}`."
        return s.finish(summary, script, {})

    ips = [f"10.0.{rng.randint(0, 9)}.{rng.randint(2, 254)}" for _ in range(5)]
    ips = sorted(set(ips))
    log = rng.choice(["logs/access.log", "access.log", "nginx/access.log"])
    out = "answer.txt"
    if variant == "count_5xx":
        while True:
            lines = _access_log(rng, rng.randint(25, 45), ips, [5] * len(ips))
            n5 = sum(line.split()[8].startswith("5") for line in lines)
            if n5:
                break
        files = {log: "\n".join(lines) + "\n"}
        task = rng.choice([
            f"How many requests in `{log}` got a 5xx status (server error)? Write just the number to `{out}`.",
            f"Count the server errors (HTTP status 500-599) in {log} and save the count to {out}.",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.8, rng.choice([f"head -n 3 {log}", f"awk '{{print $9}}' {log} | sort | uniq -c"]),
                "Check which field holds the status code.")
        s.run(rng.choice([f"awk '$9 >= 500' {log} | wc -l > {out}", f"grep -cE '\" 5[0-9]{{2}} ' {log} > {out}",
                          f"awk '$9 ~ /^5/ {{n++}} END {{print n + 0}}' {log} > {out}",
                          f"cut -d' ' -f9 {log} | grep -c '^5' > {out}"]),
              "Status is field 9; count the ones starting with 5.")
        s.maybe(0.8, f"cat {out}", last=True)
        script = check_script(answers={out: [str(n5)]})
        summary = f"{n5} of the {len(lines)} requests in `{log}` returned a 5xx status; `{out}` contains {n5}."
        return s.finish(summary, script, {})

    # busiest_client
    while True:
        weights = [rng.randint(1, 6) for _ in ips]
        lines = _access_log(rng, rng.randint(25, 45), ips, weights)
        counts = Counter(line.split()[0] for line in lines).most_common()
        if len(counts) == 1 or counts[0][1] > counts[1][1]:
            break
    top, n_top = counts[0]
    files = {log: "\n".join(lines) + "\n"}
    task = rng.choice([
        f"Which client IP made the most requests in `{log}`? Write the IP address to `{out}`.",
        f"Find the busiest client (the IP with the most requests) in {log} and put its address in {out}.",
    ])
    s = Session(rid, rng, files, [], task)
    s.maybe(0.5, rng.choice([f"head -n 3 {log}", f"wc -l {log}"]), "Client IP is the first field.")
    if rng.random() < 0.6:
        s.run(rng.choice([f"awk '{{print $1}}' {log} | sort | uniq -c | sort -rn | head -n 3",
                          f"cut -d' ' -f1 {log} | sort | uniq -c | sort -rn | head -n 3"]),
              "Count requests per IP and look at the top.")
        s.run(rng.choice([f"echo {top} > {out}", f"printf '%s\\n' {top} > {out}", f"echo '{top}' > {out}"]))
    else:
        s.run(rng.choice([f"awk '{{print $1}}' {log} | sort | uniq -c | sort -rn | head -n 1 | awk '{{print $2}}' > {out}",
                          f"cut -d' ' -f1 {log} | sort | uniq -c | sort -k1,1nr | awk 'NR == 1 {{print $2}}' > {out}"]),
              "Count per IP and keep only the busiest one.")
    s.maybe(0.8, f"cat {out}", last=True)
    script = check_script(answers={out: [top]})
    summary = f"The busiest client is {top} with {n_top} of {len(lines)} requests; I wrote it to `{out}`."
    return s.finish(summary, script, {})


def _write_file(rng: random.Random, path: str, text: str) -> str:
    """A command that writes ``text`` to ``path`` (heredoc, or printf when the lines allow it)."""
    folder = path.rsplit("/", 1)[0]
    mk = rng.choice([f"mkdir -p {folder} && ", f"mkdir -p {folder}; "]) if "/" in path else ""
    lines = text.rstrip("\n").split("\n")
    if rng.random() < 0.35 and all("'" not in line and "%" not in line and "\\" not in line for line in lines):
        return mk + "printf '%s\\n' " + " ".join(f"'{line}'" for line in lines) + f" > {path}"
    delim = rng.choice(["EOF", "'EOF'"]) if not any(c in text for c in "$`\\") else "'EOF'"
    return mk + f"cat > {path} <<{delim}\n{text.rstrip(chr(10))}\nEOF"


def write_script(rid: str, rng: random.Random, variant: str) -> dict[str, Any]:
    shebang = rng.choice(["#!/bin/bash", "#!/usr/bin/env bash"])
    chmod = rng.choice(["chmod +x", "chmod 755", "chmod u+x", "chmod a+x"])
    if variant == "count_nonempty":
        path = rng.choice(["bin/count_lines.sh", "scripts/nonempty.sh", "tools/count.sh"])
        sample = rng.choice(["notes/todo.txt", "data/list.txt"])
        items = rng.sample(NOUNS, rng.randint(4, 8))
        body_lines: list[str] = []
        for item in items:
            body_lines.append(f"- {item}")
            if rng.random() < 0.4:
                body_lines.append("")
        files = {sample: "\n".join(body_lines) + "\n\n"}
        body = rng.choice(['grep -c . "$1"', "grep -cv '^$' \"$1\"", "awk 'NF' \"$1\" | wc -l", "sed '/^$/d' \"$1\" | wc -l"])
        tests = [("alpha\\n\\nbeta\\ngamma\\n\\n", "3"), ("\\n\\n", "0"), ("one line\\n", "1")]
        task = rng.choice([
            f"Write a bash script `{path}` that prints the number of non-empty lines in the file given as its first "
            f"argument, and make it executable. You can try it on `{sample}`.",
            f"I need an executable shell script at {path}: `{path} FILE` should print how many lines of FILE are not empty. "
            f"{sample} is a sample file.",
        ])
        expected_sample = str(len(items))
    elif variant == "sum_column":
        path = rng.choice(["tools/sum_column.py", "bin/colsum.py", "scripts/total.py"])
        sample = "data/payments.csv"
        rows = [(i + 1, rng.choice(CUSTOMERS), rng.randint(100, 99999) / 100) for i in range(rng.randint(4, 8))]
        files = {sample: "id,customer,amount\n" + "".join(f"{i},{c},{a:.2f}\n" for i, c, a in rows)}
        shebang = "#!/usr/bin/env python3"
        body = rng.choice([
            'import csv\nimport sys\n\nwith open(sys.argv[1], newline="") as f:\n'
            '    total = sum(float(row[sys.argv[2]]) for row in csv.DictReader(f))\nprint(f"{total:.2f}")',
            "import sys\n\npath, column = sys.argv[1], sys.argv[2]\nwith open(path) as f:\n"
            "    header = f.readline().strip().split(\",\")\n    index = header.index(column)\n    total = 0.0\n"
            "    for line in f:\n        if line.strip():\n            total += float(line.strip().split(\",\")[index])\n"
            "print(\"%.2f\" % total)",
        ])
        tests = [("id,amount,qty\\n1,10.50,2\\n2,4.25,1\\n", "14.75", "amount"), ("id,amount,qty\\n1,10.50,2\\n2,4.25,1\\n", "3.00", "qty")]
        task = rng.choice([
            f"Write a Python script `{path}` that takes a CSV file and a column name and prints the sum of that column "
            f"with two decimals (e.g. `./{path} {sample} amount`). Make it executable so it runs as `./{path}`.",
            f"Please add an executable python3 script {path}: given a CSV path and a column name, print the column's "
            f"total with 2 decimals. Try it on {sample}.",
        ])
        expected_sample = f"{sum(round(a * 100) for _, _, a in rows) / 100:.2f}"
    else:  # dedupe
        path = rng.choice(["bin/dedupe.sh", "scripts/uniq_lines.sh", "tools/dedupe.sh"])
        sample = "data/emails.txt"
        people = rng.sample(CUSTOMERS, rng.randint(4, 6))
        seq = people + [rng.choice(people) for _ in range(rng.randint(2, 4))]
        rng.shuffle(seq)
        files = {sample: "".join(f"{p}@example.com\n" for p in seq)}
        body = rng.choice(["awk '!seen[$0]++' \"$1\"", "cat -n \"$1\" | sort -k2 -u | sort -n | cut -f2-"])
        tests = [("b\\na\\nb\\nc\\na\\n", "b\\na\\nc")]
        task = rng.choice([
            f"Write an executable bash script `{path}` that prints the lines of the file given as its first argument "
            f"without duplicates, keeping the first occurrence of each line in its original order. Try it on `{sample}`.",
            f"Create {path} (executable): it should print FILE's lines with repeats removed, first occurrences kept, "
            f"order preserved. {sample} has some duplicates to test with.",
        ])
        expected_sample = "\n".join(dict.fromkeys(f"{p}@example.com" for p in seq))
    source = f"{shebang}\n{body}\n"
    s = Session(rid, rng, files, [], task)
    s.maybe(0.6, rng.choice(["ls", f"cat {sample}", f"head -n 5 {sample}"]), "Look at the sample input first.")
    write = _write_file(rng, path, source)
    why = f"Write the script with a {shebang} line, then make it executable."
    if rng.random() < 0.5:
        s.run(f"{write} && {chmod} {path}" if "<<" not in write else f"{write}\n{chmod} {path}", why)
    else:
        s.run(write, why)
        s.run(f"{chmod} {path}")
    out = s.run(f"./{path} {sample}" + (" amount" if variant == "sum_column" else ""), "Try it on the sample.")
    if out.strip() != expected_sample:
        raise RuntimeError(f"{rid}: the script printed {out!r}, expected {expected_sample!r}")
    shell = [f"test -x {path} || fail '{path} is not executable'", 't=$(mktemp -d)']
    for i, test in enumerate(tests):
        data, want = test[0], test[1]
        arg = f" {test[2]}" if len(test) > 2 else ""
        shell += [f"printf '{data}' > \"$t/in{i}\"",
                  f"test \"$(./{path} \"$t/in{i}\"{arg})\" = \"$(printf '{want}')\" || fail 'wrong output for test {i}'"]
    script = check_script(shell=shell)
    shown = out.strip().replace("\n", ", ")
    summary = rng.choice([
        f"Created `{path}` and made it executable. On `{sample}` it prints: {shown}.",
        f"`{path}` is in place ({shebang}, executable). Running it on `{sample}` gives {shown}.",
    ])
    return s.finish(summary, script, {})


#: misspelling, correct word, a README sentence with the misspelling
TYPOS = [("recieve", "receive", "Workers recieve jobs from the queue."),
         ("seperate", "separate", "Keep test data in a seperate folder."),
         ("occured", "occurred", "Errors that occured are written to the log."),
         ("enviroment", "environment", "Create a virtual enviroment first."),
         ("dependancy", "dependency", "Every dependancy is pinned."),
         ("definately", "definitely", "You definately need Python 3.11 or newer."),
         ("accomodate", "accommodate", "The schema can accomodate new fields."),
         ("wich", "which", "Pick the profile wich fits your setup.")]


def _git_setup(commits: list[tuple[list[str], str]]) -> list[str]:
    setup = ["git init -q -b main && git config user.name 'Sam Dev' && git config user.email sam@example.com "
             "&& git config core.logAllRefUpdates false"]
    for day, (paths, message) in enumerate(commits, start=1):
        date = f"2024-05-{day:02d}T09:00:00+00:00"
        setup.append(f"git add {' '.join(paths)} && GIT_AUTHOR_DATE={date} GIT_COMMITTER_DATE={date} "
                     f"git commit -qm '{message}'")
    return setup


def _commit(rng: random.Random, message: str, add: str | None) -> str:
    dates = f"GIT_AUTHOR_DATE={GIT_DATE} GIT_COMMITTER_DATE={GIT_DATE}"
    options = [f"{dates} git commit -qam '{message}'", f"export {dates}; git commit -q -a -m \"{message}\""]
    if add:
        options = [f"git add {add} && {dates} git commit -qm '{message}'", f"git add {add} && env {dates} git commit -q -m \"{message}\""]
    return rng.choice(options)


def git_task(rid: str, rng: random.Random, variant: str) -> dict[str, Any]:
    pkg = rng.choice(PROJECTS)
    files = {
        ".gitignore": "__pycache__/\n*.pyc\n",
        f"src/{pkg}/__init__.py": f'"""The {pkg} package."""\n',
        f"src/{pkg}/main.py": f"def main():\n    print('{pkg} {rng.randint(1, 9)}')\n",
    }
    if variant == "fix_typo_commit":
        bad, good, sentence = rng.choice(TYPOS)
        readme = f"# {pkg}\n\nA small tool that processes records.\n\n## Setup\n\n{sentence}\n"
        if rng.random() < 0.5:
            readme += f"\n## Glossary\n\n- {bad}: see Setup.\n"
        files["README.md"] = readme
        setup = _git_setup([(["README.md", ".gitignore"], "Initial commit"), (["src"], f"Add {pkg} package")])
        message = rng.choice(["Fix typo in README", f"docs: fix spelling of {good}", f"Fix {bad} typo"])
        task = rng.choice([
            f"There's a typo in README.md: \"{bad}\" should be \"{good}\". Fix every occurrence and commit the fix "
            f"with the message \"{message}\".",
            f"Please correct the misspelling `{bad}` -> `{good}` in the README and commit it as \"{message}\".",
        ])
        s = Session(rid, rng, files, setup, task, git=True)
        s.maybe(0.8, rng.choice(["git status", f"grep -n {bad} README.md", "git log --format=%s",
                                 f"git status --short && grep -n {bad} README.md"]), "Check the repository state and the typo.")
        s.run(rng.choice([f"sed -i 's/{bad}/{good}/g' README.md", f'sed -i "s/{bad}/{good}/g" README.md',
                          f"python3 -c \"import pathlib; p = pathlib.Path('README.md'); "
                          f"p.write_text(p.read_text().replace('{bad}', '{good}'))\""]),
              f"Replace every {bad} with {good}.")
        s.maybe(0.6, rng.choice(["git diff", "git diff --stat", f"grep -n {good} README.md"]))
        s.run(_commit(rng, message, rng.choice(["README.md", None])))
        s.maybe(0.8, rng.choice(["git log --format=%s -n 3", "git status --short && git log -1 --format=%s",
                                 "git show --stat --format=%s HEAD"]), last=True)
        fixed = readme.replace(bad, good)
        shell = [f"test \"$(git log -1 --format=%s)\" = '{message}' || fail 'last commit message'",
                 "test \"$(git rev-list --count HEAD)\" = 3 || fail 'expected exactly one new commit'",
                 "test -z \"$(git status --porcelain --untracked-files=no)\" || fail 'uncommitted changes'",
                 f"test \"$(git show HEAD:README.md | sha256sum | cut -d' ' -f1)\" = {_sha(fixed)} || fail 'README content'"]
        summary = f"Fixed \"{bad}\" -> \"{good}\" in README.md ({_count(readme.count(bad), 'occurrence')}) and committed it as \"{message}\"."
        return s.finish(summary, check_script(shell=shell), {})

    if variant == "branch_commit":
        topic = rng.choice(["install", "usage", "faq", "deploy", "testing"])
        path = rng.choice([f"docs/{topic}.md", f"guides/{topic}.md"])
        files["README.md"] = f"# {pkg}\n\nSee the docs folder.\n"
        files[path] = f"# {topic.capitalize()}\n\nHow to handle {topic} for {pkg}.\n"
        setup = _git_setup([(["README.md", ".gitignore", "src"], "Initial commit")])
        branch = rng.choice([f"feature/{topic}-docs", f"docs/{topic}", f"add-{topic}-guide"])
        message = rng.choice([f"Add {topic} guide", f"docs: add {topic} page"])
        task = rng.choice([
            f"Create a new branch `{branch}` off main and commit the new file `{path}` (it is untracked right now) "
            f"on that branch with the message \"{message}\". Leave main unchanged.",
            f"Please put `{path}` on a new branch named {branch} (from main) as a single commit, \"{message}\". "
            f"main itself must not change.",
        ])
        s = Session(rid, rng, files, setup, task, git=True)
        s.maybe(0.8, rng.choice(["git status --short", "git status", "git branch"]), "See what is untracked and where HEAD is.")
        switch = rng.choice([f"git checkout -b {branch}", f"git switch -c {branch}"])
        commit = _commit(rng, message, path)
        if rng.random() < 0.3:
            s.run(f"{switch} && {commit}", "Branch off main, then add and commit the file there.")
        else:
            s.run(switch, "Branch off main first so main stays unchanged.")
            s.run(commit)
        s.maybe(0.8, rng.choice([f"git log --format=%s main..{branch}", "git branch", "git log --format=%s -n 2",
                                 "git status --short && git branch"]), last=True)
        shell = [f"git rev-parse -q --verify refs/heads/{branch} >/dev/null || fail 'no branch {branch}'",
                 f"test \"$(git log -1 --format=%s {branch})\" = '{message}' || fail 'commit message'",
                 f"test \"$(git rev-list --count main..{branch})\" = 1 || fail 'expected one commit on the branch'",
                 f"test \"$(git rev-list --count {branch}..main)\" = 0 || fail 'branch is not based on main'",
                 "test \"$(git rev-list --count main)\" = 1 || fail 'main changed'",
                 f"test \"$(git show {branch}:{path} | sha256sum | cut -d' ' -f1)\" = {_sha(files[path])} || fail 'file content'"]
        summary = f"Created branch `{branch}` from main and committed `{path}` on it as \"{message}\"; main is unchanged."
        return s.finish(summary, check_script(shell=shell), {})

    # release_tag
    major, minor, patch = rng.randint(0, 3), rng.randint(0, 9), rng.randint(0, 9)
    old = f"{major}.{minor}.{patch}"
    new = rng.choice([f"{major}.{minor}.{patch + 1}", f"{major}.{minor + 1}.0"])
    second = rng.choice(["pyproject.toml", f"src/{pkg}/__init__.py"])
    files["VERSION"] = old + "\n"
    files["pyproject.toml"] = f'[project]\nname = "{pkg}"\nversion = "{old}"\ndependencies = ["requests>=2.31"]\n'
    if second != "pyproject.toml":
        files["pyproject.toml"] = f'[project]\nname = "{pkg}"\ndynamic = ["version"]\n'
        files[second] = f'"""The {pkg} package."""\n\n__version__ = "{old}"\n'
    files["README.md"] = f"# {pkg}\n"
    setup = _git_setup([(["README.md", ".gitignore", "pyproject.toml"], "Initial commit"),
                        (["src", "VERSION"], f"Release {old}")])
    message = f"Release {new}"
    tag = f"v{new}"
    task = rng.choice([
        f"Release {new}: bump the version from {old} to {new} in `VERSION` and `{second}`, commit with the message "
        f"\"{message}\" and tag that commit `{tag}`.",
        f"Please bump our version {old} -> {new} (it's in VERSION and {second}), commit it as \"{message}\" "
        f"and add the tag {tag} on that commit.",
    ])
    s = Session(rid, rng, files, setup, task, git=True)
    old_re = old.replace(".", "\\.") if rng.random() < 0.5 else old
    s.maybe(0.85, rng.choice([f"git grep -n {old}", f"grep -n {old} VERSION {second}", "cat VERSION", "git log --format='%s%d'"]),
            "Find every place the old version appears.")
    s.run(rng.choice([f"sed -i 's/{old_re}/{new}/' VERSION {second}", f'sed -i "s/{old_re}/{new}/" VERSION {second}',
                      f"python3 -c \"import pathlib\nfor name in ('VERSION', '{second}'):\n    p = pathlib.Path(name)\n"
                      f"    p.write_text(p.read_text().replace('{old}', '{new}'))\""]),
          f"Bump {old} to {new} in both files.")
    s.maybe(0.5, rng.choice(["git diff --stat", f"git grep -n {new}", "git status --short"]))
    commit = _commit(rng, message, rng.choice([f"VERSION {second}", None]))
    tag_cmd = rng.choice([f"git tag {tag}", f"GIT_COMMITTER_DATE={GIT_DATE} git tag -a {tag} -m '{message}'"])
    if rng.random() < 0.4:
        s.run(f"{commit} && {tag_cmd}", "Commit the bump and tag it in one go.")
    else:
        s.run(commit, "Commit the version bump.")
        s.run(tag_cmd, f"Tag the release commit as {tag}.")
    s.maybe(0.8, rng.choice(["git log --format='%s%d' -n 2", "git tag", "git show --stat --format=%s HEAD"]), last=True)
    shell = [f"test \"$(git log -1 --format=%s)\" = '{message}' || fail 'commit message'",
             f"test \"$(git rev-parse '{tag}^{{commit}}')\" = \"$(git rev-parse HEAD)\" || fail 'tag is not on HEAD'",
             f"test \"$(git show HEAD:VERSION)\" = '{new}' || fail 'VERSION not bumped'",
             f"git show HEAD:{second} | grep -qF '\"{new}\"' || fail '{second} not bumped'",
             f"if git grep -qF '{old}' HEAD; then fail 'old version left'; fi",
             "test \"$(git rev-list --count HEAD)\" = 3 || fail 'expected exactly one new commit'",
             "test -z \"$(git status --porcelain --untracked-files=no)\" || fail 'uncommitted changes'"]
    summary = f"Bumped {old} -> {new} in `VERSION` and `{second}`, committed it as \"{message}\" and tagged it `{tag}`."
    return s.finish(summary, check_script(shell=shell), {})


FUNCTIONS = ["load_config", "parse_header", "merge_records", "render_table", "normalize_name", "hash_password",
             "send_email", "retry_call", "split_batches", "read_manifest", "format_bytes", "validate_token"]


def search(rid: str, rng: random.Random, variant: str) -> dict[str, Any]:
    pkg = rng.choice(PROJECTS)
    if variant == "find_definition":
        modules = rng.sample(["io", "net", "text", "auth", "store", "cli", "report"], rng.randint(4, 5))
        fns = rng.sample(FUNCTIONS, len(modules) * 2)
        files, owner = {}, {}
        for i, mod in enumerate(modules):
            sub = rng.choice(["", "utils/"])
            path = f"src/{pkg}/{sub}{mod}.py"
            mine = fns[2 * i : 2 * i + 2]
            other = rng.choice([f for f in fns if f not in mine])
            files[path] = "".join(f"def {fn}(value):\n    return value\n\n\n" for fn in mine).rstrip("\n") + \
                f"\n\n\ndef _use_{mod}(x):\n    return {other}(x)\n"
            for fn in mine:
                owner[fn] = path
        target = rng.choice(fns)
        out = rng.choice(["answer.txt", "location.txt"])
        task = rng.choice([
            f"Which file under `src/` defines the function `{target}`? Write its path (like `src/...`) to `{out}`.",
            f"Find where `{target}` is defined in this code base and put the file's relative path in {out}.",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.3, rng.choice(["find src -name '*.py' | sort", f"ls src/{pkg}"]), "Get an overview of the sources.")
        if rng.random() < 0.7:
            s.run(rng.choice([f"grep -rn 'def {target}' src", f"grep -rln 'def {target}(' src",
                              f"grep -rn --include='*.py' \"def {target}\\b\" src"]),
                  f"Search for the definition, not the call sites of {target}.")
            s.run(rng.choice([f"echo {owner[target]} > {out}", f"printf '%s\\n' {owner[target]} > {out}"]))
        else:
            s.run(f"grep -rl 'def {target}(' src > {out}", "grep -l on the def line gives exactly the defining file.")
        s.run(f"cat {out}")
        script = check_script(answers={out: [owner[target], "./" + owner[target]]})
        return s.finish(f"`{target}` is defined in `{owner[target]}`; I wrote that path to `{out}`.", script, {})

    if variant == "todo_list":
        top = rng.choice(["project", "app", pkg])
        names = rng.sample(["main.py", "db.py", "api.py", "README.md", "setup.sh", "utils/strings.py", "utils/time.py",
                            "tests/test_api.py", "docs/design.md"], rng.randint(6, 8))
        files, marked = {}, []
        for i, name in enumerate(names):
            has = i < rng.randint(2, 4)
            note = f"# TODO: {rng.choice(['handle errors', 'add tests', 'remove this hack', 'document'])}\n" if has else ""
            files[f"{top}/{name}"] = f"# {name}\n{note}value = {rng.randint(1, 99)}\n"
            if has:
                marked.append(f"{top}/{name}")
        marked.sort()
        out = rng.choice(["todo_files.txt", "todos.txt"])
        task = rng.choice([
            f"List every file under `{top}/` that contains `TODO`, one path per line, sorted, in `{out}`.",
            f"Which files in {top}/ still have TODO markers? Write their paths (sorted, one per line) to {out}.",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.7, rng.choice([f"grep -rn TODO {top} | sort", f"grep -rc TODO {top} | sort"]), "See where the TODOs are.")
        s.run(rng.choice([f"grep -rl TODO {top} | sort > {out}", f"grep -rl 'TODO' {top} | sort -o {out}",
                          f"find {top} -type f -exec grep -l TODO {{}} + | sort > {out}"]),
              "grep -l lists each file once; sort for a stable order.")
        s.maybe(0.85, f"cat {out}", last=True)
        script = check_script(answers={out: ["\n".join(marked)]})
        return s.finish(f"{len(marked)} files contain TODO: {_listing(marked)}. The sorted list is in `{out}`.", script, {})

    if variant == "cleanup_backups":
        top = rng.choice(["site", "web", "content"])
        dirs = ["", "css/", "js/", "pages/"]
        files, junk = {}, []
        for name in rng.sample(["index.html", "about.html", "style.css", "app.js", "blog.html", "nav.js", "print.css"], 5):
            d = {"html": "pages/" if rng.random() < 0.5 else "", "css": "css/", "js": "js/"}[name.rsplit(".", 1)[1]]
            path = f"{top}/{d}{name}"
            files[path] = f"/* {name} */\n"
            if rng.random() < 0.6:
                j = path + rng.choice([".bak", "~"])
                files[j] = f"/* old {name} */\n"
                junk.append(j)
        if not junk:
            j = f"{top}/{rng.choice(dirs)}notes.txt.bak"
            files[j] = "old\n"
            junk.append(j)
        files[f"{top}/backup_policy.txt"] = "Backups live elsewhere.\n"
        task = rng.choice([
            f"Delete every editor backup file under `{top}/` (names ending in `.bak` or `~`), at any depth. Keep everything else.",
            f"Clean {top}/ of backup files: remove all *.bak and *~ files in it and its subdirectories, nothing else.",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.8, rng.choice([f"find {top} -name '*.bak' -o -name '*~' | sort", f"find {top} -type f | sort"]),
                "List what would be deleted before deleting.")
        s.run(rng.choice([f"find {top} -type f \\( -name '*.bak' -o -name '*~' \\) -delete",
                          f"find {top} \\( -name '*.bak' -o -name '*~' \\) -exec rm -- {{}} +",
                          f"find {top} -name '*.bak' -delete && find {top} -name '*~' -delete",
                          f"find {top} -type f -name '*.bak' -print0 | xargs -0 rm -f && find {top} -type f -name '*~' -exec rm -f {{}} \\;"]),
              "Match both patterns with find and delete only those files.")
        s.maybe(0.8, rng.choice([f"find {top} -type f | sort", f"find {top} -name '*.bak' -o -name '*~' | wc -l"]), last=True)
        keep = {p: c for p, c in files.items() if p not in junk}
        script = check_script(files=keep, absent=junk, only=[top])
        return s.finish(f"Deleted {len(junk)} backup files ({_listing(sorted(junk))}); {len(keep)} files remain in `{top}/`.",
                        script, {})

    # count_files
    top = rng.choice(["lib", "packages", "modules"])
    ext = rng.choice(["py", "js", "sh"])
    files, n = {}, 0
    for d in rng.sample(["", "core/", "core/io/", "plugins/", "plugins/extra/", "tests/"], 4):
        for name in rng.sample(NOUNS, rng.randint(1, 3)):
            e = ext if rng.random() < 0.6 else rng.choice([x for x in ("py", "js", "sh", "md", "txt") if x != ext])
            path = f"{top}/{d}{name}.{e}"
            if path not in files:
                files[path] = f"# {name}\n"
                n += e == ext
    if n == 0:
        files[f"{top}/extra.{ext}"] = "# extra\n"
        n = 1
    out = "answer.txt"
    task = rng.choice([
        f"How many `.{ext}` files are there under `{top}/`, counting subdirectories? Write just the number to `{out}`.",
        f"Count the .{ext} files in {top}/ (recursively) and put the count in {out}.",
    ])
    s = Session(rid, rng, files, [], task)
    s.maybe(0.6, rng.choice([f"find {top} -type d | sort", f"ls {top}", f"find {top} -type f | sort"]), "Look at the layout.")
    s.run(rng.choice([f"find {top} -type f -name '*.{ext}' | wc -l > {out}", f"find {top} -name '*.{ext}' | wc -l > {out}",
                      f"python3 -c \"import pathlib; print(len(list(pathlib.Path('{top}').rglob('*.{ext}'))))\" > {out}"]),
          f"Count recursively with a name pattern; {top} has nested directories.")
    s.run(f"cat {out}")
    script = check_script(answers={out: [str(n)]})
    return s.finish(f"There are {n} .{ext} files under `{top}/`; `{out}` contains {n}.", script, {})


def csv_task(rid: str, rng: random.Random, variant: str) -> dict[str, Any]:
    if variant in ("filter_region", "totals_by_product"):
        data = "data/sales.csv"
        regions = rng.sample(REGIONS, 3)
        products = rng.sample(PRODUCTS, 4)
        rows = [(f"2024-0{rng.randint(1, 9)}-{rng.randint(10, 28)}", rng.choice(regions), rng.choice(products),
                 rng.randint(1, 40), f"{rng.randint(100, 5000) / 100:.2f}") for _ in range(rng.randint(10, 18))]
        header = "date,region,product,units,unit_price"
        lines = [header] + [",".join(map(str, r)) for r in rows]
        files = {data: "\n".join(lines) + "\n"}
        if variant == "filter_region":
            region = rng.choice(sorted({r[1] for r in rows}))
            out = rng.choice([f"{region.lower()}_sales.csv", f"reports/{region.lower()}.csv"])
            want = [header] + [line for line, r in zip(lines[1:], rows, strict=True) if r[1] == region]
            task = rng.choice([
                f"Write the rows of `{data}` for region `{region}` to `{out}`, keeping the header line and the original order.",
                f"I need just the {region} sales: copy the header and every {region} row of {data} into {out}.",
            ])
            s = Session(rid, rng, files, [], task)
            s.maybe(0.8, rng.choice([f"head -n 5 {data}", f"head -n 3 {data}", f"cut -d, -f2 {data} | sort | uniq -c"]),
                    "Check the column order: region is column 2.")
            mk = "mkdir -p reports && " if out.startswith("reports/") else ""
            s.run(mk + rng.choice([
                f"awk -F, 'NR == 1 || $2 == \"{region}\"' {data} > {out}",
                f"{{ head -n 1 {data}; grep ',{region},' {data}; }} > {out}",
                f"python3 - <<'EOF'\nimport csv\n\nwith open('{data}', newline='') as f, open('{out}', 'w', newline='') as g:\n"
                f"    reader = csv.reader(f)\n    writer = csv.writer(g, lineterminator='\\n')\n    writer.writerow(next(reader))\n"
                f"    writer.writerows(row for row in reader if row[1] == '{region}')\nEOF",
            ]), f"Keep line 1 and the rows whose second field is {region}.")
            s.maybe(0.8, rng.choice([f"cat {out}", f"wc -l {out}"]), last=True)
            script = check_script(answers={out: ["\n".join(want)]})
            return s.finish(f"Wrote `{out}` with the header and the {len(want) - 1} {region} rows from `{data}`.", script, {})
        totals: Counter[str] = Counter()
        for r in rows:
            totals[r[2]] += r[3]
        out = rng.choice(["totals.csv", "reports/units_by_product.csv"])
        want = ["product,units"] + [f"{p},{totals[p]}" for p in sorted(totals)]
        task = rng.choice([
            f"From `{data}`, compute the total units per product and write `{out}` with the header `product,units` "
            f"and one row per product, sorted by product name.",
            f"Sum the units column of {data} per product. Output: {out}, header product,units, rows sorted by product.",
        ])
        s = Session(rid, rng, files, [], task)
        s.maybe(0.8, rng.choice([f"head -n 5 {data}", f"cut -d, -f3 {data} | sort | uniq -c"]), "Product is column 3, units column 4.")
        mk = "mkdir -p reports && " if out.startswith("reports/") else ""
        s.run(mk + rng.choice([
            f"{{ echo product,units; awk -F, 'NR > 1 {{t[$3] += $4}} END {{for (p in t) print p \",\" t[p]}}' {data} | sort; }} > {out}",
            f"(echo 'product,units'; tail -n +2 {data} | cut -d, -f3,4 | awk -F, '{{s[$1] += $2}} END {{for (k in s) printf \"%s,%d\\n\", k, s[k]}}' | sort) > {out}",
            f"python3 - <<'EOF'\nimport csv\nfrom collections import Counter\n\ntotals = Counter()\nwith open('{data}', newline='') as f:\n"
            f"    for row in csv.DictReader(f):\n        totals[row['product']] += int(row['units'])\nwith open('{out}', 'w') as f:\n"
            f"    f.write('product,units\\n')\n    for product in sorted(totals):\n        f.write(f'{{product}},{{totals[product]}}\\n')\nEOF",
        ]), "Aggregate units per product and sort the rows; the header goes first.")
        s.maybe(0.85, f"cat {out}", last=True)
        script = check_script(answers={out: ["\n".join(want)]})
        return s.finish(f"Wrote `{out}`: " + "; ".join(f"{p} {totals[p]}" for p in sorted(totals)) + ".", script, {})

    # distinct_values
    data = "data/orders.csv"
    customers = rng.sample(CUSTOMERS, rng.randint(4, 7))
    rows = [(1000 + i, rng.choice(customers), f"{rng.randint(500, 90000) / 100:.2f}", rng.choice(["paid", "open", "refunded"]))
            for i in range(rng.randint(10, 16))]
    files = {data: "order_id,customer,amount,status\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)}
    distinct = sorted({r[1] for r in rows})
    out = rng.choice(["customers.txt", "reports/customers.txt"])
    task = rng.choice([
        f"Write the distinct customer names from `{data}` (column `customer`) to `{out}`, sorted alphabetically, one per line.",
        f"Which customers appear in {data}? Put each name once, sorted, one per line, in {out}.",
    ])
    s = Session(rid, rng, files, [], task)
    s.maybe(0.8, rng.choice([f"head -n 5 {data}", f"head -n 3 {data}", f"wc -l {data}"]), "customer is column 2.")
    mk = "mkdir -p reports && " if out.startswith("reports/") else ""
    s.run(mk + rng.choice([f"cut -d, -f2 {data} | tail -n +2 | sort -u > {out}",
                           f"awk -F, 'NR > 1 {{print $2}}' {data} | sort -u > {out}",
                           f"tail -n +2 {data} | cut -d, -f2 | sort | uniq > {out}"]),
          "Skip the header, take column 2, sort and drop duplicates.")
    s.maybe(0.85, rng.choice([f"cat {out}", f"wc -l {out}"]), last=True)
    script = check_script(answers={out: ["\n".join(distinct)]})
    return s.finish(f"{len(distinct)} distinct customers ({', '.join(distinct)}) are in `{out}`.", script, {})


#: task type -> (builder, sub-variants cycled over the records of that type)
TASKS: dict[str, tuple[Callable[[str, random.Random, str], dict[str, Any]], tuple[str, ...]]] = {
    "organize_files": (organize_files, ("move_by_extension", "strip_prefix", "backup_copies")),
    "rename_identifier": (rename_identifier, ("two_files", "three_files")),
    "fix_config": (fix_config, ("ini", "json", "yaml", "env")),
    "log_analysis": (log_analysis, ("errors_by_component", "count_5xx", "busiest_client", "errors_across_files")),
    "write_script": (write_script, ("count_nonempty", "sum_column", "dedupe")),
    "git": (git_task, ("fix_typo_commit", "branch_commit", "release_tag")),
    "search": (search, ("find_definition", "todo_list", "cleanup_backups", "count_files")),
    "csv": (csv_task, ("filter_region", "totals_by_product", "distinct_values")),
}


# ---------------------------------------------------------------------------------------------------
# Entry points


def generate_one(index: int, seed: int = 0) -> dict[str, Any]:
    """Record ``index`` of :func:`generate`: its task type cycles through :data:`TASK_TYPES`, and its
    sub-variant through that type's variants."""
    record_seed = seed * 1_000_000 + index
    rng = random.Random(record_seed)
    task_type = TASK_TYPES[index % len(TASK_TYPES)]
    build, variants = TASKS[task_type]
    variant = variants[(index // len(TASK_TYPES)) % len(variants)]
    record_id = f"terminal-{index:06d}" if seed == 0 else f"terminal-s{seed}-{index:06d}"
    record = build(record_id, rng, variant)
    record["metadata"] = {"source": "generated", "seed": record_seed, "task_type": task_type, "variant": variant,
                          **record["metadata"]}
    return record


def generate(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` successful terminal sessions, one task each, deterministic in ``seed``."""
    return [generate_one(i, seed) for i in range(n)]


def generate_file(path: str | Path, n: int = 60, seed: int = 0) -> int:
    """Write :func:`generate` ``(n, seed)`` as JSONL, atomically. Returns the number of records."""
    return save_trajectories(generate(n, seed), path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate terminal-domain trajectories (JSONL).")
    parser.add_argument("--out", required=True, help="output JSONL path")
    parser.add_argument("-n", "--n", type=int, default=60, help="number of records")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {generate_file(args.out, args.n, args.seed)} records to {args.out}")


if __name__ == "__main__":
    main()
