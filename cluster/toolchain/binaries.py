"""Find or build the control-plane binaries the embedded cluster runs.

Nothing here needs containers or a download: by default every binary is built
from Go modules (``go build`` in the wrapper modules next to this file) once,
into ``~/.cache/mlops-drill/bin/<versions>/``, and reused from then on.

Resolution order for each component, first hit wins:

1. ``$MLOPS_DRILL_<NAME>`` (e.g. ``MLOPS_DRILL_KUBE_APISERVER``): a file path;
2. ``$MLOPS_DRILL_BIN_DIR/<name>``;
3. the build cache;
4. ``<name>`` on ``$PATH``, if it reports the pinned version;
5. a download of the official release (only with ``MLOPS_DRILL_DOWNLOAD=1``);
6. a build with ``go``.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mlops_drill import paths
from mlops_drill.cluster import versions
from mlops_drill.errors import DrillError

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Component:
    """One binary: which wrapper module builds it, from which Go package."""

    name: str
    module: str  # folder next to this file holding the wrapper go.mod
    package: str
    version: str


COMPONENTS: tuple[Component, ...] = (
    Component("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", versions.KUBERNETES),
    Component("kube-controller-manager", "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager", versions.KUBERNETES),
    Component("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", versions.KUBERNETES),
    Component("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl", versions.KUBERNETES),
    Component("etcd", "etcd", "go.etcd.io/etcd/server/v3", versions.ETCD),
    Component("etcdctl", "etcd", "go.etcd.io/etcd/etcdctl/v3", versions.ETCD),
    Component("etcdutl", "etcd", "go.etcd.io/etcd/etcdutl/v3", versions.ETCD),
    Component("kwok", "kwok", "sigs.k8s.io/kwok/cmd/kwok", versions.KWOK),
    Component("kwokctl", "kwok", "sigs.k8s.io/kwok/cmd/kwokctl", versions.KWOK),
)
BY_NAME = {c.name: c for c in COMPONENTS}


@dataclass(frozen=True)
class Toolchain:
    """Absolute paths of every component, ready to run."""

    bins: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.bins[name]

    @property
    def bin_dir(self) -> Path:
        """Folder of kubectl, so a shell can put the pinned kubectl first on PATH."""
        return self.bins["kubectl"].parent


def env_var(name: str) -> str:
    return "MLOPS_DRILL_" + name.upper().replace("-", "_")


def build_dir() -> Path:
    return paths.cache_dir() / "bin" / versions.cache_key()


def _ldflags(component: Component) -> str:
    """Version stamps, so `kube-apiserver --version` says v1.36.3 like a release build.

    kwokctl reads the versions of the binaries it is given and picks flags by
    them, so an unstamped ``v0.0.0-master`` would make it misconfigure the cluster.
    """
    flags = ["-s", "-w"]
    if component.module == "kubernetes":
        major, minor = component.version.lstrip("v").split(".")[:2]
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [
                f"-X {pkg}.gitVersion={component.version}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
                f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
            ]
    elif component.module == "kwok":
        flags.append(f"-X sigs.k8s.io/kwok/pkg/consts.Version={component.version.lstrip('v')}")
        flags.append(f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={versions.KUBERNETES.lstrip('v')}")
    return " ".join(flags)


def _recipe_hash() -> str:
    """Hash of the wrapper modules: a changed go.sum invalidates the cache."""
    digest = hashlib.sha256()
    for module in sorted({c.module for c in COMPONENTS}):
        for fname in ("go.mod", "go.sum"):
            digest.update((HERE / module / fname).read_bytes())
    for component in COMPONENTS:
        digest.update(_ldflags(component).encode())
    return digest.hexdigest()[:16]


def _reports_version(binary: Path, version: str) -> bool:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = out.stdout + out.stderr
    return version in text or version.lstrip("v") in text


def _explicit(component: Component) -> Path | None:
    value = os.environ.get(env_var(component.name))
    if value:
        path = Path(value).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DrillError(f"{env_var(component.name)}={value}: not an executable file")
        return path.resolve()
    bin_dir = os.environ.get("MLOPS_DRILL_BIN_DIR")
    if bin_dir:
        path = Path(bin_dir).expanduser() / component.name
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    return None


def _cached(component: Component) -> Path | None:
    path = build_dir() / component.name
    marker = build_dir() / ".recipe"
    if path.is_file() and marker.is_file() and marker.read_text().strip() == _recipe_hash():
        return path
    return None


def _on_path(component: Component) -> Path | None:
    found = shutil.which(component.name)
    if found and _reports_version(Path(found), component.version):
        return Path(found).resolve()
    return None


def resolve_without_building() -> tuple[dict[str, Path], list[Component]]:
    """Paths found without building anything, and the components still missing."""
    found: dict[str, Path] = {}
    missing: list[Component] = []
    for component in COMPONENTS:
        path = _explicit(component) or _cached(component) or _on_path(component)
        if path:
            found[component.name] = path
        else:
            missing.append(component)
    return found, missing


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Serialise builds: two processes building at once would double the time."""
    lock_path = paths.cache_dir() / "bin" / ".build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def go_binary() -> str:
    """The ``go`` command, or a clear error saying how to get it."""
    found = os.environ.get("GO") or shutil.which("go")
    if not found:
        raise DrillError(
            "go: command not found; the embedded cluster is built from Go modules: "
            "install Go >= 1.26 (e.g. `apt-get install golang`), or set MLOPS_DRILL_BIN_DIR "
            "to a folder with the binaries, or MLOPS_DRILL_DOWNLOAD=1 to fetch release binaries"
        )
    return found


