"""Which image tags exist for each platform app, and which one the baseline runs.

Image tags select releases (see docs/architecture.md): the process kubelet can
treat a tag missing here as an image that cannot be pulled, and the manifests
take their baseline tags from here. What a release *does* differently lives in
the app itself (e.g. ``serving.RELEASE_BEHAVIOUR``).
"""
from __future__ import annotations

KNOWN_RELEASES: dict[str, tuple[str, ...]] = {
    "fraud-model": ("1.3.2", "1.4.0", "1.4.1", "1.4.2", "1.5.0", "1.6.0-rc1"),
    "model-registry": ("1.2.0",),
    "feature-store": ("1.1.0",),
    "feature-refresh": ("1.1.0",),
    "traffic-replay": ("1.0.0",),
    "scoring-queue": ("1.0.0",),
    # the async batch scorer; 2.4.x and 2.5.0 are the releases an async-scoring incident rolls out
    "scoring-worker": ("2.3.0", "2.4.0", "2.4.1", "2.5.0", "2.5.1"),
    "fraud-train": ("1.4.0",),
    "fraud-retrain": ("1.0.0",),  # the CT pipeline's retraining run (CronJob, started on a trigger)
    "model-monitor": ("1.0.0",),
    "embeddings-backfill": ("0.9.1",),  # another team's GPU Job (the squatter of gpu-insufficient-capacity)
    "fraud-sweep": ("0.3.0",),  # the fraud team's hyperparameter sweep (training-sweep-unpruned)
}

BASELINE_RELEASES: dict[str, str] = {
    "fraud-model": "1.4.0",
    "model-registry": "1.2.0",
    "feature-store": "1.1.0",
    "feature-refresh": "1.1.0",
    "traffic-replay": "1.0.0",
    "scoring-queue": "1.0.0",
    "scoring-worker": "2.3.0",
    "fraud-train": "1.4.0",
    "fraud-retrain": "1.0.0",
    "model-monitor": "1.0.0",
}

IMAGE_REPOSITORY = "mlops-drill"


def image(app: str, release: str | None = None) -> str:
    """``mlops-drill/<app>:<release>`` (baseline release when none given)."""
    return f"{IMAGE_REPOSITORY}/{app}:{release or BASELINE_RELEASES[app]}"


def all_images() -> list[str]:
    """Every image a drill can run: what a backend whose kubelets pull images (kind) must hold."""
    return sorted(image(app, release) for app, known in KNOWN_RELEASES.items() for release in known)


def is_known(image_ref: str) -> bool:
    """Whether an image string names a release that exists (``mlops-drill/fraud-model:9.9`` does not)."""
    repo, _, tag = image_ref.rpartition(":")
    if not repo.startswith(f"{IMAGE_REPOSITORY}/"):
        return False
    return tag in KNOWN_RELEASES.get(repo.split("/", 1)[1], ())
