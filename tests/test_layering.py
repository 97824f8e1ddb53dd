"""Packages import only downward: sandboxes -> records and actions -> verifiers -> envs -> agents.

Every import is checked, including those inside functions: an import deferred into a function to dodge
a cycle is still an upward dependency. A new module is covered without new test code.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sandboxes", "pivot_envs", "verifiers", "agents")
#: Modules of pivot_envs that hold records and actions (the layer verifiers build on); the rest are envs.
RECORDS = ("pivot_envs.actions", "pivot_envs.trajectory", "pivot_envs.convert")
LAYERS = ("sandboxes", "records", "verifiers", "envs", "agents")


def layer_of(module: str) -> int | None:
    top = module.split(".")[0]
    if top == "pivot_envs":
        records = any(module == r or module.startswith(r + ".") for r in RECORDS)
        return LAYERS.index("records" if records else "envs")
    return LAYERS.index(top) if top in LAYERS else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, package: str) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.append((".".join([*base, node.module]), node.lineno))
            else:
                out.append((node.module, node.lineno))
    return out


def upward_imports() -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = module_name(path)
            own = layer_of(module)
            pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for target, line in imported(ast.parse(path.read_text(encoding="utf-8")), pkg):
                theirs = layer_of(target)
                if theirs is not None and own is not None and theirs > own:
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[own]}) imports "
                                    f"{target} ({LAYERS[theirs]})")
    return problems


def test_packages_import_only_downward():
    problems = upward_imports()
    assert not problems, "upward imports:\n  " + "\n  ".join(problems)


def test_the_check_sees_imports_inside_functions():
    # The rule must catch the pattern it exists for: a deferred upward import.
    tree = ast.parse("def f():\n    from pivot_envs.core import TrajectoryEnv\n")
    [(target, _)] = imported(tree, "verifiers")
    assert layer_of(target) > layer_of("verifiers.batch")
    assert layer_of("pivot_envs.actions") < layer_of("verifiers.core") < layer_of("pivot_envs.core")
