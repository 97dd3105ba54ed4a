"""The platform image (the repo's ``Dockerfile``) on the slim Debian base, with no registry.

The Dockerfile's default base (``python:3.11-slim``) cannot be pulled where no
registry answers, so its ``BASE`` is the debootstrapped slim image, whose
Python is Debian's 3.11. pip inside the build cannot reach PyPI either: the
dependencies' wheels are fetched on the host (which does reach PyPI, or a local
wheel folder) and copied in with the source.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from mlops_drill.cluster.kindbuild import rootfs
from mlops_drill.cluster.kindbuild.steps import Step, digest, kind_cache, run

REPO = Path(__file__).resolve().parents[2]
PLATFORM_IMAGE = "mlops-drill/platform:dev"
#: What the image holds: never the scenarios, the injector or the grader (the answer key), see the Dockerfile.
SOURCE_DIRS = ("mlops_drill", "cluster", "mlplatform")
SOURCE_FILES = ("Dockerfile", "pyproject.toml", "setup.py", "README.md")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def wheels_dir() -> Path:
    return kind_cache() / "wheels" / digest(REPO / "pyproject.toml")


def _source_files() -> list[Path]:
    files = [REPO / name for name in SOURCE_FILES]
    for folder in SOURCE_DIRS:
        files += sorted(p for p in (REPO / folder).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def platform_stamp() -> str:
    """The image holds the repo's code: any change to it is a new image."""
    files = _source_files()
    return digest(rootfs.slim_stamp(), *[str(f.relative_to(REPO)) for f in files], *files)


def fetch_wheels() -> None:
    """Wheels of every dependency (and the build backend), for Debian's CPython 3.11 on this architecture."""
    target = wheels_dir()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(partial), str(REPO), "setuptools>=68", "wheel"],
        nice=True, what="pip wheel (platform image dependencies)", timeout=1800)
    for own in partial.glob("mlops_drill-*.whl"):
        own.unlink()  # the image installs the checkout itself
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)


def build_platform() -> None:
    with tempfile.TemporaryDirectory(dir=kind_cache()) as tmp:
        context = Path(tmp)
        for name in SOURCE_FILES:
            shutil.copyfile(REPO / name, context / name)
        for folder in SOURCE_DIRS:
            shutil.copytree(REPO / folder, context / folder, ignore=IGNORE)
        shutil.copytree(wheels_dir(), context / "wheels")
        run(["docker", "build", "-q", "--force-rm", "--build-arg", f"BASE={rootfs.SLIM_IMAGE}:{rootfs.slim_stamp()}",
             "-t", PLATFORM_IMAGE, "-t", f"mlops-drill/platform:{platform_stamp()}", str(context)],
            env=dict(os.environ, DOCKER_BUILDKIT="0"), nice=True, what="docker build the platform image",
            timeout=1800)


def steps() -> list[Step]:
    stamps = kind_cache() / "stamps"
    return [
        Step("platform dependencies (pip wheel)", digest(REPO / "pyproject.toml"), stamps / "wheels", fetch_wheels,
             check=lambda: wheels_dir().is_dir()),
        Step(f"platform image {PLATFORM_IMAGE} (the repo's Dockerfile)", platform_stamp, stamps / "platform",
             build_platform, check=lambda: rootfs.image_exists(f"mlops-drill/platform:{platform_stamp()}")),
    ]
