"""What the agent API lets through, decided from the line alone (no cluster needed)."""
from __future__ import annotations

import pytest

from mlops_drill.server.policy import Refused, check

PORTS = frozenset({18080})

ALLOWED = [
    "kubectl get pods -A -o wide",
    "kubectl -n serving get po",
    "kubectl get events -n serving --sort-by=.lastTimestamp",
    "kubectl describe pod -n serving -l app=fraud-model",
    "kubectl logs -n serving deploy/traffic-replay --tail=5 --prefix",
    "kubectl get deploy fraud-model -n serving -o jsonpath='{.spec.template.spec.tolerations}'",
    "kubectl get nodes -o custom-columns='NAME:.metadata.name,GPU:.status.allocatable.nvidia\\.com/gpu'",
    "kubectl rollout undo deploy/fraud-model -n serving",
    "kubectl rollout status deploy/fraud-model -n serving -w --timeout=120s",
    "kubectl patch deploy fraud-model -n serving --type=json -p "
    "'[{\"op\":\"add\",\"path\":\"/spec/template/spec/tolerations\",\"value\":[]}]'",
    "kubectl set env deploy/fraud-model -n serving MODEL_VERSION-",
    "kubectl exec -n gpu-operator ds/nvidia-device-plugin-daemonset -- nvidia-smi",
    "kubectl exec -n gpu-operator ds/nvidia-device-plugin-daemonset -- nvidia-smi -q -d UTILIZATION",
    "kubectl port-forward -n serving svc/fraud-model :80",
    "kubectl cordon gpu-node-1",
    "kubectl get cm -n mlops-drill-system",  # allowed here; the seat's RBAC refuses it
    "curl -s localhost:18080/metadata",
    "curl -sS -X POST localhost:18080/predict -H 'Content-Type: application/json' -d '{\"features\":{}}'",
    "curl -s 'localhost:18080/api/2.0/mlflow/model-versions/search?filter=name=\"fraud-model\"'",
    "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/healthz",
    "kubectl get pods -n serving -l 'app in (fraud-model)'",
]

REFUSED = [
    ("", "empty"),
    ("bash -c id", "only kubectl and curl"),
    ("sh", "only kubectl and curl"),
    ("/usr/bin/kubectl get pods", "only kubectl and curl"),
    ("KUBECONFIG=/x kubectl get pods", "only kubectl and curl"),
    ("kubectl get pods; rm -rf /", "';'"),
    ("kubectl get pods | grep x", "'|'"),
    ("kubectl get pods && id", "'&&'"),
    ("kubectl port-forward -n serving svc/fraud-model :80 &", "background"),
    ("kubectl get pods > out.txt", "'>'"),
    ("kubectl get pods < in.txt", "'<'"),
    ("kubectl get pods $(id -u)", "substitution"),
    ('kubectl get pods "$(id -u)"', "substitution"),
    ("kubectl get pods `id`", "substitution"),
    ("kubectl get pods\nid", "newline"),
    ("kubectl get 'pods", "split"),
    ("nvidia-smi", "kubectl exec -n gpu-operator"),
    ("kubectl", "verb"),
    ("kubectl krew install x", "not available"),
    ("kubectl edit deploy fraud-model -n serving", "editor"),
    ("kubectl proxy", "never ends"),
    ("kubectl cp serving/x:/etc/passwd .", "files"),
    ("kubectl config view --raw", "kubeconfig"),
    ("kubectl --kubeconfig=/root/admin get pods", "--kubeconfig"),
    ("kubectl --kubeconfig /root/admin get pods", "--kubeconfig"),
    ("kubectl get pods --context=admin", "--context"),
    ("kubectl -s https://127.0.0.1:6443 get pods", "--server"),
    ("kubectl get pods --token abc", "--token"),
    ("kubectl get pods --as=system:admin", "--as"),
    ("kubectl apply -f /tmp/x.yaml", "reads a file"),
    ("kubectl apply -f-", "stdin"),
    ("kubectl create cm x --from-file=/etc/passwd", "--from-file"),
    ("kubectl get pods -o jsonpath-file=/etc/passwd", "jsonpath-file"),
    ("kubectl get pods -w", "watch"),
    ("kubectl logs -f deploy/x", "--follow"),
    ("kubectl exec -it pod -- nvidia-smi", "terminal"),
    ("kubectl exec pod -- cat /etc/passwd", "only nvidia-smi"),
    ("kubectl exec pod -- sh -c nvidia-smi", "only nvidia-smi"),
    ("kubectl port-forward --address 0.0.0.0 svc/x :80", "--address"),
    ("kubectl get pods -k .", "--kustomize"),
    ("curl", "needs a URL"),
    ("curl -s localhost:2379/v3/kv/range", "port-forwards"),
    ("curl -s http://example.com:18080/", "port-forwards"),
    ("curl file:///etc/passwd", "file://"),
    ("curl -s https://localhost:18080/", "https://"),
    ("curl -o /tmp/x localhost:18080/metadata", "/dev/null"),
    ("curl -d @/etc/passwd localhost:18080/predict", "@FILE"),
    ("curl -H @/etc/passwd localhost:18080/predict", "@FILE"),
    ("curl -K cfg localhost:18080/", "-K"),
    ("curl --unix-socket /x http://localhost:18080/", "--unix-socket"),
    ("curl -x http://proxy:1 localhost:18080/", "-x"),
    ("curl -s 'localhost:{18080,2379}/x'", "globbing"),
    ("curl -s 'localhost:18080/[1-3]'", "globbing"),
]


@pytest.mark.parametrize("line", ALLOWED)
def test_allowed(line):
    checked = check(line, PORTS)
    assert checked.argv[0] == checked.tool


@pytest.mark.parametrize("line,why", REFUSED)
def test_refused_with_one_line_that_says_why(line, why):
    with pytest.raises(Refused) as info:
        check(line, PORTS)
    message = str(info.value)
    assert "\n" not in message and why in message, message


def test_stdin_goes_with_dash_f_only():
    assert check("kubectl apply -f -", PORTS, stdin="{}").uses_stdin
    with pytest.raises(Refused, match="stdin"):
        check("kubectl get pods", PORTS, stdin="{}")
    with pytest.raises(Refused, match="stdin"):
        check("curl -s localhost:18080/metadata", PORTS, stdin="{}")


def test_curl_needs_a_live_forward():
    with pytest.raises(Refused, match="forwarded now: none yet"):
        check("curl -s localhost:18080/metadata", frozenset())
