"""The kwokctl configuration file for the embedded cluster.

One multi-document YAML: kwokctl options (bind to loopback only, binary
runtime), kwok-controller options (which CRDs it watches), and our stages.
"""
from __future__ import annotations

from pathlib import Path

import yaml

STAGES = Path(__file__).with_name("stages.yaml")

# Per-pod kubelet behaviour (logs, exec, port-forward) is created at run time by the
# process kubelet as namespaced KWOK objects; the API server must know their CRDs.
KWOK_CRDS = ("Logs", "ClusterLogs", "PortForward", "ClusterPortForward", "Exec", "ClusterExec")


def kwokctl_config(api_port: int | None, exec_path: str = "", kubelet_port: int | None = None,
                   pki: Path | None = None) -> str:
    """Config text for ``kwokctl create cluster --config``.

    ``exec_path`` is the PATH kwok-controller runs ``kubectl exec`` commands with
    (our private bin folder first, so ``nvidia-smi`` is the fake one).
    ``kubelet_port``: the port every node names as its kubelet endpoint (the node
    agent's exec front, ``processpods/execfront.py``), instead of KWOK's own server;
    the API server then presents kwokctl's admin certificate (in ``pki``) to it.
    """
    options: dict = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "kubeAuthorization": True,
        "enableCRDs": list(KWOK_CRDS),
        "nodeLeaseDurationSeconds": 40,
    }
    if api_port:
        options["kubeApiserverPort"] = api_port
    patches: list[dict] = [
        # All KWOK nodes share the loopback kubelet endpoint; their Hostname addresses do not resolve.
        # PodNodeSelector: the namespaces of a seat of a shared cluster keep its pods on its own nodes.
        {"name": "kube-apiserver", "extraArgs": [{"key": "kubelet-preferred-address-types", "value": "InternalIP"},
                                                 {"key": "enable-admission-plugins", "value": "PodNodeSelector"}]
         + ([{"key": "kubelet-client-certificate", "value": str(pki / "admin.crt")},
             {"key": "kubelet-client-key", "value": str(pki / "admin.key")}] if pki is not None else [])},
        # One instance each: leader election only makes a restarted controller wait out the old lease.
        {"name": "kube-controller-manager", "extraArgs": [{"key": "leader-elect", "value": "false"}]},
        {"name": "kube-scheduler", "extraArgs": [{"key": "leader-elect", "value": "false"}]},
    ]
    if exec_path:
        patches.append({"name": "kwok-controller", "extraEnvs": [{"name": "PATH", "value": exec_path}]})
    kwokctl = {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokctlConfiguration", "options": options,
               "componentsPatches": patches}
    kwok = {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
            # A config document replaces kwok's defaults wholesale, so the defaults we keep are spelled out.
            "options": {"cidr": "10.244.0.0/16", "nodeIP": "127.0.0.1", "manageAllNodes": True,
                        "enableDebuggingHandlers": True, "enableProfilingHandler": False,
                        "podPlayStageParallelism": 4, "nodePlayStageParallelism": 4, "nodeLeaseParallelism": 4,
                        "podsOnNodeSyncParallelism": 1, "enablePodsOnNodeSyncListPager": True,
                        "enablePodsOnNodeSyncStreamWatch": False}}
    stages = STAGES.read_text()
    if kubelet_port:
        stages = stages.replace("{{ with NodePort }}", "{{ with %d }}" % kubelet_port)
    return yaml.safe_dump_all([kwokctl, kwok], sort_keys=False) + "---\n" + stages
