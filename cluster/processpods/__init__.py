"""Process-backed pods: a kopf operator that plays the kubelet for labelled pods on KWOK nodes."""
from mlops_drill.cluster.processpods.podspec import PROCESS_LABEL

__all__ = ["PROCESS_LABEL"]
