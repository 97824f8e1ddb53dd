"""Build the image that :class:`~sandboxes.docker.DockerSandbox` runs in, locally and without a registry.

    python -m sandboxes.images.build [--from-registry] [--force] [--mirror URL]

Two images, both labelled ``pivotrl.managed=1`` and ``pivotrl.kind=base`` (the reaper never removes them):

1. ``pivotrl/debian-base:bookworm``: a Debian root file system made with
   ``debootstrap --variant=minbase bookworm`` from the Debian mirror this host's apt already uses, and
   imported with ``docker import``. Needs root, ``debootstrap`` and the mirror, no registry. Skipped with
   ``--from-registry``, where the public ``debian:bookworm-slim`` is the base instead.
2. ``pivotrl/sandbox:<content hash>`` (also tagged ``:latest``): the ``Dockerfile`` beside this file on
   top of the base. The hash covers the Dockerfile, the base image name and this module's recipe
   version, so a rebuild with nothing changed is a no-op (the tag exists) and a changed Dockerfile gets a
   new tag instead of silently replacing the image that old snapshots were made from.

``apt-get`` runs inside the Dockerfile build and needs the mirror. The build is our trusted step, not a
sandbox, so it uses the host's network by default (``network_mode="host"``): that works wherever the host
reaches the mirror, including hosts where dockerd cannot set up NAT for its bridge network.

>>> image_tag().startswith("pivotrl/sandbox:")
True
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sandboxes.errors import SandboxError

if TYPE_CHECKING:
    import docker

#: The locally made Debian base (debootstrap + docker import).
BASE_IMAGE = "pivotrl/debian-base:bookworm"
#: The public base used with ``--from-registry``.
REGISTRY_BASE_IMAGE = "debian:bookworm-slim"
#: Repository of the sandbox image; tags are content hashes plus ``latest``.
SANDBOX_REPOSITORY = "pivotrl/sandbox"
#: The moving name of the newest sandbox image. Code should use :func:`ensure_image`'s immutable tag.
SANDBOX_IMAGE = f"{SANDBOX_REPOSITORY}:latest"
#: Repositories the reaper never touches.
BASE_REPOSITORIES = ("pivotrl/debian-base", SANDBOX_REPOSITORY)

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DOCKERFILE = Path(__file__).with_name("Dockerfile")
#: Bump when this module changes what it builds, so that existing tags stop matching.
RECIPE_VERSION = "1"

LABEL_MANAGED = "pivotrl.managed"
LABEL_KIND = "pivotrl.kind"
_LOCK_PATH = os.path.join(tempfile.gettempdir(), "pivotrl-image-build.lock")


class ImageBuildError(SandboxError):
    """The sandbox image could not be built; the message says which step failed and what to do."""


def image_tag(*, from_registry: bool = False) -> str:
    """The content-addressed tag of the sandbox image the current Dockerfile builds (no daemon needed)."""
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, _base_for(from_registry), DOCKERFILE.read_text(encoding="utf-8")):
        digest.update(part.encode("utf-8") + b"\0")
    return f"{SANDBOX_REPOSITORY}:{digest.hexdigest()[:16]}"


def ensure_image(
    client: docker.DockerClient | None = None,
    *,
    from_registry: bool = False,
    force: bool = False,
    mirror: str | None = None,
    network_mode: str = "host",
    progress: Callable[[str], None] | None = None,
) -> str:
    """Return the sandbox image's tag, building the image (and its base) first when it is missing.

    A no-op costing one API call when the tag exists. A build from nothing takes about a minute (the
    progress goes to stderr); concurrent callers on one host wait for each other's build.

    Args:
        client: Docker client; ``None`` uses the process-wide one of :mod:`sandboxes.docker`.
        from_registry: Build on ``debian:bookworm-slim`` from a registry instead of the local base.
        force: Rebuild both images even when their tags exist.
        mirror: Debian mirror URL for debootstrap; ``None`` picks one from this host's apt sources
            (``PIVOTRL_DEBIAN_MIRROR`` overrides).
        network_mode: Network of the Dockerfile build's containers (``"host"`` or ``"bridge"``).
        progress: Called with one line per step; ``None`` prints to stderr.

    Raises:
        ImageBuildError: a build step failed (the message names it and the fix).
    """
    if client is None:
        from sandboxes.docker import docker_client

        client = docker_client()
    say = progress or _print_progress
    tag = image_tag(from_registry=from_registry)
    if not force and _image_exists(client, tag):
        return tag
    with _build_lock():
        if not force and _image_exists(client, tag):
            return tag  # another process built it while we waited
        started = time.monotonic()
        say(f"building sandbox image {tag} (first use on this machine; about a minute)")
        base = _base_for(from_registry)
        if not from_registry and (force or not _image_exists(client, base)):
            build_base_image(client, mirror=mirror, progress=say)
        _build_sandbox_image(client, tag, base, network_mode=network_mode, progress=say)
        say(f"built {tag} in {time.monotonic() - started:.1f} s")
    return tag


def build_base_image(
    client: docker.DockerClient,
    *,
    mirror: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Make ``pivotrl/debian-base:bookworm`` with debootstrap and ``docker import``; returns the tag."""
    say = progress or _print_progress
    if os.geteuid() != 0:
        raise ImageBuildError(
            "debootstrap needs root to build the Debian base image; run the build as root, or use "
            "--from-registry where a registry is reachable"
        )
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageBuildError(
            "debootstrap is not installed; `apt-get install -y debootstrap` (.ci/start-docker does this), "
            "or use --from-registry where a registry is reachable"
        )
    mirror = mirror or find_debian_mirror()
    # An https mirror needs CA certificates inside the new system for the Dockerfile's apt-get.
    include = ["--include=ca-certificates"] if mirror.startswith("https:") else []
    with tempfile.TemporaryDirectory(prefix="pivotrl-rootfs-") as tmp:
        rootfs = os.path.join(tmp, "rootfs")
        say(f"debootstrap --variant=minbase {SUITE} from {mirror}")
        started = time.monotonic()
        done = subprocess.run(
            [debootstrap, "--variant=minbase", *include, SUITE, rootfs, mirror],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            log = (done.stdout + done.stderr).strip()[-3000:]
            raise ImageBuildError(
                f"debootstrap of {SUITE} from {mirror} failed (exit code {done.returncode}); set "
                f"PIVOTRL_DEBIAN_MIRROR to a reachable Debian mirror. Output:\n{log}"
            )
        say(f"debootstrap done in {time.monotonic() - started:.1f} s; importing as {BASE_IMAGE}")
        # Package caches and lists are rebuilt by the Dockerfile's apt-get update; they only cost space.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in Path(rootfs, junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        _import_rootfs(client, rootfs)
    return BASE_IMAGE


def find_debian_mirror() -> str:
    """The first reachable Debian mirror for bookworm: ``PIVOTRL_DEBIAN_MIRROR``, then this host's apt
    sources (plain http first), then deb.debian.org."""
    override = os.environ.get("PIVOTRL_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    candidates = _apt_mirrors()
    candidates.sort(key=lambda uri: not uri.startswith("http:"))
    candidates.append(DEFAULT_MIRROR)
    tried = []
    for uri in dict.fromkeys(candidates):
        problem = _mirror_problem(uri)
        if problem is None:
            return uri
        tried.append(f"{uri} ({problem})")
    raise ImageBuildError(
        "no Debian mirror for bookworm is reachable; tried " + "; ".join(tried) + ". Set "
        "PIVOTRL_DEBIAN_MIRROR to a mirror this machine can reach."
    )


# -- helpers ---------------------------------------------------------------------------------------


def _base_for(from_registry: bool) -> str:
    return REGISTRY_BASE_IMAGE if from_registry else BASE_IMAGE


def _image_exists(client: docker.DockerClient, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _base_labels() -> dict[str, str]:
    return {LABEL_MANAGED: "1", LABEL_KIND: "base", "pivotrl.recipe": RECIPE_VERSION}


def _import_rootfs(client: docker.DockerClient, rootfs: str) -> None:
    labels = " ".join(f"{key}={value}" for key, value in _base_labels().items())
    changes = [
        f"LABEL {labels}",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8",
        'CMD ["bash"]',
    ]
    # GNU tar keeps device nodes, hard links and numeric owners exactly; the archive streams to the daemon.
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", "-", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None

    def chunks() -> Iterator[bytes]:
        while block := tar.stdout.read(1 << 20):
            yield block

    repository, tag = BASE_IMAGE.split(":")
    try:
        client.api.import_image_from_data(chunks(), repository=repository, tag=tag, changes=changes)
    except Exception as exc:
        tar.kill()
        raise ImageBuildError(f"docker import of the Debian root file system failed: {exc}") from exc
    finally:
        stderr = tar.communicate()[1]
    if tar.returncode != 0:
        raise ImageBuildError(
            f"tar of the root file system failed: {stderr.decode(errors='replace')[-2000:]}"
        )


def _build_sandbox_image(
    client: docker.DockerClient, tag: str, base: str, *, network_mode: str, progress: Callable[[str], None]
) -> None:
    import docker.errors

    # The build context is the Dockerfile alone: nothing else of the package can leak into the image.
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        data = DOCKERFILE.read_bytes()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    labels = {**_base_labels(), "pivotrl.base": base}
    log: list[str] = []
    try:
        for chunk in client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            labels=labels,
            network_mode=network_mode,
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "error" in chunk:
                raise ImageBuildError(_build_failure(chunk["error"], log, base, network_mode))
            line = str(chunk.get("stream", "")).rstrip()
            if line:
                log.append(line)
                if line.startswith("Step "):
                    progress(line)
    except docker.errors.APIError as exc:
        raise ImageBuildError(_build_failure(str(exc), log, base, network_mode)) from exc
    client.api.tag(tag, SANDBOX_REPOSITORY, "latest")


def _build_failure(error: str, log: list[str], base: str, network_mode: str) -> str:
    hint = (
        f"the base image {base} is missing and no registry is reachable: build without --from-registry"
        if base == REGISTRY_BASE_IMAGE
        else f"check that the Debian mirror is reachable from a container with network_mode={network_mode!r}"
    )
    tail = "\n".join(log[-25:])
    return f"docker build of the sandbox image failed: {error.strip()}; {hint}. Build log tail:\n{tail}"


def _apt_mirrors() -> list[str]:
    """Mirror URIs serving the bookworm suite in /etc/apt/sources.list and /etc/apt/sources.list.d/."""
    files = [Path("/etc/apt/sources.list")]
    directory = Path("/etc/apt/sources.list.d")
    if directory.is_dir():
        files += sorted(directory.iterdir())
    found: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            found += _deb822_mirrors(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            found += _one_line_mirrors(text)
    return [uri.rstrip("/") for uri in found]


def _deb822_mirrors(text: str) -> list[str]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and SUITE in fields.get("suites", "").split():
            found += fields.get("uris", "").split()
    return found


def _one_line_mirrors(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "deb":
            rest = words[1:]
            if rest[0].startswith("["):  # options like [arch=amd64 signed-by=...]
                while rest and not rest[0].endswith("]"):
                    rest = rest[1:]
                rest = rest[1:]
            if len(rest) >= 2 and rest[1] == SUITE:
                found.append(rest[0])
    return found


def _mirror_problem(uri: str) -> str | None:
    if not uri.startswith(("http://", "https://")):
        return "not an http(s) mirror"
    request = urllib.request.Request(f"{uri}/dists/{SUITE}/Release", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    with open(_LOCK_PATH, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _print_progress(line: str) -> None:
    print(f"[pivotrl image] {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m sandboxes.images.build``: build (or confirm) the sandbox image and print its tag."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-registry", action="store_true", help=f"build on {REGISTRY_BASE_IMAGE}")
    parser.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    parser.add_argument("--mirror", help="Debian mirror for debootstrap (default: from apt sources)")
    parser.add_argument("--network", default="host", choices=["host", "bridge"], help="build network")
    args = parser.parse_args(argv)
    try:
        tag = ensure_image(
            from_registry=args.from_registry, force=args.force, mirror=args.mirror, network_mode=args.network
        )
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
