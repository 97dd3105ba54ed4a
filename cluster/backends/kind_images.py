"""The platform's images on kind: one build of the repo, one tag per release a drill can roll out.

On the embedded cluster a pod's image is only a name: the process kubelet runs the
repo's code and hands it ``CONTAINER_IMAGE``, whose tag picks the release's
behaviour. On kind, kubelets run real images, so every tag the baseline or a
fault can set must exist on the nodes. They are all the same code (the repo's
``Dockerfile``, built by ``mlops_drill.cluster.kindbuild.platform``) with the tag
baked in as ``CONTAINER_IMAGE``, exactly what the process kubelet would have
said, so a bad release is still a real rollout of another image and ``kubectl
rollout undo`` still fixes it. Which tags those are is the platform's business
(``mlops_drill.mlplatform.releases.all_images``); this module only builds.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from mlops_drill.errors import DrillError

BASE_IMAGE = "mlops-drill/platform:dev"


def release_dockerfile(image: str) -> str:
    """A release image: the platform build with its own name baked in, as the process kubelet passes it."""
    return f"FROM {BASE_IMAGE}\nENV CONTAINER_IMAGE={image}\n"


def build_images(images: list[str], docker: str = "docker",
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                 build_platform: Callable[[], None] | None = None) -> list[str]:
    """The platform image (cached), then one thin image per release tag; the names built."""
    if build_platform is None:
        from mlops_drill.cluster.kindbuild.pipeline import ensure_platform_image

        build_platform = ensure_platform_image
    build_platform()
    for image in images:
        if image == BASE_IMAGE:
            continue
        result = run([docker, "build", "-q", "--force-rm", "-t", image, "-"], input=release_dockerfile(image),
                     capture_output=True, text=True, env=dict(os.environ, DOCKER_BUILDKIT="0"))
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise DrillError(f"docker build -t {image} failed: {last[0]}")
    return [BASE_IMAGE, *[i for i in images if i != BASE_IMAGE]]
