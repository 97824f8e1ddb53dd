"""The sandbox image: a Dockerfile and the code that builds it without a registry (see :mod:`.build`).

Names are imported from :mod:`sandboxes.images.build` on first use, so that
``python -m sandboxes.images.build`` runs that module fresh.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BASE_IMAGE",
    "SANDBOX_IMAGE",
    "SANDBOX_REPOSITORY",
    "ImageBuildError",
    "ensure_image",
    "image_tag",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sandboxes.images import build

        return getattr(build, name)
    raise AttributeError(f"module 'sandboxes.images' has no attribute {name!r}")
