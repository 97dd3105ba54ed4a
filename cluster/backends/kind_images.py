"""The platform's images on kind: one build of the repo, one tag per release a drill can roll out.

On the embedded cluster a pod's image is only a name: the process kubelet runs the
repo's code and hands it ``CONTAINER_IMAGE``, whose tag picks the release's
behaviour. On kind, kubelets pull real images, so every tag the baseline or a
fault can set must exist on the nodes. They are all the same code (the repo's
``Dockerfile``) with the tag baked in as ``CONTAINER_IMAGE``, exactly what the
process kubelet would have said, so a bad release is still a real rollout of
another image and ``kubectl rollout undo`` still fixes it. Which tags those are
is the platform's business (``mlops_drill.mlplatform.releases.all_images``); this module
only builds.
"""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from mlops_drill.errors import DrillError

BASE_IMAGE = "mlops-drill/platform:dev"
REPO_ROOT = Path(__file__).resolve().parents[2]


def release_dockerfile(image: str) -> str:
    """A release image: the platform build with its own name baked in, as the process kubelet passes it."""
    return f"FROM {BASE_IMAGE}\nENV CONTAINER_IMAGE={image}\n"


def build_images(images: list[str], docker: str = "docker", context: Path = REPO_ROOT,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[str]:
    """``docker build`` the platform once, then one thin image per release tag; the names built."""
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise DrillError(f"{dockerfile}: not found; the kind backend builds the platform image from a "
                         "checkout of the mlops-drill repository")

    def build(args: list[str], stdin: str | None = None) -> None:
        result = run([docker, "build", *args], input=stdin, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise DrillError(f"docker build {' '.join(args[:2])} failed: {last[0]}")

    build(["-t", BASE_IMAGE, str(context)])
    for image in images:
        build(["-t", image, "-"], stdin=release_dockerfile(image))
    return [BASE_IMAGE, *images]