def _go_build(go: str, component: Component, out: Path, log: Path) -> None:
    env = dict(os.environ, GOFLAGS="-mod=readonly -buildvcs=false", CGO_ENABLED="0")
    cmd = [go, "build", "-trimpath", "-ldflags", _ldflags(component), "-o", str(out), component.package]
    with open(log, "ab") as handle:
        handle.write(f"$ {' '.join(cmd)}\n".encode())
        handle.flush()
        result = subprocess.run(cmd, cwd=HERE / component.module, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise DrillError(f"go build {component.package} failed ({tail[0]}); full log: {log}")


def _download(component: Component, out: Path) -> None:
    """Fetch an official release binary (opt-in; needs internet)."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    if component.module == "kubernetes":
        url = f"https://dl.k8s.io/release/{component.version}/bin/linux/{arch}/{component.name}"
    elif component.module == "kwok":
        url = f"https://github.com/kubernetes-sigs/kwok/releases/download/{component.version}/{component.name}-linux-{arch}"
    else:
        url = f"https://github.com/etcd-io/etcd/releases/download/{component.version}/etcd-{component.version}-linux-{arch}.tar.gz"
    try:
        with urllib.request.urlopen(url, timeout=30) as response, tempfile.TemporaryFile() as tmp:
            shutil.copyfileobj(response, tmp)
            tmp.seek(0)
            if url.endswith(".tar.gz"):
                with tarfile.open(fileobj=tmp) as tar:
                    member = next(m for m in tar.getmembers() if m.name.endswith("/" + component.name))
                    data = tar.extractfile(member)
                    assert data is not None
                    out.write_bytes(data.read())
            else:
                out.write_bytes(tmp.read())
    except Exception as exc:  # network errors come in many types; all mean the same to a user
        raise DrillError(f"download of {component.name} from {url} failed: {exc}") from exc
    out.chmod(0o755)


def build_missing(missing: list[Component], progress: bool = True) -> dict[str, Path]:
    """Build (or, opted in, download) the missing components into the cache."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    download = os.environ.get("MLOPS_DRILL_DOWNLOAD") == "1"
    go = None if download else go_binary()
    target = build_dir()
    target.mkdir(parents=True, exist_ok=True)
    log = target / "build.log"
    built: dict[str, Path] = {}
    with _build_lock(), Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), disable=not progress, transient=False,
    ) as bar:
        task = bar.add_task("control plane", total=len(missing))
        for component in missing:
            ready = _cached(component)
            if ready is None:
                verb = "downloading" if download else "building (first time only, minutes)"
                bar.update(task, description=f"{verb} {component.name} {component.version}")
                started = time.monotonic()
                tmp = target / f".{component.name}.partial"
                if download:
                    _download(component, tmp)
                else:
                    assert go is not None
                    _go_build(go, component, tmp, log)
                tmp.replace(target / component.name)
                with open(log, "a") as handle:
                    handle.write(f"# {component.name}: {time.monotonic() - started:.1f}s\n")
                ready = target / component.name
                if all((target / c.name).is_file() for c in COMPONENTS):
                    (target / ".recipe").write_text(_recipe_hash())
            built[component.name] = ready
            bar.advance(task)
        bar.update(task, description="control plane ready")
    (target / ".recipe").write_text(_recipe_hash())
    return built


def ensure_toolchain(progress: bool = True) -> Toolchain:
    """All binaries, building the missing ones first (once per machine)."""
    found, missing = resolve_without_building()
    if missing:
        found.update(build_missing(missing, progress=progress))
    return Toolchain(bins=found)
