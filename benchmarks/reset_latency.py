"""Reset-to-turn latency: snapshot-cached restore vs replay from turn 0, k in {1, 4, 16, 64}.

    python benchmarks/reset_latency.py [--repeats 20]

Prints JSON; the figure that matters is the ratio (``speedup``) measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json

from agents.bench import bench_reset

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(bench_reset(repeats=args.repeats), indent=2))
