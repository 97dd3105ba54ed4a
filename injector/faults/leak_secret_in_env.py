"""leak-secret-in-env: a debugging revision inlined a credential and turned on payload logging.

One new Deployment revision: the env var that referenced a Secret key now holds
the credential itself (whoever can read the Deployment can read it), and
``LOG_PAYLOADS=true`` makes every pod write the raw request, card number
included, to its log. Both are ordinary edits a hurried engineer makes while
debugging; the fix is a secretKeyRef again and payload logging off, rolled out.
"""
from __future__ import annotations

import base64
import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    deployment: str = "fraud-model"
    env: str = "DB_PASSWORD"
    secret: str = "fraud-model-db"
    key: str = "password"
    log_payloads: bool = True


class LeakSecretInEnv(Fault):
    name = "leak-secret-in-env"
    Params = Params
    description = "credential as a literal env value and LOG_PAYLOADS=true (card numbers in the logs)"

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        secret = ctx.core.read_namespaced_secret(p.secret, p.namespace)
        value = base64.b64decode((secret.data or {})[p.key]).decode()
        obj = ctx.get("deployment", p.deployment, p.namespace)
        assert obj is not None, f"deployment {p.deployment} missing"
        ops = wl.set_env_ops(obj, p.env, value)
        if p.log_payloads:
            ops += wl.set_env_ops(obj, "LOG_PAYLOADS", "true")
        ctx.patch("deployment", p.deployment, p.namespace, ops)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """A pod of the new revision runs with the literal credential (and, if asked, logs a card number)."""
        p = self.params
        for pod in wl.new_pods(ctx, p.namespace, f"app={p.deployment}", getattr(self, "applied_at", 0.0)):
            env = {e.name: e for e in pod.spec.containers[0].env or []}
            if p.env not in env or env[p.env].value is None or pod.status.phase != "Running":
                continue
            if not p.log_payloads:
                return True
            for line in wl.json_lines(wl.pod_log(ctx, p.namespace, pod.metadata.name)):
                if str((line.get("payload") or {}).get("card_number", "")).isdigit():
                    return True
        return False

    def revert(self, ctx: DrillContext) -> None:
        baseline.restore(ctx, "Deployment", self.params.deployment, self.params.namespace)
