"""The whole kind build in order: engine, Go binaries, base images, component images, node image, platform.

``ensure_kind_build`` is what ``cluster up --backend kind`` and ``toolchain build
--backend kind`` call. Each step is skipped when its cached output carries the
right stamp, so a warm call only checks (a few seconds).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mlops_drill.cluster.kindbuild import engine, gobuild, images, platform, rootfs
from mlops_drill.cluster.kindbuild.steps import Progress, Step, kind_cache


@dataclass(frozen=True)
class KindBuild:
    """What a kind cluster is created from."""

    kind: Path
    kubectl: Path
    node_image: str
    platform_image: str
    timings: dict[str, float]


def _engine_step() -> Step:
    """Never cached: the engine is checked (and started when none answers) on every call."""
    return Step("docker engine (started here when none answers)", "never-cached",
                kind_cache() / "stamps" / "engine-never",
                lambda: engine.ensure_engine(gobuild.bin_dir() / "runcwrap"), check=lambda: False)


def all_steps(with_platform: bool = True) -> list[Step]:
    go = gobuild.steps()
    wrapper, rest = go[1:2], [go[0], *go[2:]]  # runcwrap before the engine: the engine may need it
    steps = [*wrapper, _engine_step(), *rest, *rootfs.steps(), *images.steps()]
    return steps + (platform.steps() if with_platform else [])


def ensure_kind_build(progress: bool = True, with_platform: bool = True) -> KindBuild:
    started = time.monotonic()
    steps = all_steps(with_platform)
    runner = Progress(len(steps), enabled=progress)
    for step in steps:
        runner.run(step)
    runner.timings["total"] = time.monotonic() - started
    return KindBuild(gobuild.bin_dir() / "kind", gobuild.path_of("kubectl"), images.node_image(),
                     platform.PLATFORM_IMAGE, runner.timings)


def ensure_platform_image(progress: bool = False) -> None:
    """Only the platform's two steps (wheels, image): what a drill's image preparation needs."""
    steps = platform.steps()
    runner = Progress(len(steps), enabled=progress)
    for step in steps:
        runner.run(step)
