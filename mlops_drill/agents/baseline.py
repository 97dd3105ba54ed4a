"""A deterministic baseline agent that follows the playbook framework, and nothing scenario-specific.

It knows what an on-call ML platform engineer knows before the page: the
platform's namespaces, that ``fraud-model`` serves behind a Service, that the
registry says which model version is Production, that the feature store has a
``/freshness`` endpoint. It never sees the scenario (expected steps, hints,
faults, fix checks): only the briefing and what its commands print.

The framework, in order:

1. triage: pods in every platform namespace, events by time, describe and read
   the logs of what is not running, GPU capacity of the nodes;
2. model correctness: the traffic replay's view, a smoke prediction through a
   port-forward, the served model (``/metadata``) against the registry's
   Production version and its lineage, ``/metrics`` (errors, null feature
   rates, score distribution), the app's logs, the feature store's
   ``/freshness``;
3. localise: what changed (rollout history, the latest revision's changes
   judged by their direction), what else sits behind the Service, what holds
   the GPUs, what failing CronJobs and Jobs say, which online features are
   null and why;
4. hypothesise from the findings, then remediate with one generic safe move it
   can justify from evidence (roll back a risky revision or revert its risky
   env, scale down a failing extra backend, cordon a node whose GPU stack is
   broken and move its replicas, suspend an idle GPU-holding Job, correct the
   setting a CronJob's own error names and re-run it, map a renamed upstream
   column, re-create a Job with checkpointing on its state volume);
5. re-check the symptom, then state the diagnosis (its finding, quoted from
   the evidence).
"""
from __future__ import annotations

import difflib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from mlops_drill.agents.evidence import (Sample, age_seconds, containers, env_of, json_lines, json_or_none,
                                         prometheus, table, template_changes)
from mlops_drill.server.client import CommandRefused, CommandResult, Session

PLATFORM_NAMESPACES = ("serving", "features", "registry", "training", "gpu-operator")
SERVICES = {"model": ("serving", "fraud-model"), "registry": ("registry", "model-registry"),
            "features": ("features", "feature-store")}
RECENT_S = 15 * 60  # a ConfigMap younger than this appeared with the incident
GPU_WORDS = re.compile(r"cuda|nvml|xid|nvidia|driver|\bgpu", re.I)
ERROR_WORDS = re.compile(r"error|fail|exception|unsupported|mismatch|lost|fallen", re.I)
IDLE = re.compile(r"waiting|idle|not complete yet|sleeping", re.I)
_FWD = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")
# The request format is in the service's docs; an ordinary daytime card-present purchase.
SMOKE_REQUEST = json.dumps({"features": {"amount": 42.5, "hour_of_day": 14, "distance_km": 3.0, "card_present": 1}},
                           separators=(",", ":"))


@dataclass
class Finding:
    """A cause the evidence supports, the move that fixes it, and how to see it worked."""

    kind: str
    hypothesis: str
    diagnosis: str
    fix: Callable[[], bool]
    priority: int
    recheck: Callable[[], None] = lambda: None


@dataclass
class Pod:
    namespace: str
    name: str
    ready: str
    status: str
    restarts: int
    node: str

    @property
    def healthy(self) -> bool:
        if self.status == "Completed":
            return True
        done, _, want = self.ready.partition("/")
        return self.status == "Running" and done == want


@dataclass
class Notes:
    """Everything the agent learned, in the words it will use to explain itself."""

    pods: list[Pod] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)         # "ns/pod" -> log text
    gpu_nodes: dict[str, int] = field(default_factory=dict)    # node -> allocatable GPUs
    metadata: dict = field(default_factory=dict)
    production_version: str | None = None
    metrics: list[Sample] = field(default_factory=list)
    freshness: dict = field(default_factory=dict)
    replay: list[dict] = field(default_factory=list)
    app_log: str = ""
    training_mean_score: float | None = None


