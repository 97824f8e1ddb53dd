"""Verifier accuracy: precision, recall and false-accept rate of every verifier on every labelled suite.

    python benchmarks/labelled_suites.py [--out FILE.json] [--no-docker]

Suites (tests/data):

* ``tool_use``: ``tool_use_pairs.jsonl``, candidates at turns of the bundled tool-use trajectories, scored
  through ``verify_file`` (so the cascade executes both calls in twin forks of the in-process world).
* ``toolcall``: ``toolcall_pairs.jsonl`` with the API-style schemas of ``toolcall_tools.json`` (defaults
  stated in descriptions, sets, case, numbers, dates, aliases and the negatives of each); no world, so
  every verifier judges at the rule level. ``toolcall (prose defaults)`` is its subset of pairs whose
  default is stated only in a description (an omitted argument vs its default, and vs another value).
* ``terminal``: ``terminal_pairs.jsonl`` with the workspaces of ``terminal_envs.json``, run in the Docker
  sandbox when a daemon answers (else the local sandbox, and the table says so).
* ``search``: ``search_pairs.jsonl``, candidates at turns of the bundled search trajectories (queries run
  against the domain's own BM25 index, opens and finds in twin copies of the in-process world).
* ``swe``: ``swe_pairs.jsonl``, candidates at turns of the bundled SWE trajectories, edits applied and
  tests run in twin forks of the repository (Docker when a daemon answers, else the local sandbox).

Verifiers: our domain cascade (``tool_use``, ``terminal``, ``search`` or ``swe``), ``toolcall`` (rules only), ``exact`` (the
paper's exact-match ablation) and ``nemo`` (NeMo Gym's released comparator). Precision = TP / (TP + FP),
recall = TP / (TP + FN), false-accept rate = FP / (FP + TN): the share of wrong actions that earn reward.

Prints a Markdown table (the README's "Verifier accuracy" section) and, with ``--out``, writes JSON.
This is a measurement, not a timed test: tests/verifiers/test_labelled_suites.py keeps the precision bar.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and its name would shadow nothing, but
# tests/verifiers holds the suite loaders: put it on the path.
ROOT = Path(__file__).resolve().parents[1]
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "verifiers")]

from labelled import DATA, load_rows, suite_verdicts, terminal_verdicts, toolcall_suite  # noqa: E402

from pivot_envs import get_domain, verify_file  # noqa: E402

VERIFIERS = ("ours", "toolcall", "exact", "nemo")


def rates(labels: Sequence[bool], accepted: Sequence[bool]) -> dict[str, Any]:
    tp = sum(1 for y, p in zip(labels, accepted, strict=True) if y and p)
    fp = sum(1 for y, p in zip(labels, accepted, strict=True) if not y and p)
    fn = sum(1 for y, p in zip(labels, accepted, strict=True) if y and not p)
    tn = len(labels) - tp - fp - fn
    return {"pairs": len(labels), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "false_accept_rate": round(fp / (fp + tn), 3) if fp + tn else None}


def tool_use_suite() -> dict[str, dict[str, Any]]:
    path = DATA / "tool_use_pairs.jsonl"
    labels = [r["label"] for r in load_rows(path.name)]
    data = get_domain("tool_use").data_path()
    out = {}
    for name in VERIFIERS:
        rows = verify_file(data, path, verifier="tool_use" if name == "ours" else name)["rows"]
        out[name] = rates(labels, [r["equivalent"] for r in rows])
    return out


def domain_suite(domain: str, pairs: str) -> dict[str, dict[str, Any]]:
    """A suite of candidates at turns of a bundled domain's records, through ``verify_file``."""
    path = DATA / pairs
    labels = [r["label"] for r in load_rows(path.name)]
    data = get_domain(domain).data_path()
    return {name: rates(labels, [r["equivalent"] for r in verify_file(data, path, verifier=domain if name == "ours"
                                                                        else name)["rows"]])
            for name in VERIFIERS}


def toolcall_suites() -> dict[str, dict[str, dict[str, Any]]]:
    rows = toolcall_suite()
    prose = [i for i, r in enumerate(rows) if r["class"] in ("description_default", "default_differs")]
    full: dict[str, dict[str, Any]] = {}
    subset: dict[str, dict[str, Any]] = {}
    for name in VERIFIERS:
        accepted = [v.equivalent for v in suite_verdicts("tool_use" if name == "ours" else name, rows)]
        full[name] = rates([r["label"] for r in rows], accepted)
        subset[name] = rates([rows[i]["label"] for i in prose], [accepted[i] for i in prose])
    return {"toolcall": full, "toolcall (prose defaults)": subset}


def docker_available() -> bool:
    try:
        import docker  # noqa: PLC0415

        docker.from_env(timeout=5).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no daemon here"
        return False


def terminal_suite(use_docker: bool) -> tuple[dict[str, dict[str, Any]], str]:
    rows = load_rows("terminal_pairs.jsonl")
    labels = [r["label"] for r in rows]
    backend = "local"
    factory = None
    if use_docker and docker_available():
        from sandboxes.docker import DockerSandbox  # noqa: PLC0415

        backend = "docker"
        factory = DockerSandbox
    out = {}
    for name in VERIFIERS:
        verdicts = _terminal(name, rows, factory)
        out[name] = rates(labels, [v.equivalent for v in verdicts])
    return out, backend


def _terminal(name: str, rows: list[dict[str, Any]], factory: Any) -> list[Any]:
    if name != "ours":  # the baselines compare text: no sandbox to start
        return terminal_verdicts(name, rows, sandbox=False)
    return terminal_verdicts("terminal", rows, sandbox_factory=factory)


def markdown(results: dict[str, Any]) -> str:
    lines = ["| suite | verifier | pairs | precision | recall | false-accept rate |", "|---|---|---|---|---|---|"]
    for suite, by_verifier in results["suites"].items():
        for name, r in by_verifier.items():
            label = {"ours": "cascade (ours)"}.get(name, name)
            fmt = [("-" if r[k] is None else f"{r[k]:.3f}") for k in ("precision", "recall", "false_accept_rate")]
            lines.append(f"| {suite} | {label} | {r['pairs']} | {' | '.join(fmt)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Also write the results as JSON here.")
    parser.add_argument("--no-docker", action="store_true", help="Run the terminal suite on the local sandbox.")
    args = parser.parse_args()
    suites: dict[str, Any] = {"tool_use": tool_use_suite(), **toolcall_suites()}
    terminal, backend = terminal_suite(not args.no_docker)
    suites[f"terminal ({backend} sandbox)"] = terminal
    suites["search"] = domain_suite("search", "search_pairs.jsonl")
    from pivot_envs.domains.terminal import sandbox as shell  # noqa: PLC0415 - the SWE world is a shell world

    shell.BACKEND = backend
    suites[f"swe ({backend} sandbox)"] = domain_suite("swe", "swe_pairs.jsonl")
    results = {"suites": suites}
    print(markdown(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
