"""The floor every agent must beat: seeded random lines from a fixed vocabulary.

Why a vocabulary of plausible lines and not random text: random text is refused
and scores nothing, which says little. Plausible kubectl/curl lines, some of
them changes (a restart, a rollback, a cordon), in random order and with a
random diagnosis, are what an agent that has learned the tools but not the
method would do; the rubric must tell that apart from a method.
"""
from __future__ import annotations

import random
import re
import zlib

from mlops_drill.server.client import CommandRefused, Session

COMMANDS = 20
SEED = 7

VOCABULARY = (
    "kubectl get pods -A",
    "kubectl get pods -n serving -o wide",
    "kubectl get pods -n training",
    "kubectl get pods -n features",
    "kubectl get pods -n gpu-operator -o wide",
    "kubectl get events -A --sort-by=.lastTimestamp",
    "kubectl get events -n serving",
    "kubectl get nodes",
    "kubectl describe node gpu-node-0",
    "kubectl describe node gpu-node-1",
    "kubectl get deploy -A",
    "kubectl get jobs,cronjobs -A",
    "kubectl describe deploy fraud-model -n serving",
    "kubectl get deploy fraud-model -n serving -o yaml",
    "kubectl rollout history deploy/fraud-model -n serving",
    "kubectl logs -n serving deploy/fraud-model --tail=20",
    "kubectl logs -n serving deploy/traffic-replay --tail=5",
    "kubectl logs -n features -l app=feature-refresh --tail=20",
    "kubectl get configmaps -n serving",
    "kubectl get svc -A",
    "kubectl top pods -n serving",
    "kubectl port-forward -n serving svc/fraud-model :80",
    "kubectl port-forward -n registry svc/model-registry :80",
    "kubectl port-forward -n features svc/feature-store :80",
    "curl -s localhost:{port}/metadata",
    "curl -s localhost:{port}/metrics",
    "curl -s localhost:{port}/healthz",
    "curl -s localhost:{port}/freshness",
    "curl -s localhost:{port}/api/2.0/mlflow/registered-models/get?name=fraud-model",
    "kubectl rollout restart deploy/fraud-model -n serving",
    "kubectl delete pod -n serving -l app=fraud-model --wait=false",
    "kubectl scale deploy/fraud-model -n serving --replicas=3",
    "kubectl rollout undo deploy/fraud-model -n serving",
    "kubectl cordon gpu-node-0",
    "kubectl uncordon gpu-node-0",
    "kubectl exec -n gpu-operator ds/nvidia-device-plugin-daemonset -- nvidia-smi",
    "nvidia-smi",
)

DIAGNOSES = (
    "the GPU nodes are out of capacity",
    "a bad deploy of fraud-model",
    "the model needs retraining",
    "network problems between the services",
    "the feature store is slow",
    "a node is unhealthy",
)


def agent(session: Session, *, seed: int = SEED, commands: int = COMMANDS) -> None:
    """Entry point for ``mlops-drill benchmark --agent mlops_drill.agents.random_agent:agent``.

    The seed mixes in the scenario id, so each scenario gets its own, repeatable sequence.
    """
    rng = random.Random(seed * 1_000_003 + zlib.crc32(session.scenario.encode()))
    ports: list[int] = []
    for _ in range(commands):
        line = rng.choice(VOCABULARY)
        if "{port}" in line:
            line = line.format(port=rng.choice(ports) if ports else 8080)
        try:
            result = session.run(line, timeout_s=60)
        except CommandRefused:
            continue
        found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", result.stdout)
        if found:
            ports.append(int(found.group(1)))
    session.diagnose(rng.choice(DIAGNOSES))
