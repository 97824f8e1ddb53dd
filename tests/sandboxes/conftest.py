"""Session-end leak check for the Docker backend.

After every test (and every module fixture) has finished, no container or snapshot image labelled
``pivotrl.managed`` may be left on the Docker host; base images (``pivotrl/debian-base``,
``pivotrl/sandbox``) stay. Under ``CI=true`` the machine is ours alone and everything counts (a
subprocess a test started included). Locally another run may share the daemon, so only objects of
this process's session and of :data:`FAKE_SESSION` (the fake orphans of the reaper tests) count. The
check only runs when a test used Docker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as in tests/conftest.py

#: The session label of the fake orphans in test_docker.py (kept in sync by hand).
FAKE_SESSION = "pivotrl-test-fake-session"


def _docker_leftovers() -> list[str]:
    docker_module = sys.modules.get("sandboxes.docker")
    if docker_module is None or docker_module._client is None:
        return []  # no test talked to Docker in this session
    from sandboxes.docker import _SESSION, LABEL_KIND, LABEL_MANAGED, LABEL_SESSION

    api = docker_module._client.api
    if docker_module._shelf is not None:
        docker_module._shelf.clear()  # idle workers: what the exit hook removes when the process ends

    def leaked(labels: dict[str, str] | None, kind: str) -> bool:
        labels = labels or {}
        mine = IN_CI or labels.get(LABEL_SESSION) in (_SESSION, FAKE_SESSION)
        return labels.get(LABEL_KIND) == kind and mine

    found = []
    for entry in api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"}):
        if leaked(entry.get("Labels"), "sandbox"):
            found.append(f"container {entry['Id'][:12]} {entry.get('Names')} ({entry.get('State')})")
    for entry in api.images(all=True, filters={"label": f"{LABEL_MANAGED}=1"}):
        if leaked(entry.get("Labels"), "snapshot"):
            found.append(f"image {entry['Id'][7:19]} {entry.get('RepoTags')}")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_docker_leftovers() -> Iterator[None]:
    yield
    leftovers = _docker_leftovers()
    assert not leftovers, "Docker objects left behind after all sandboxes were closed:\n" + "\n".join(
        leftovers
    )
