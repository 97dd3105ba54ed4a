"""The `mlops-drill` command line: thin wrappers over the parts' public functions.

Every user-fixable problem surfaces as one line on stderr and exit code 1;
tracebacks are kept for real bugs.
"""
from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from mlops_drill.errors import DrillError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Fault-injection troubleshooting drills for MLOps.")
toolchain_app = typer.Typer(no_args_is_help=True, help="The Kubernetes binaries the embedded cluster runs.")
cluster_app = typer.Typer(no_args_is_help=True, help="Start, inspect and stop the drill cluster.")
app.add_typer(toolchain_app, name="toolchain")
app.add_typer(cluster_app, name="cluster")

console = Console(stderr=True)
out = Console()

BackendOpt = typer.Option("embedded", "--backend", "-b", help="embedded | kind | existing")
NameOpt = typer.Option("mlops-drill", "--name", help="cluster name")
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="kubeconfig (existing backend)")
ContextOpt = typer.Option(None, "--context", help="kubeconfig context (existing backend)")


@app.callback()
def _global(scenarios: Optional[list[str]] = typer.Option(
        None, "--scenarios", metavar="DIR",
        help="a folder of scenario YAML beside the built-in catalogue (repeatable; also MLOPS_DRILL_SCENARIOS=DIR:DIR)")
        ) -> None:
    """Fault-injection troubleshooting drills for MLOps."""
    if scenarios:
        from mlops_drill.scenarios.packs import add_pack_dirs

        add_pack_dirs(scenarios)


@toolchain_app.command("build")
def toolchain_build(backend: str = typer.Option("embedded", "--backend", "-b", help="embedded | kind")) -> None:
    """Build (once) or locate kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok.

    With --backend kind: also kind, kubelet, kubeadm, kube-proxy, the component images, the node image and
    the platform image (cached under ~/.cache/mlops-drill/kind; each step skipped once built).
    """
    from mlops_drill.cluster.toolchain import ensure_toolchain

    if backend == "kind":
        from mlops_drill.cluster.kindbuild.pipeline import ensure_kind_build

        build = ensure_kind_build(progress=True)
        out.print(f"{'kind':<24} {build.kind}\n{'kubectl':<24} {build.kubectl}\n"
                  f"{'node image':<24} {build.node_image}\n{'platform image':<24} {build.platform_image}")
        return
    if backend != "embedded":
        raise DrillError(f"--backend {backend}: toolchain build knows embedded and kind")

    chain = ensure_toolchain(progress=True)
    for name, path in sorted(chain.bins.items()):
        out.print(f"{name:<24} {path}")


@toolchain_app.command("status")
def toolchain_status() -> None:
    """Which binaries are found where, without building anything."""
    from mlops_drill.cluster.toolchain.binaries import build_dir, resolve_without_building

    found, missing = resolve_without_building()
    for name, path in sorted(found.items()):
        out.print(f"{name:<24} {path}")
    for component in missing:
        out.print(f"{component.name:<24} missing (will be built into {build_dir()})")


def _backend(backend: str, name: str, kubeconfig: Optional[str], context: Optional[str], config=None):
    from mlops_drill.cluster.backends import get_backend

    return get_backend(backend, name=name, kubeconfig=kubeconfig, context=context, config=config)


@cluster_app.command("up")
def cluster_up(backend: str = BackendOpt, name: str = NameOpt,
               kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt,
               config: Optional[str] = typer.Option(
                   None, "--config", metavar="FILE",
                   help="cluster config YAML, e.g. `gpu_products: {gpu-node-1: H200}` (H100, H200, A100); "
                        "kept for later commands")) -> None:
    """Start the cluster (or reuse a running one) with its four node pools."""
    from mlops_drill.interrupts import up_cleaned_on_interrupt

    chosen = None
    if config is not None:
        from mlops_drill.cluster.config import load_config

        chosen = load_config(config)
    info = up_cleaned_on_interrupt(_backend(backend, name, kubeconfig, context, chosen), progress=True)
    print(info.summary())


@cluster_app.command("down")
def cluster_down(backend: str = BackendOpt, name: str = NameOpt,
                 kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt) -> None:
    """Stop the cluster and remove its state; leaves nothing running."""
    _backend(backend, name, kubeconfig, context).down()
    out.print(f"cluster {name} is down")


@cluster_app.command("status")
def cluster_status(backend: str = BackendOpt, name: str = NameOpt,
                   kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt) -> None:
    """Kubeconfig path, API address, nodes and component health."""
    status = _backend(backend, name, kubeconfig, context).status()
    print(status.render())
    if not status.healthy:
        raise typer.Exit(1)


def _current_session() -> dict:
    """The drill running on the default embedded cluster (for `mlops-drill shell` without arguments)."""
    from mlops_drill.cluster.backends import get_backend
    from mlops_drill.injector import engine
    from mlops_drill.injector.context import context_for

    session = engine.load_session(context_for(get_backend()))
    if session is None:
        raise DrillError("no scenario is running: `mlops-drill start <id>` first")
    return {"kubeconfig": session.candidate_kubeconfig, "transcript": session.transcript,
            "scenario": session.scenario}


def _register_parts() -> None:
    """Let parts that own commands add them; a part that is absent is simply skipped."""
    import importlib

    for module in ("mlops_drill.grader.cli", "mlops_drill.injector.cli", "mlops_drill.drills.cli", "mlops_drill.server.cli",
                   "mlops_drill.scenarios.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):  # the part (or its package) is not installed
                continue
            raise
        mod.register(app, _current_session)


def main() -> None:
    from mlops_drill.interrupts import Interrupted, stop_on_signals

    _register_parts()
    try:
        with stop_on_signals():  # SIGTERM/SIGINT/SIGHUP unwind: `finally` blocks and interrupt cleanups run
            code = app(standalone_mode=False)  # a typer.Exit comes back as its exit code here
        sys.exit(code if isinstance(code, int) else 0)
    except Interrupted as exc:
        console.print(str(exc), highlight=False)
        sys.exit(exc.code)
    except DrillError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        # typer >= 0.2x raises its vendored click's exceptions (typer._click), not click's own.
        if isinstance(exc, click.ClickException) or (isinstance(exc, typer.TyperException)
                                                      and callable(getattr(exc, "show", None))):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