class Baseline:
    """One run of the baseline agent on one session."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.notes = Notes()
        self.ports: dict[str, int] = {}
        self._reads: dict[str, str] = {}

    # ------------------------------------------------------------------ plumbing
    def sh(self, command: str, *, stdin: str | None = None, timeout_s: float = 120.0) -> CommandResult | None:
        try:
            return self.s.run(command, stdin=stdin, timeout_s=timeout_s)
        except CommandRefused:
            return None

    def out(self, command: str, **kw) -> str:
        """stdout of a read; the same read twice before any change is answered from memory, as a person
        scrolls back instead of re-running it."""
        if command not in self._reads:
            result = self.sh(command, **kw)
            self._reads[command] = result.stdout if result is not None and result.ok else ""
        return self._reads[command]

    def forward(self, key: str, fresh: bool = False) -> int | None:
        """A local port for a platform Service (a new forward after pods were replaced)."""
        if key in self.ports and not fresh:
            return self.ports[key]
        ns, svc = SERVICES[key]
        result = self.sh(f"kubectl port-forward -n {ns} svc/{svc} :80")
        match = _FWD.search(result.stdout) if result is not None else None
        if match is None:
            return None
        self.ports[key] = int(match.group(1))
        return self.ports[key]

    def curl(self, key: str, path: str) -> str:
        port = self.forward(key)
        return self.out(f"curl -s -m 10 'localhost:{port}{path}'") if port else ""

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        self.triage()
        self.model_checks()
        findings = self.localise()
        findings.sort(key=lambda f: -f.priority)
        for finding in findings[:3]:
            self.s.hypothesize(finding.hypothesis)
        if findings:
            best = findings[0]
            self._reads.clear()  # after a change every read is fresh
            if best.fix():
                best.recheck()
            self.s.diagnose(best.diagnosis)
        else:
            self.s.diagnose(self.no_finding())

    # ------------------------------------------------------------------ 1. triage
    def triage(self) -> None:
        n = self.notes
        for row in table(self.out("kubectl get pods -A -o wide")):
            if row.get("NAMESPACE") not in PLATFORM_NAMESPACES:
                continue
            restarts = re.match(r"\d+", row.get("RESTARTS", "0"))
            n.pods.append(Pod(row["NAMESPACE"], row.get("NAME", ""), row.get("READY", ""), row.get("STATUS", ""),
                              int(restarts.group(0)) if restarts else 0, row.get("NODE", "")))
        n.events = [e for e in table(self.out("kubectl get events -A --sort-by=.lastTimestamp"))
                    if e.get("NAMESPACE") in PLATFORM_NAMESPACES]
        workloads = [p for p in self.unhealthy() if p.namespace != "gpu-operator"][:4]
        for pod in workloads:
            self.inspect_pod(pod)
        nodes = table(self.out("kubectl get nodes -o custom-columns='NAME:.metadata.name,"
                               "GPU:.status.allocatable.nvidia\\.com/gpu,UNSCHEDULABLE:.spec.unschedulable,"
                               "TAINTS:.spec.taints[*].key'"))
        for row in nodes:
            if row.get("GPU", "<none>") not in ("<none>", ""):
                n.gpu_nodes[row["NAME"]] = int(row["GPU"]) if row["GPU"].isdigit() else 0
        for node in self.suspect_nodes():
            self.sh(f"kubectl describe node {node}")
        for pod in [p for p in self.unhealthy() if p.namespace == "gpu-operator"][:2]:
            self.inspect_pod(pod)

    def inspect_pod(self, pod: Pod) -> None:
        """describe (events, state) and, once it has run, its logs (the run before too if it crashed)."""
        self.sh(f"kubectl describe pod {pod.name} -n {pod.namespace}")
        if pod.status == "Pending":
            return
        log = self.out(f"kubectl logs {pod.name} -n {pod.namespace} --tail=40")
        if pod.restarts and _gpu_error(log) is None:
            log += self.out(f"kubectl logs {pod.name} -n {pod.namespace} --previous --tail=40")
        self.notes.logs[f"{pod.namespace}/{pod.name}"] = log

    def unhealthy(self) -> list[Pod]:
        bad = [p for p in self.notes.pods if not p.healthy and p.status not in ("Completed", "Terminating")]
        bad.sort(key=lambda p: (p.namespace == "gpu-operator", p.status == "Error"))
        return bad

    def suspect_nodes(self) -> list[str]:
        """GPU nodes worth a describe: all of them when GPUs or scheduling are involved, else none."""
        gpu_words = re.search(r"gpu|pending|restart|replica", self.s.briefing, re.I)
        touched = {p.node for p in self.unhealthy() if p.node in self.notes.gpu_nodes}
        pending = any(p.status == "Pending" for p in self.unhealthy())
        if pending or gpu_words:
            return sorted(self.notes.gpu_nodes)
        return sorted(touched)

    # ------------------------------------------------------------------ 2. model correctness
    def model_checks(self) -> None:
        n = self.notes
        n.replay = [e for e in json_lines(self.out("kubectl logs -n serving deploy/traffic-replay --tail=4"))
                    if "status_codes" in e]
        self.smoke_prediction()
        n.metadata = json_or_none(self.curl("model", "/metadata")) or {}
        n.metrics = prometheus(self.curl("model", "/metrics"))
        n.app_log = self.out("kubectl logs -n serving -l app=fraud-model --tail=50 --prefix")
        registry = json_or_none(self.curl("registry", "/api/2.0/mlflow/registered-models/get?name=fraud-model")) or {}
        served = n.metadata.get("model_version")
        for version in (registry.get("registered_model") or {}).get("latest_versions") or []:
            if version.get("current_stage") == "Production":
                n.production_version = str(version.get("version"))
            if str(version.get("version")) == str(served):
                tags = {t.get("key"): t.get("value") for t in version.get("tags") or []}
                try:
                    n.training_mean_score = float(tags.get("metric.mean_score") or 0) or None
                except ValueError:
                    pass
        if served and served != n.production_version:
            self.curl("registry", f"/api/2.0/mlflow/model-versions/get?name=fraud-model&version={served}")
        n.freshness = json_or_none(self.curl("features", "/freshness")) or {}

    def smoke_prediction(self, port: int | None = None) -> None:
        """The team's canned request: does the endpoint score, and what does it say?"""
        port = port or self.forward("model")
        if port:
            self.sh(f"curl -s -m 10 -X POST localhost:{port}/predict -H 'Content-Type: application/json' "
                    f"-d '{SMOKE_REQUEST}'")

    def error_ratio(self) -> float:
        total = errors = 0.0
        for s in self.notes.metrics:
            if s.name == "inference_requests_total" and s.labels.get("endpoint") == "/predict":
                total += s.value
                errors += s.value if s.labels.get("code", "").startswith("5") else 0.0
        for stats in self.notes.replay:
            for code, count in (stats.get("status_codes") or {}).items():
                total += count
                errors += count if str(code).startswith("5") else 0
        return errors / total if total else 0.0

    def stale_views(self) -> dict[str, float]:
        views = (self.notes.freshness.get("feature_views") or {})
        return {k: float(v.get("age_seconds", 0)) for k, v in views.items()
                if float(v.get("age_seconds", 0)) > 15 * 60}

    # ------------------------------------------------------------------ 3. localise
    def localise(self) -> list[Finding]:
        findings: list[Finding] = []
        findings += self.deployment_changes()
        findings += self.extra_backends()
        findings += self.broken_gpu_nodes()
        findings += self.gpu_holders()
        findings += self.failing_cronjobs()
        findings += self.missing_source_columns()
        findings += self.unsafe_training_jobs()
        return findings

    # -- what changed ---------------------------------------------------------------
    def deployment_changes(self) -> list[Finding]:
        """Roll back a Deployment whose latest revision made a risky change (judged by direction)."""
        deployments = [row.get("NAME", "").split("/")[-1]
                       for row in table(self.out("kubectl get deploy -n serving -o wide"))]
        findings = []
        new_cms: frozenset[str] | None = None
        if "fraud-model" in deployments:
            self.sh("kubectl get deploy fraud-model -n serving -o yaml")
        for name in deployments:
            history = self.out(f"kubectl rollout history deploy/{name} -n serving")
            revisions = sorted(int(r) for r in re.findall(r"^(\d+)\s", history, re.M))
            if len(revisions) < 2:
                continue
            latest, prev = revisions[-1], revisions[-2]
            lt = self._revision_template(name, latest)
            pt = self._revision_template(name, prev)
            if lt is None or pt is None:
                continue
            if new_cms is None:
                new_cms = self.recent_configmaps()
            changes = template_changes(pt, lt, new_cms)
            risky = [c for c in changes if c.risky]
            if not risky:
                continue
            findings.append(self._rollback_finding(name, latest, prev, changes, risky))
        return findings

    def _revision_template(self, name: str, revision: int) -> dict | None:
        rs = json_or_none(self.out(f"kubectl rollout history deploy/{name} -n serving --revision={revision} -o json"))
        return ((rs or {}).get("spec") or {}).get("template")

    def recent_configmaps(self) -> frozenset[str]:
        rows = table(self.out("kubectl get configmaps -n serving"))
        return frozenset(r["NAME"] for r in rows if (age_seconds(r.get("AGE", "")) or 1e9) < RECENT_S)

    def _rollback_finding(self, name: str, latest: int, prev: int, changes, risky) -> Finding:
        kinds = {c.kind for c in risky}
        what = "; ".join(c.what for c in changes)
        effects = self.symptom_words(kinds)
        env_only = kinds <= ENV_KINDS
        hypothesis = f"the latest {name} revision ({latest}) {risky[0].what}" + (f", {effects}" if effects else "")
        if env_only:
            undo = "; ".join(_undo_words(c) for c in sorted(risky, key=_containment_order))
            remedy = f"Reverted those settings in the Deployment ({undo}) through a tracked rollout"
            if "literal-secret" in kinds:
                remedy += "; the exposed credential must be rotated"
        else:
            remedy = f"Rolled back to revision {prev} through a tracked rollout (kubectl rollout undo)"
        diagnosis = (f"The latest {name} Deployment revision {latest} {what}" + (f"; {effects}" if effects else "")
                     + f". {remedy}.")
        priority = 90 if kinds & ({"toleration", "gpu"} | ENV_KINDS) else 70

        def fix() -> bool:
            if env_only:
                return all(self.revert_env(name, c) for c in sorted(risky, key=_containment_order))
            result = self.sh(f"kubectl rollout undo deploy/{name} -n serving")
            return bool(result and result.ok)

        def recheck() -> None:
            self.sh(f"kubectl rollout status deploy/{name} -n serving --timeout=180s", timeout_s=200)
            self.sh("kubectl get pods -n serving -o wide")
            self.recheck_serving()
            if "payload-logging" in kinds:
                time.sleep(8)
                self.sh(f"kubectl logs -n serving -l app={name} --since=15s --prefix")
        return Finding("rollback", hypothesis, diagnosis, fix, priority, recheck)

    def revert_env(self, deployment: str, change) -> bool:
        """Put one env var back as the previous revision had it (absent, or from its Secret)."""
        if change.before is None or "value" in change.before and change.kind != "literal-secret":
            value = f"{change.var}-" if change.before is None else f"{change.var}={change.before['value']}"
            result = self.sh(f"kubectl set env deploy/{deployment} -n serving -c {change.container} {value}")
            return bool(result and result.ok)
        current = json_or_none(self.out(f"kubectl get deploy {deployment} -n serving -o json")) or {}
        spec = (((current.get("spec") or {}).get("template") or {}).get("spec") or {})
        for ci, container in enumerate(spec.get("containers") or []):
            if container.get("name") != change.container:
                continue
            for ei, var in enumerate(container.get("env") or []):
                if var.get("name") == change.var:
                    patch = [{"op": "replace", "path": f"/spec/template/spec/containers/{ci}/env/{ei}",
                              "value": change.before}]
                    result = self.sh(f"kubectl patch deploy {deployment} -n serving --type=json "
                                     f"-p '{json.dumps(patch, separators=(',', ':'))}'")
                    return bool(result and result.ok)
        return False

    def symptom_words(self, kinds: set[str]) -> str:
        """The observed effect, in words, for the kinds of change found."""
        n = self.notes
        words = []
        if "toleration" in kinds:
            msgs = [e.get("MESSAGE", "") for e in n.events if e.get("REASON") == "FailedScheduling"]
            if any("taint" in m for m in msgs):
                words.append("so its new pod stays Pending: the scheduler reports untolerated taint(s) on the GPU nodes")
        if "gpu" in kinds:
            device = n.metadata.get("device")
            cpu_nodes = [p.node for p in n.pods if p.namespace == "serving" and p.node
                         and p.node not in n.gpu_nodes and p.name.startswith("fraud-model")]
            if device == "cpu" or cpu_nodes:
                words.append(f"so the pods run on CPU nodes ({', '.join(sorted(set(cpu_nodes))) or 'no GPU'}) "
                             "and inference fell back to CPU (/metadata device: "
                             f"{device or 'unknown'}), slower, with the GPUs idle")
        if "probe" in kinds or "image" in kinds:
            load = [s.value for s in n.metrics if s.name == "model_load_seconds"]
            if load:
                words.append(f"the model load takes {max(load):.1f}s while the readiness probe lets traffic in "
                             "before the model is loaded (cold start)")
        if "configmap" in kinds:
            low = self.low_score_share()
            words.append("the serving transform (preprocessing/scaling) config no longer matches the one the model "
                         "was trained with: training-serving skew"
                         + (f", {low:.0%} of scores are below 0.01" if low is not None else ""))
        if "pin" in kinds and n.production_version and n.metadata.get("model_version") not in (None, n.production_version):
            words.append(f"so serving runs model version {n.metadata.get('model_version')} "
                         f"(stage {n.metadata.get('stage')}) instead of the registry's Production version "
                         f"{n.production_version}")
        if kinds & {"literal-secret", "payload-logging"}:
            pans = len(re.findall(r"\b\d{16}\b", n.app_log))
            words.append("so the credential is readable in the pod spec and request payloads reach the logs"
                         + (f" ({pans} 16-digit card numbers in the last 50 log lines per pod)" if pans else ""))
        if not words and self.error_ratio() > 0.005:
            words.append(f"and {self.error_ratio():.1%} of predictions fail with 5xx since")
        return "; ".join(words)

    def score_shift(self) -> str | None:
        """Live mean score against the served version's training mean (the registry's metric.mean_score)."""
        n = self.notes
        total = {s.name: s.value for s in n.metrics if s.name in ("prediction_score_sum", "prediction_score_count")}
        trained = n.training_mean_score
        if not total.get("prediction_score_count") or not trained:
            return None
        live = total["prediction_score_sum"] / total["prediction_score_count"]
        if 1 / 1.5 < live / trained < 1.5:
            return None
        return (f"input data drift: the live score distribution shifted (mean score {live:.3f} on "
                f"{total['prediction_score_count']:.0f} live requests vs {trained:.3f} on the training data of model "
                f"version {n.metadata.get('model_version')}) while the features are fresh and complete and nothing "
                "was deployed, so the live traffic (the input population) moved away from the training data; "
                "retraining or promoting a model trained on recent data is the remedy once validated")

    def low_score_share(self) -> float | None:
        buckets = {float(s.labels["le"]) if s.labels.get("le") not in (None, "+Inf") else float("inf"): s.value
                   for s in self.notes.metrics if s.name == "prediction_score_bucket"}
        total = buckets.get(float("inf"))
        if not total:
            return None
        low = max((v for le, v in buckets.items() if le <= 0.01), default=0.0)
        return low / total

    # -- what else is behind the Service ---------------------------------------------
    def extra_backends(self) -> list[Finding]:
        """A second Deployment whose pods carry the Service's labels and answer with errors."""
        rows = table(self.out("kubectl get deploy -n serving -o wide"))
        selector = "app=fraud-model"
        extra = [r for r in rows if selector in r.get("SELECTOR", "").split(",")
                 and r.get("NAME", "").split("/")[-1] != "fraud-model"]
        findings = []
        for row in extra:
            name = row["NAME"].split("/")[-1]
            self.sh("kubectl get endpoints fraud-model -n serving")
            log = self.out(f"kubectl logs -n serving deploy/{name} --tail=200")
            errors = [e for e in json_lines(log) if int(e.get("status") or 0) >= 500]
            if not errors and self.error_ratio() < 0.005:
                continue
            sample = (errors[-1].get("error") if errors else None) or "5xx answers"
            image = row.get("IMAGES", "")
            hypothesis = f"{name} ({image}) sits behind the fraud-model Service and returns the 500 errors"
            diagnosis = (f"Deployment {name} ({image}) carries the Service's label {selector}, so the fraud-model "
                         f"Service sends it part of the traffic and it answers 500 ({len(errors)} errors in its last "
                         f"200 log lines, e.g. {sample}); scaled {name} to 0 so the stable fraud-model serves alone.")

            def fix(name: str = name) -> bool:
                result = self.sh(f"kubectl scale deploy/{name} -n serving --replicas=0")
                return bool(result and result.ok)

            def recheck() -> None:
                time.sleep(3)
                self.sh("kubectl get endpoints fraud-model -n serving")
                self.recheck_serving()
            findings.append(Finding("extra-backend", hypothesis, diagnosis, fix, 85, recheck))
        return findings

    # -- broken GPU nodes -----------------------------------------------------------
    def broken_gpu_nodes(self) -> list[Finding]:
        """A replica crash-looping at GPU init on one node: the node's GPU stack is broken, not the app."""
        findings = []
        for pod in self.unhealthy():
            if pod.node not in self.notes.gpu_nodes or pod.namespace != "serving":
                continue
            log = self.notes.logs.get(f"{pod.namespace}/{pod.name}", "")
            app_error = _gpu_error(log)
            if app_error is None:
                continue
            plugin_rows = table(self.out(f"kubectl get pods -n gpu-operator -o wide --field-selector "
                                         f"spec.nodeName={pod.node}"))
            lines: list[str] = []
            for row in plugin_rows:
                lines += self.out(f"kubectl logs -n gpu-operator {row['NAME']} --tail=30").splitlines()
                if not row.get("RESTARTS", "0").startswith("0"):
                    lines += self.out(f"kubectl logs -n gpu-operator {row['NAME']} --previous --tail=30").splitlines()
            # The most specific line first: a hardware event, then a version mismatch, then any error.
            ranked = (next((ln.strip() for ln in lines if re.search(pattern, ln, re.I)), None)
                      for pattern in (r"\bxid", r"mismatch", r"error|fail"))
            plugin_error = next((line for line in ranked if line), None)
            node = pod.node
            quote = _short(app_error)
            hypothesis = (f"the GPU stack on {node} is broken, so the replica there cannot initialise CUDA ({quote})"
                          + (f"; device plugin: {_short(plugin_error)}" if plugin_error else ""))
            diagnosis = (f"GPU node {node} is broken: the fraud-model replica on it crash-loops at CUDA init "
                         f"({quote})" + (f" and the NVIDIA device plugin on {node} reports: {_short(plugin_error)}"
                                          if plugin_error else "")
                         + f". Cordoned {node} and moved the replica to a healthy GPU node; {node} needs its "
                           "GPU/driver repaired (reset, reboot or replacement) before it is uncordoned.")

            owner = re.sub(r"-[a-z0-9]{6,10}-[a-z0-9]{5}$", "", pod.name)
            selector = next((r.get("SELECTOR") for r in table(self.out(f"kubectl get deploy -n {pod.namespace} -o wide"))
                             if r.get("NAME", "").split("/")[-1] == owner), None)

            def fix(node: str = node, pod: Pod = pod, selector: str | None = selector) -> bool:
                cordon = self.sh(f"kubectl cordon {node}")
                # Every replica on the broken node moves, not only the one that already crashed.
                target = f"-l {selector} --field-selector spec.nodeName={node}" if selector else pod.name
                self.sh(f"kubectl delete pod -n {pod.namespace} {target} --wait=false")
                return bool(cordon and cordon.ok and "forbidden" not in cordon.stderr)

            def recheck() -> None:
                self.sh("kubectl rollout status deploy/fraud-model -n serving --timeout=180s", timeout_s=200)
                self.sh("kubectl get pods -n serving -o wide")
            findings.append(Finding("broken-gpu-node", hypothesis, diagnosis, fix, 80, recheck))
            break
        return findings

    # -- who holds the GPUs ---------------------------------------------------------
    def gpu_holders(self) -> list[Finding]:
        """A pod Pending on Insufficient nvidia.com/gpu while another team's idle Job holds the GPUs."""
        starving = [e for e in self.notes.events if e.get("REASON") == "FailedScheduling"
                    and "Insufficient nvidia.com/gpu" in e.get("MESSAGE", "")]
        pending = [p for p in self.unhealthy() if p.status == "Pending"]
        if not starving or not pending:
            return []
        victim = pending[0]
        cols = ("NS:.metadata.namespace,NAME:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,"
                "GPU:.spec.containers[*].resources.requests.nvidia\\.com/gpu,"
                "JOB:.metadata.labels.batch\\.kubernetes\\.io/job-name")
        holders: dict[str, list[dict]] = {}
        for node in sorted(self.notes.gpu_nodes):
            for row in table(self.out(f"kubectl get pods -A -o custom-columns='{cols}' "
                                      f"--field-selector spec.nodeName={node}")):
                if row.get("GPU") in ("<none>", "") or row.get("PHASE") not in ("Running", "Pending"):
                    continue
                if row.get("NS") == "serving" or row.get("JOB") in ("<none>", ""):
                    continue
                holders.setdefault(f"{row['NS']}/{row['JOB']}", []).append(row)
        findings = []
        for key, pods in holders.items():
            ns, job = key.split("/", 1)
            if victim.name.startswith(job):
                continue
            log = self.out(f"kubectl logs -n {ns} {pods[0]['NAME']} --tail=5")
            idle = next((e.get("msg") for e in json_lines(log) if IDLE.search(str(e.get("msg", "")))), None)
            plugin = next((r["NAME"] for r in table(self.out("kubectl get pods -n gpu-operator -o wide"))
                           if r.get("NODE") == pods[0].get("NODE")), None)
            if plugin:
                self.sh(f"kubectl exec -n gpu-operator {plugin} -- nvidia-smi")
            if idle is None:
                continue
            gpus = sum(int(g) for p in pods for g in p.get("GPU", "0").split(",") if g.isdigit())
            hypothesis = f"the {job} Job holds {gpus} GPUs while idle ({idle}), so {victim.name} cannot schedule"
            diagnosis = (f"The {job} Job in {ns} holds {gpus} GPUs on the GPU nodes but is idle ({idle}), so "
                         f"{victim.name} is Pending on Insufficient nvidia.com/gpu; suspended {job} to release its GPUs "
                         "(it resumes when its input is ready).")

            def fix(ns: str = ns, job: str = job) -> bool:
                result = self.sh(f"kubectl patch job {job} -n {ns} --type=merge -p '{{\"spec\":{{\"suspend\":true}}}}'")
                return bool(result and result.ok)

            def recheck(victim: Pod = victim) -> None:
                self.sh(f"kubectl wait pod {victim.name} -n {victim.namespace} --for=condition=Ready --timeout=120s",
                        timeout_s=140)
                self.sh(f"kubectl get pods -n {victim.namespace} -o wide")
            findings.append(Finding("idle-gpu-job", hypothesis, diagnosis, fix, 75, recheck))
        return findings

    # -- failing CronJobs ---------------------------------------------------------------
    def failing_cronjobs(self) -> list[Finding]:
        """A CronJob whose runs fail on a setting its own error message says does not exist."""
        stale = self.stale_views()
        rows = table(self.out("kubectl get cronjobs -A"))
        findings = []
        for row in rows:
            ns, name = row.get("NAMESPACE", ""), row.get("NAME", "")
            if ns not in PLATFORM_NAMESPACES:
                continue
            jobs = table(self.out(f"kubectl get jobs -n {ns} --sort-by=.metadata.creationTimestamp"))
            mine = [j for j in jobs if j.get("NAME", "").startswith(name)]
            failed = [j for j in mine if j.get("STATUS") == "Failed" or j.get("COMPLETIONS", "").startswith("0/")]
            if not failed and not stale:
                continue
            log = self.out(f"kubectl logs -n {ns} -l app={name} --tail=30 --prefix")
            errors = [e for e in json_lines(log) if e.get("level") == "error"]
            message = " ".join(str(e.get("error", e.get("msg", ""))) for e in errors[-1:])
            spec = json_or_none(self.out(f"kubectl get cronjob {name} -n {ns} -o json")) or {}
            template = (((spec.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
            change = _setting_named_in_error(template, message)
            if change is None:
                continue
            var, bad, good = change
            ages = ", ".join(f"{k} {v / 3600:.1f} h old" for k, v in sorted(stale.items()))
            hypothesis = f"{name} fails because {var}={bad} does not exist, so the features it refreshes are stale"
            diagnosis = (f"The {name} CronJob has been failing since its {var} was set to {bad}, which does not exist "
                         f"({_short(message)}), so the online features were not refreshed and are stale"
                         + (f" ({ages})" if ages else "") + f"; set {var}={good} and re-ran the refresh.")

            def fix(ns: str = ns, name: str = name, var: str = var, good: str = good) -> bool:
                result = self.sh(f"kubectl set env cronjob/{name} -n {ns} {var}={good}")
                if not (result and result.ok):
                    return False
                self.rerun_cronjob(ns, name)
                return True

            def recheck() -> None:
                self.sh(f"curl -s -m 10 localhost:{self.forward('features')}/freshness")
            findings.append(Finding("cronjob-setting", hypothesis, diagnosis, fix, 70, recheck))
        return findings

    # -- features materialised as null -------------------------------------------------
    def missing_source_columns(self) -> list[Finding]:
        """An online feature is null because its source column is gone upstream and a renamed column
        carries the data: map it in the refresh job (and make the refresh strict) and re-run it."""
        entity = next((e.get("entity_id") for e in json_lines(self.notes.app_log) if e.get("entity_id")), None)
        if not entity:
            return []
        online = (json_or_none(self.curl("features", f"/features/{entity}")) or {}).get("features") or {}
        null = sorted(f for f, v in online.items() if v is None)
        if not null:
            return []
        views = (json_or_none(self.curl("features", "/feature-views")) or {}).get("feature_views") or {}
        sources = {f.get("name"): f.get("source_column") for v in views.values() for f in v.get("features") or []}
        rows = (json_or_none(self.curl("features", f"/offline/{entity}?limit=1")) or {}).get("rows") or [{}]
        columns = set(rows[0]) if isinstance(rows[0], dict) else set()
        unused = sorted(columns - set(sources.values()) - {"account_id", "entity_id", "event_timestamp"})
        ns = SERVICES["features"][0]
        cronjobs = [r.get("NAME", "") for r in table(self.out("kubectl get cronjobs -A")) if r.get("NAMESPACE") == ns]
        nulls = {s.labels.get("feature", ""): s.value for s in self.notes.metrics if s.name == "feature_null_rate"}
        findings = []
        for feature in null:
            old = sources.get(feature)
            if not old or old in columns or not cronjobs:
                continue
            close = difflib.get_close_matches(old, unused, n=1, cutoff=0.5)
            if not close:
                continue
            new, name = close[0], cronjobs[0]
            self.out(f"kubectl logs -n {ns} -l app={name} --tail=30 --prefix")
            spec = json_or_none(self.out(f"kubectl get cronjob {name} -n {ns} -o json")) or {}
            template = (((spec.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
            env = {k: v.get("value", "") for c in containers(template)[:1] for k, v in env_of(c).items()}
            mapping = ",".join(x for x in (env.get("COLUMN_MAP", ""), f"{new}:{feature}") if x)
            rate = f"{nulls[feature]:.0%} of the last live requests" if nulls.get(feature) else "live requests"
            hypothesis = (f"upstream renamed {old} to {new}; the refresh finds no {old} and materialises {feature} "
                          "as null")
            diagnosis = (f"Upstream schema change: the source table renamed column {old} to {new} (the offline rows "
                         f"carry {new}, the {feature} feature view reads {old}), so {name} silently materialises "
                         f"{feature} as null (null online for {entity}, null in {rate}, rising) and serving fills a "
                         f"default, so those scores are wrong. Mapped {new} to {feature} in {name} (COLUMN_MAP), made "
                         "it strict on schema so a missing column fails loudly, and re-ran it.")

            def fix(ns: str = ns, name: str = name, mapping: str = mapping) -> bool:
                result = self.sh(f"kubectl set env cronjob/{name} -n {ns} COLUMN_MAP={mapping} STRICT_SCHEMA=true")
                if not (result and result.ok):
                    return False
                self.rerun_cronjob(ns, name)
                return True

            def recheck(entity: str = entity) -> None:
                self.sh(f"curl -s -m 10 localhost:{self.forward('features')}/features/{entity}")
                time.sleep(10)
                self.sh(f"curl -s -m 10 localhost:{self.forward('model')}/metrics")
                self.smoke_prediction()
            findings.append(Finding("missing-column", hypothesis, diagnosis, fix, 70, recheck))
        return findings

    def rerun_cronjob(self, ns: str, name: str) -> None:
        run = f"{name}-manual-{int(time.time()) % 100000}"
        self.sh(f"kubectl create job {run} -n {ns} --from=cronjob/{name}")
        self.sh(f"kubectl wait job/{run} -n {ns} --for=condition=complete --timeout=120s", timeout_s=140)

    # -- training without checkpoints on reclaimable nodes ----------------------------------
    def unsafe_training_jobs(self) -> list[Finding]:
        """A long Job on spot nodes whose log warns that progress is lost when its pod stops."""
        findings = []
        jobs = sorted({_job_of(p.name) for p in self.notes.pods if p.namespace == "training"
                       and (not p.healthy or _job_of(p.name) in self.s.briefing)})
        for job in jobs:
            log = self.out(f"kubectl logs -n training -l job-name={job} --tail=-1 --prefix")
            warning = next((e.get("msg") for e in json_lines(log)
                            if re.search(r"not set|progress is lost", str(e.get("msg", "")), re.I)), None)
            if warning is None:
                continue
            var = next(iter(re.findall(r"\b([A-Z][A-Z0-9_]{3,})\b", warning)), None)
            raw = json_or_none(self.out(f"kubectl get job {job} -n training -o json"))
            if not var or not raw:
                continue
            template = raw["spec"]["template"]
            mounts = [m.get("mountPath") for c in containers(template) for m in c.get("volumeMounts") or []]
            if not mounts:
                continue
            starts = [e for e in json_lines(log) if e.get("msg") == "training started"]
            value = mounts[0].rstrip("/") + "/checkpoints"
            selector = (template.get("spec") or {}).get("nodeSelector") or {}
            spot = any(re.search(r"spot|preemptible", f"{k}={v}", re.I) for k, v in selector.items())
            where = ("spot (reclaimable) GPU nodes" if spot else "its nodes") + \
                f" ({', '.join(f'{k}={v}' for k, v in selector.items())})"
            hypothesis = f"{job} runs without {var} on reclaimable nodes, so every reclaim restarts it from the start"
            diagnosis = (f"{job} was submitted without {var} ({warning}) while it runs on {where}, "
                         "so every reclaim (preemption) "
                         f"restarts training from epoch 1 ({len(starts)} starts seen) and the GPU cost grows without "
                         f"progress; re-created the Job with checkpoint dir {var}={value} on its state volume so a "
                         "reclaimed pod resumes from its last checkpoint.")

            def fix(job: str = job, raw: dict = raw, var: str = var, value: str = value) -> bool:
                manifest = _rerunnable_job(raw, var, value)
                result = self.sh("kubectl replace --force -n training -f -", stdin=json.dumps(manifest), timeout_s=120)
                return bool(result and result.ok)

            def recheck(job: str = job) -> None:
                time.sleep(45)
                self.sh(f"kubectl logs -n training -l job-name={job} --tail=-1 --prefix")
                self.sh(f"kubectl get job {job} -n training -o yaml")
            findings.append(Finding("no-checkpoint", hypothesis, diagnosis, fix, 65, recheck))
            break
        return findings

    # ------------------------------------------------------------------ 5. re-check
    def recheck_serving(self) -> None:
        """The symptom again, through a fresh port-forward (the old pods are gone)."""
        port = self.forward("model", fresh=True)
        if port:
            self.sh(f"curl -s -m 10 localhost:{port}/metadata")
            self.smoke_prediction(port)
            self.sh(f"curl -s -m 10 localhost:{port}/metrics")
        time.sleep(12)  # one fresh window of the traffic replay
        self.sh("kubectl logs -n serving deploy/traffic-replay --tail=2")

    def no_finding(self) -> str:
        n = self.notes
        parts = []
        if n.production_version and n.metadata.get("model_version") not in (None, n.production_version):
            parts.append(f"serving runs model version {n.metadata.get('model_version')} while the registry's "
                         f"Production is {n.production_version}")
        stale = self.stale_views()
        if stale:
            parts.append("stale features: " + ", ".join(sorted(stale)))
        nulls = [f"{s.labels.get('feature')} {s.value:.0%}" for s in n.metrics
                 if s.name == "feature_null_rate" and s.value > 0.2]
        if nulls:
            parts.append("features missing (null rate) in live requests: " + ", ".join(nulls))
        if self.error_ratio() > 0.005:
            parts.append(f"{self.error_ratio():.1%} of predictions fail")
        drift = self.score_shift()
        if drift:
            parts.append(drift)
        if not parts:
            parts.append("no platform fault found: pods, events, GPU capacity, model version, feature freshness "
                         "and error rates look normal; the change is likely in the input data itself")
        return "; ".join(parts)


ENV_KINDS = frozenset({"literal-secret", "payload-logging", "pin"})


def _job_of(pod: str) -> str:
    """A Job's pods are named <job>-<5 chars> (indexed Jobs: <job>-<index>-<5 chars>)."""
    return re.sub(r"(-\d+)?-[a-z0-9]{5}$", "", pod)


def _containment_order(change) -> int:
    """Stop the leak first (payload logging), then the credential, then the rest."""
    return {"payload-logging": 0, "literal-secret": 1}.get(change.kind, 2)


def _undo_words(change) -> str:
    if change.before is None:
        return f"removed {change.var}"
    source = ((change.before.get("valueFrom") or {}).get("secretKeyRef") or {})
    if source:
        return f"{change.var} from secretKeyRef {source.get('name')}/{source.get('key')} again"
    return f"{change.var}={change.before.get('value')} again"


def _gpu_error(log: str) -> str | None:
    """The last log line that is an error about the GPU stack (not an info line that mentions cuda)."""
    return next((ln.strip() for ln in reversed(log.splitlines())
                 if GPU_WORDS.search(ln) and ERROR_WORDS.search(ln) and '"level": "info"' not in ln), None)


def _short(text: str | None, limit: int = 240) -> str:
    """A quotable log line: its head (when, where) and its tail, where wrapped errors keep the root cause."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit // 4] + " ... " + text[-(limit - limit // 4 - 5):]


def _setting_named_in_error(template: dict, message: str) -> tuple[str, str, str] | None:
    """(env var, its value named in the error as missing, the alternative the error lists)."""
    if not message:
        return None
    for container in containers(template):
        for name, var in env_of(container).items():
            value = str(var.get("value", ""))
            if len(value) < 3 or value not in message:
                continue
            around = message[message.find(value):]
            if not re.search(r"not found|does not exist|unknown|no such", around, re.I):
                continue
            alt = re.search(r"available:?\s*\[?([\w.\-/]+)", message)
            if alt and alt.group(1) != value:
                return name, value, alt.group(1)
    return None


def _rerunnable_job(raw: dict, var: str, value: str) -> dict:
    """The Job as it was submitted, with ``var`` set, minus what the API server owns."""
    job = json.loads(json.dumps(raw))
    meta = job["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
        meta.pop(key, None)
    job.pop("status", None)
    job["spec"].pop("selector", None)
    labels = job["spec"]["template"].get("metadata", {}).get("labels", {})
    for key in list(labels):
        if key in ("controller-uid", "job-name") or key.startswith("batch.kubernetes.io/"):
            labels.pop(key)
    for container in job["spec"]["template"]["spec"]["containers"][:1]:
        env = [e for e in container.get("env") or [] if e.get("name") != var]
        container["env"] = env + [{"name": var, "value": value}]
    return job


def agent(session: Session) -> None:
    """Entry point for ``mlops-drill benchmark --agent mlops_drill.agents.baseline:agent``."""
    Baseline(session).run()
