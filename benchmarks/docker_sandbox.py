"""Docker sandbox latencies: exec, snapshot (commit), fork from a snapshot, warm-pool hand-out.

    python benchmarks/docker_sandbox.py [--repeats 20]

Prints JSON with the median and the 90th percentile of each, in milliseconds. Needs a Docker daemon and
builds the sandbox image first if it is missing (not timed).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

from sandboxes.docker import DockerSandbox, _registry, docker_client
from sandboxes.images import ensure_image
from sandboxes.pool import SandboxPool


def timed(
    repeats: int,
    run: Callable[..., object],
    after: Callable[[object], None] | None = None,
    before: Callable[[], object] | None = None,
) -> dict:
    """Median and p90 in ms of ``run()`` (or ``run(before())``); ``before``/``after(result)`` are untimed."""
    samples = []
    for _ in range(repeats):
        args = () if before is None else (before(),)
        start = time.perf_counter()
        result = run(*args)
        samples.append((time.perf_counter() - start) * 1000)
        if after is not None:
            after(result)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 1),
        "n": repeats,
    }


def close_all(sandboxes: object) -> None:
    for sb in sandboxes if isinstance(sandboxes, list) else [sandboxes]:
        sb.close()


def main(repeats: int) -> dict:
    client = docker_client()
    image = ensure_image(client)
    files = {f"src/mod{i}.py": f"x = {i}\n" * 50 for i in range(20)}
    results: dict = {
        "image": image,
        "daemon": client.version().get("Version"),
        "host": platform.node(),
        "cpus": client.info().get("NCPU"),
    }
    with DockerSandbox(files, image=image) as sb:
        results["exec_true"] = timed(repeats, lambda: sb.exec("true"))
        results["exec_python"] = timed(repeats, lambda: sb.exec("python3 -c pass"))
        results["write_file"] = timed(repeats, lambda: sb.write_file("w.txt", "x" * 1000))
        results["read_file"] = timed(repeats, lambda: sb.read_file("w.txt"))
        results["state_digest"] = timed(repeats, sb.state_digest)
        results["snapshot"] = timed(repeats, sb.snapshot)  # digest + docker commit
        results["commit_only"] = timed(
            repeats, sb._commit, lambda ref: _registry.release(ref.tag, ("bench", ""), client)
        )
        snap = sb.snapshot()
        results["restore"] = timed(repeats, lambda: sb.restore(snap))
        results["fork_1"] = timed(repeats, lambda: sb.fork(1), close_all)  # commit + one container start
        results["fork_4"] = timed(max(repeats // 4, 3), lambda: sb.fork(4), close_all)
    results["cold_create"] = timed(repeats, lambda: DockerSandbox(image=image), close_all)
    results["close"] = timed(repeats, lambda sb: sb.close(), before=lambda: DockerSandbox(image=image))

    with SandboxPool(image, size=2) as pool:
        pool.wait_ready(timeout=60)

        def hand_out() -> DockerSandbox:
            return pool.acquire()

        def release(sb: object) -> None:
            sb.close()  # type: ignore[attr-defined]
            pool.wait_ready(timeout=60)  # measure hand-outs from a full pool only

        results["pool_acquire"] = timed(repeats, hand_out, release)
        results["pool_hits"], results["pool_misses"] = pool.hits, pool.misses
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(main(args.repeats), indent=2))
