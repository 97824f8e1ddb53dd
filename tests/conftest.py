"""Shared fixtures and the rule for tests that need real components.

A test marked ``docker`` needs a reachable Docker daemon. Locally it skips with the reason; under
``CI=true`` it fails instead, so a CI machine without the daemon can never pass by skipping.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _docker_problem() -> str | None:
    try:
        import docker  # noqa: PLC0415

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable daemon"
        return f"no Docker daemon reachable ({type(exc).__name__}: {exc})"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = _docker_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"{problem}; CI must start dockerd before the tests (see .ci/run)", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def tool_use_records():
    from pivot_envs import get_domain

    return get_domain("tool_use").load(strict=True)


@pytest.fixture
def tool_use_env(tool_use_records):
    from pivot_envs import TrajectoryEnv

    env = TrajectoryEnv(tool_use_records[:10], domain="tool_use")
    yield env
    env.close()


@pytest.fixture
def local_shell_worlds(monkeypatch):
    """Run records that ask for Docker on the local sandbox.

    The contract tests over every registered env check the env and verifier logic on every turn of the
    bundled data; on Docker that costs minutes per domain, so they use the local backend, and each
    Docker-backed domain checks its own records on Docker in its `docker`-marked tests.
    """
    from pivot_envs.domains.terminal import sandbox as shell

    monkeypatch.setattr(shell, "BACKEND", "local")
