"""A programmatic expert for the SWE domain: explore, reproduce, edit, re-test, report.

Each record's repository and bug come from :func:`.repos.make_task`. The session is produced by running
every call for real in a local sandbox through the domain's executor (:meth:`SWEDomain.execute`, the one
the environment replays with), so each recorded tool output is what a restore reproduces. At generation
time the record's grading is checked both ways with :func:`verifiers.swe.grade_workspace`: unresolved at
turn 0 (every FAIL_TO_PASS test fails there, every PASS_TO_PASS test passes) and resolved at the end.

Variety, so a policy has something to generalise over (all drawn from the record's seed):

* exploring: ``git grep -n``, ``grep -rn ... | sort``, ``find ... | sort``, the editor's directory view, ``ls``;
* reading: the editor's ``view`` (whole file or a range), ``cat -n``, ``sed -n 'a,bp'``; sometimes the test file;
* reproducing the failure before the fix on some records, not all;
* the fix: one of several correct fixes of the task, applied with the editor's ``str_replace`` or
  ``insert``, ``sed -i``, or a small Python rewrite;
* checking: the test module or the whole suite, then ``git diff`` / ``git status --short`` on some records.

Determinism: test runs are filtered to unittest's per-test lines and summary (no timings, no tracebacks
with absolute paths), listings are sorted, and the base commit has fixed dates.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import random
import re
import shlex
from pathlib import Path
from typing import Any

from pivot_envs.actions import ToolCall
from pivot_envs.domains.swe import DOMAIN, TOOLS
from pivot_envs.domains.swe.repos import BugTask, apply_fix, make_task
from pivot_envs.domains.terminal.sandbox import local_sandbox
from pivot_envs.trajectory import save_trajectories
from verifiers.swe import grade_workspace

IMAGE = "pivotrl/sandbox:latest"
WORKDIR = "/workspace"
GIT_DATE = "2024-06-01T12:00:00+00:00"
SYSTEM_PROMPT = (
    "You are a software engineer fixing an issue in the repository in the current directory (a git "
    "repository; python3 and git are installed, tests use unittest). Use the bash tool and the "
    "str_replace_editor tool, one call per turn: find the relevant code, reproduce the problem, make a "
    "minimal fix in the source (never edit the tests), run the tests, and finish with a short summary.")
#: How the closing summary names each bug family.
KINDS = {"off_by_one": "an off-by-one error", "wrong_condition": "a wrong comparison",
         "missing_edge_case": "a missing edge case", "wrong_api": "a misused standard-library call",
         "broken_refactor": "an import and call left behind by a rename"}
TEST_FILTER = "2>&1 | grep -E ' \\.\\.\\. |^(OK|FAILED)'"


def setup_commands() -> list[str]:
    """``git init`` and commit the base state (fixed dates; the editor's state directory is ignored by the
    repository's ``.gitignore``; no hook
    samples and a packed object store: every snapshot and fork copies the workspace, and directories are
    what copying costs most)."""
    return [
        "git init -q -b main --template= && git config user.name 'Sam Dev' && git config user.email sam@example.com "
        "&& git config core.logAllRefUpdates false && git add -A "
        f"&& GIT_AUTHOR_DATE={GIT_DATE} GIT_COMMITTER_DATE={GIT_DATE} git commit -qm 'Initial import' "
        "&& git repack -adq && git prune-packed && rm -rf .git/objects/info .git/refs/tags"
    ]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _sed_escape(text: str, replacement: bool = False) -> str:
    if replacement:
        return re.sub(r"([\\/&])", r"\\\1", text)
    return re.sub(r"([\\/.*\[\]^$])", r"\\\1", text)


class Session:
    """One demonstration under construction; its calls run for real in a local sandbox."""

    def __init__(self, record_id: str, rng: random.Random, task: BugTask):
        self.record_id, self.rng, self.task = record_id, rng, task
        self.env = {"sandbox": "docker", "image": IMAGE, "workdir": WORKDIR, "files": dict(task.files),
                    "setup": setup_commands()}
        self.sandbox = local_sandbox(self.env)
        self.initial = self.sandbox.fork(1)[0]
        self.files = dict(task.files)  # what the expert believes the files hold
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": task.issue},
        ]

    def call(self, name: str, arguments: dict[str, Any], why: str | None = None) -> str:
        k = sum(m["role"] == "assistant" for m in self.messages)
        call_id = "call_" + _sha(f"{self.record_id}:{k}")[:8]
        call = ToolCall.from_parts(name, arguments, call_id)
        text, result = DOMAIN.execute(self.sandbox, call)
        if not result.ok:
            raise RuntimeError(f"{self.record_id}: the expert's {name} call {arguments!r} failed: {text!r}")
        msg: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call.to_openai(call_id)]}
        if why and self.rng.random() < 0.4:
            msg["reasoning_content"] = why
        self.messages += [msg, {"role": "tool", "tool_call_id": call_id, "content": text}]
        return text

    def bash(self, command: str, why: str | None = None) -> str:
        return self.call("bash", {"command": command}, why)

    def editor(self, why: str | None = None, **arguments: Any) -> str:
        return self.call("str_replace_editor", arguments, why)

    # -- steps ---------------------------------------------------------------------------------------
    def explore(self) -> None:
        t = self.task
        choice = self.rng.randrange(5)
        why = f"Find where `{t.symbol}` lives."
        if choice == 0:
            self.bash(f"git grep -n {shlex.quote(t.symbol)}", why)
        elif choice == 1:
            self.bash(f"grep -rn {shlex.quote(t.symbol)} --include='*.py' . | sort", why)
        elif choice == 2:
            self.bash("find . -name '*.py' -not -path './.git/*' | sort", "List the Python files first.")
        elif choice == 3:
            self.editor("Look at the layout of the repository.", command="view", path=".")
        else:
            self.bash(f"ls {t.package} tests", "See what the package and the tests hold.")

    def reproduce(self) -> None:
        self.bash(f"python3 -m unittest -v {self.task.test_module} {TEST_FILTER}", "Reproduce the failure first.")

    def read_source(self) -> None:
        path = self.task.source
        lines = self.files[path].split("\n")
        first_fix_old = self.chosen[0][1]
        at = self.files[path].split(first_fix_old)[0].count("\n") + 1
        lo, hi = max(1, at - 6), min(len(lines), at + 4)
        choice = self.rng.randrange(4)
        why = f"Read {path} around the bug."
        if choice == 0:
            self.editor(why, command="view", path=path)
        elif choice == 1:
            self.editor(why, command="view", path=path, view_range=[lo, hi])
        elif choice == 2:
            self.bash(f"cat -n {path}", why)
        else:
            self.bash(f"sed -n '{lo},{hi}p' {path}", why)

    def read_tests(self) -> None:
        path = "tests/" + self.task.test_module.split(".")[-1] + ".py"
        if self.rng.random() < 0.5:
            self.editor("Check what the tests expect.", command="view", path=path)
        else:
            self.bash(f"cat {path}", "Check what the tests expect.")

    def edit(self, path: str, old: str, new: str) -> None:
        text = self.files[path]
        why = "Make the fix in the source."
        single = "\n" not in old and "\n" not in new
        insertion = new.endswith(old) and (text.split(old)[0].endswith("\n"))
        options = ["editor"]
        if single and "'" not in old + new:
            options.append("sed")
        if "'''" not in old + new and "\\" not in old + new:
            options.append("python")
        if insertion:
            options.append("insert")
        how = self.rng.choice(options)
        if how == "editor":
            self.editor(why, command="str_replace", path=path, old_str=old, new_str=new)
        elif how == "insert":
            line = text.split(old)[0].count("\n")
            self.editor(why, command="insert", path=path, insert_line=line, new_str=new[: -len(old)].rstrip("\n"))
        elif how == "sed":
            self.bash(f"sed -i 's/{_sed_escape(old)}/{_sed_escape(new, True)}/' {path}", why)
        else:
            self.bash(f"python3 - <<'EOF'\nimport pathlib\np = pathlib.Path({path!r})\n"
                      f"p.write_text(p.read_text().replace({old!r}, {new!r}, 1))\nEOF", why)
        self.files[path] = text.replace(old, new, 1)

    def retest(self) -> str:
        if self.rng.random() < 0.5:
            return self.bash(f"python3 -m unittest -v {self.task.test_module} {TEST_FILTER}", "Run the tests again.")
        return self.bash(f"python3 -m unittest discover -s tests -t . -v {TEST_FILTER}", "Run the whole suite.")

    # -- the record ------------------------------------------------------------------------------------
    def run(self, index: int, seed: int) -> dict[str, Any]:
        t, rng = self.task, self.rng
        fix_index = rng.randrange(len(t.fixes))
        self.chosen = t.fixes[fix_index]
        try:
            self.explore()
            if rng.random() < 0.5:
                self.reproduce()
            self.read_source()
            if rng.random() < 0.2:
                self.read_tests()
            for path, old, new in self.chosen:
                self.edit(path, old, new)
            if apply_fix(t.files, self.chosen) != self.files:
                raise RuntimeError(f"{self.record_id}: the expert's view of the files drifted")
            output = self.retest()
            if "FAILED" in output or "OK" not in output:
                raise RuntimeError(f"{self.record_id}: tests still fail after the fix: {output!r}")
            if rng.random() < 0.3:
                self.bash(rng.choice(["git diff", "git status --short"]), "Review the change.")
            changed = sorted({p for p, _, _ in self.chosen})
            n_tests = output.count(" ... ok")
            summary = (f"Fixed {KINDS[t.family]} in `{'`, `'.join(changed)}` (`{t.symbol}`). `{t.test_module}` and the "
                       f"rest of the suite pass ({n_tests} ok); only the source changed, not the tests.")
            self.messages.append({"role": "assistant", "content": summary})
            spec = self.spec()
            for sandbox, want in ((self.sandbox, True), (self.initial, False)):
                resolved, report = grade_workspace(sandbox, spec)
                if resolved != want:
                    raise RuntimeError(f"{self.record_id}: resolved={resolved} {'at the end' if want else 'at turn 0'}: "
                                       f"{report}")
                if not want and (report["FAIL_TO_PASS"]["success"] or report["PASS_TO_PASS"]["failure"]):
                    raise RuntimeError(f"{self.record_id}: at turn 0 a FAIL_TO_PASS test passes or a PASS_TO_PASS "
                                       f"test fails: {report}")
        finally:
            self.sandbox.close()
            self.initial.close()
        n_turns = sum(m["role"] == "assistant" for m in self.messages)
        return {
            "id": self.record_id,
            "domain": "swe",
            "messages": self.messages,
            "tools": copy.deepcopy(TOOLS),
            "env": self.env,
            "task": {"tests": self.spec()},
            "metadata": {"source": "generated", "seed": seed, "index": index, "family": t.family,
                         "variant": t.variant, "fix": fix_index, "turns": n_turns},
        }

    def spec(self) -> dict[str, Any]:
        t = self.task
        return {"runner": "unittest", "fail_to_pass": t.fail_to_pass, "pass_to_pass": t.pass_to_pass,
                "files": t.test_files, "dirs": ["tests"]}


def generate(n: int = 30, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` records (families cycle; everything else from ``seed``)."""
    records = []
    for i in range(n):
        task = make_task(i, seed)
        rng = random.Random(f"swe-expert:{seed}:{i}")
        records.append(Session(f"swe-{i:06d}", rng, task).run(i, seed))
    return records


def generate_file(path: str | Path, n: int = 30, seed: int = 0) -> int:
    """Write :func:`generate` ``(n, seed)`` as JSONL, atomically (the shape ``pivotrl data generate`` calls)."""
    return save_trajectories(generate(n, seed), path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {generate_file(args.out, args.n, args.seed)} records to {args.out}")


if __name__ == "__main__":
    main()
