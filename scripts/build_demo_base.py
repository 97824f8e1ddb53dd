"""Rebuild the demo's built-in base model (agents/demo_base/) with the full plan and seed 0.

    .venv/bin/python scripts/build_demo_base.py

It trains a small Llama from scratch on the general mix of :func:`agents.demo.build_base` (about 7
minutes on 2 CPU cores) and replaces agents/demo_base/ with the result.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from rich.console import Console

from agents.demo import FULL, SHIPPED_BASE, Narrator, build_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, stats = build_base(FULL, Path(tmp), Narrator(Console()), seed=0, rebuild=True)
        shutil.rmtree(SHIPPED_BASE, ignore_errors=True)
        shutil.copytree(path, SHIPPED_BASE)
    print(f"wrote {SHIPPED_BASE}: {stats}")


if __name__ == "__main__":
    main()
