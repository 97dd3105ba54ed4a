"""Model registry: the MLflow REST subset the playbook's commands use, plus an audit log.

State starts from the artifacts manifest (versions, stages, lineage as version
tags, the promotion history) and every stage transition is written to the JSON
file named by ``REGISTRY_STATE``, so a restarted registry remembers a promotion
or a rollback the candidate made. Stage names and payload shapes follow MLflow's
(``current_stage``, ``tags: [{key, value}]``, ``archive_existing_versions``) so
``curl`` against it reads like a real MLflow server.
"""
from __future__ import annotations

import json
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from mlops_drill.mlplatform import appkit
from mlops_drill.mlplatform.artifacts import ensure_artifacts, load_manifest

API = "/api/2.0/mlflow"
STAGES = ("None", "Staging", "Production", "Archived")
STATE_FORMAT = 1

TRANSITIONS = Counter("registry_stage_transitions_total", "Stage transitions", ["to_stage"])


class MlflowError(Exception):
    """Answered the way MLflow answers: ``{"error_code", "message"}`` with an HTTP status."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def not_found(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message, 404)


def invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message, 400)


def _ms(date: str) -> int:
    return int(datetime.fromisoformat(date).replace(hour=9, tzinfo=timezone.utc).timestamp() * 1000)


def _now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def initial_state(manifest: dict[str, Any]) -> dict[str, Any]:
    """Registry content as CI left it: every built version, its stage and lineage tags."""
    models: dict[str, Any] = {}
    for m in manifest["models"]:
        versions = {}
        for v in m["versions"]:
            lin = v["lineage"]
            tags = {
                "training_run_id": lin["training_run_id"], "data_version": lin["data_version"],
                "training_period": lin["training_period"], "code_commit": lin["code_commit"],
                "feature_list": ",".join(lin["feature_list"]),
                "transform_config_hash": lin["transform_config_hash"],
                "serving_size_gib": str(v["model"]["serving_size_gib"]),
                **{f"metric.{k}": str(val) for k, val in v["metrics"].items()},
            }
            versions[v["version"]] = {
                "name": m["name"], "version": v["version"], "creation_timestamp": _ms(v["created"]),
                "last_updated_timestamp": _ms(v["created"]), "current_stage": "None",
                "description": v["description"], "source": f"runs:/{lin['training_run_id']}/model",
                "run_id": lin["training_run_id"], "status": "READY", "tags": tags, "path": v["path"],
            }
        models[m["name"]] = {"name": m["name"], "creation_timestamp": _ms(m["created"]),
                             "last_updated_timestamp": _ms(m["created"]), "description": m["description"],
                             "versions": versions}
    audit: list[dict[str, Any]] = []
    for h in manifest["history"]:
        v = models[h["name"]]["versions"][h["version"]]
        v["current_stage"] = h["to_stage"]
        v["last_updated_timestamp"] = _ms(h["date"])
        audit.append(_event(_ms(h["date"]), h["name"], h["version"], h["from_stage"], h["to_stage"],
                            h["user"], _action(h["version"], h["to_stage"], _production(audit, h["name"]))))
    for m in manifest["models"]:  # versions never transitioned keep the stage the manifest gives them
        for v in m["versions"]:
            models[m["name"]]["versions"][v["version"]]["current_stage"] = v["stage"]
    return {"format": STATE_FORMAT, "models": models, "audit": audit}


def _production(audit: list[dict[str, Any]], name: str) -> str | None:
    for e in reversed(audit):
        if e["name"] == name and e["to_stage"] == "Production":
            return e["version"]
    return None


def _action(version: str, to_stage: str, previous_production: str | None) -> str:
    """Promotion, rollback (back to an older version), archive, ... as an auditor names them."""
    if to_stage == "Production":
        if previous_production is not None and int(version) < int(previous_production):
            return "rollback"
        return "promote"
    if to_stage == "Archived":
        return "archive"
    if to_stage == "Staging":
        return "stage"
    return "unstage"


def _event(ms: int, name: str, version: str, from_stage: str, to_stage: str, user: str, action: str,
           reason: str = "") -> dict[str, Any]:
    event = {"timestamp": ms, "time": _iso(ms), "action": action, "name": name, "version": version,
             "from_stage": from_stage, "to_stage": to_stage, "user": user}
    if reason:
        event["reason"] = reason
    return event


class RegistryStore:
    """The registry's state and the operations the REST API offers on it."""

    def __init__(self, state: dict[str, Any], artifact_root: Path, state_path: Path | None):
        self.state, self.artifact_root, self.state_path = state, artifact_root, state_path
        self.lock = threading.Lock()

    @classmethod
    def open(cls, artifact_root: Path, state_path: Path | None) -> "RegistryStore":
        """Load persisted state when present, else start from the artifacts manifest."""
        if state_path and state_path.is_file():
            state = json.loads(state_path.read_text())
            if state.get("format") == STATE_FORMAT:
                appkit.log("info", "registry state loaded", path=str(state_path))
                return cls(state, artifact_root, state_path)
            appkit.log("warning", "registry state has an unknown format; starting from the manifest",
                       path=str(state_path))
        store = cls(initial_state(load_manifest(artifact_root)), artifact_root, state_path)
        store._save()
        return store

    # -- reads
    def model(self, name: str) -> dict[str, Any]:
        try:
            return self.state["models"][name]
        except KeyError:
            raise not_found(f"Registered Model with name={name} not found") from None

    def version(self, name: str, version: str) -> dict[str, Any]:
        try:
            return self.model(name)["versions"][str(version)]
        except KeyError:
            raise not_found(f"Model Version (name={name}, version={version}) not found") from None

    def latest_versions(self, name: str, stages: list[str] | None) -> list[dict[str, Any]]:
        """Highest version per stage, for the stages asked (all stages when none)."""
        wanted = [normalise_stage(s) for s in stages] if stages else list(STAGES)
        best: dict[str, dict[str, Any]] = {}
        for v in self.model(name)["versions"].values():
            stage = v["current_stage"]
            if stage in wanted and (stage not in best or int(v["version"]) > int(best[stage]["version"])):
                best[stage] = v
        return [best[s] for s in STAGES if s in best]

    # -- writes
    def transition(self, name: str, version: str, stage: str, archive_existing: bool, user: str) -> dict[str, Any]:
        stage = normalise_stage(stage)
        with self.lock:
            target = self.version(name, version)
            model = self.model(name)
            now = _now_ms()
            previous_production = next((v["version"] for v in sorted(
                model["versions"].values(), key=lambda v: -int(v["version"]))
                if v["current_stage"] == "Production" and v["version"] != target["version"]), None)
            from_stage = target["current_stage"]
            action = _action(target["version"], stage, previous_production)
            target["current_stage"], target["last_updated_timestamp"] = stage, now
            self.state["audit"].append(_event(now, name, target["version"], from_stage, stage, user, action))
            TRANSITIONS.labels(stage).inc()
            if archive_existing and stage in ("Staging", "Production"):
                for other in model["versions"].values():
                    if other is not target and other["current_stage"] == stage:
                        other["current_stage"], other["last_updated_timestamp"] = "Archived", now
                        self.state["audit"].append(_event(
                            now, name, other["version"], stage, "Archived", user, "archive",
                            reason=f"archive_existing_versions: version {target['version']} moved to {stage}"))
                        TRANSITIONS.labels("Archived").inc()
            model["last_updated_timestamp"] = now
            self._save()
            appkit.log("info", "stage transition", model=name, version=target["version"], from_stage=from_stage,
                       to_stage=stage, action=action, user=user)
            return target

    def create_model(self, name: str) -> dict[str, Any]:
        """A new registered model with no versions (a training pipeline's first registration)."""
        with self.lock:
            if name in self.state["models"]:
                raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Registered Model (name={name}) already exists.", 400)
            now = _now_ms()
            model = {"name": name, "creation_timestamp": now, "last_updated_timestamp": now, "description": "",
                     "versions": {}}
            self.state["models"][name] = model
            self._save()
            return model

    def create_version(self, name: str, source: str, run_id: str, tags: dict[str, str], user: str) -> dict[str, Any]:
        """The next version of ``name``, stage None, with the lineage tags the training run sent."""
        with self.lock:
            model = self.model(name)
            number = str(max((int(v) for v in model["versions"]), default=0) + 1)
            now = _now_ms()
            version = {"name": name, "version": number, "creation_timestamp": now, "last_updated_timestamp": now,
                       "current_stage": "None", "description": "", "source": source, "run_id": run_id,
                       "status": "READY", "tags": dict(tags), "path": f"{name}/{number}", "user_id": user}
            model["versions"][number] = version
            model["last_updated_timestamp"] = now
            self._save()
            appkit.log("info", "model version created", model=name, version=number, run_id=run_id, user=user)
            return version

    def delete_model(self, name: str) -> None:
        with self.lock:
            self.model(name)
            del self.state["models"][name]
            self._save()

    def _save(self) -> None:
        if not self.state_path:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_path)

    def download_uri(self, name: str, version: str) -> str:
        v = self.version(name, version)
        return (self.artifact_root / v["path"]).as_uri()


def normalise_stage(stage: str) -> str:
    for s in STAGES:
        if s.lower() == str(stage).strip().lower():
            return s
    raise invalid(f"Invalid Model Version stage: {stage}. Value must be one of {', '.join(STAGES)}.")


# ---------------------------------------------------------------- MLflow JSON shapes

def version_json(v: dict[str, Any]) -> dict[str, Any]:
    out = {k: v[k] for k in ("name", "version", "creation_timestamp", "last_updated_timestamp",
                             "current_stage", "description", "source", "run_id", "status")}
    out["tags"] = [{"key": k, "value": val} for k, val in sorted(v["tags"].items())]
    out["run_link"] = ""
    return out


def model_json(store: RegistryStore, m: dict[str, Any]) -> dict[str, Any]:
    return {"name": m["name"], "creation_timestamp": m["creation_timestamp"],
            "last_updated_timestamp": m["last_updated_timestamp"], "description": m["description"],
            "latest_versions": [version_json(v) for v in store.latest_versions(m["name"], None)], "tags": []}


_CLAUSE = re.compile(r"""^\s*([\w.]+)\s*(=|!=|ILIKE|LIKE)\s*(?:'([^']*)'|"([^"]*)"|(\S+))\s*$""", re.IGNORECASE)


def parse_filter(text: str | None) -> list[tuple[str, str, str]]:
    """MLflow's search filter, the subset a person types: ``name='x' AND run_id='y'``, LIKE with %."""
    if not text or not text.strip():
        return []
    clauses = []
    for part in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.match(part)
        if not m:
            raise invalid(f"Invalid filter '{text}': cannot parse '{part.strip()}'")
        value = next(g for g in m.groups()[2:] if g is not None)
        clauses.append((m.group(1), m.group(2).upper(), value))
    return clauses


def _matches(value: str, op: str, pattern: str) -> bool:
    if op == "=":
        return value == pattern
    if op == "!=":
        return value != pattern
    regex = "^" + re.escape(pattern).replace("%", ".*").replace("_", ".") + "$"
    return re.match(regex, value, re.IGNORECASE if op == "ILIKE" else 0) is not None


def _field(obj: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    if key.startswith("tags.") and "tags" in allowed:
        return str(obj.get("tags", {}).get(key[5:], ""))
    if key not in allowed:
        raise invalid(f"Invalid attribute key '{key}' specified. Valid keys are {', '.join(allowed)}")
    return str(obj.get(key, ""))


# ---------------------------------------------------------------- the app

def create_app(store: RegistryStore) -> FastAPI:
    app = FastAPI(title="model-registry", docs_url=None, redoc_url=None)

    @app.exception_handler(MlflowError)
    async def _mlflow_error(_: Request, err: MlflowError) -> JSONResponse:
        return JSONResponse({"error_code": err.code, "message": err.message}, status_code=err.status)

    async def params(request: Request) -> dict[str, Any]:
        """GET query parameters or a POST JSON body: MLflow clients use both."""
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                raise invalid("Request body is not valid JSON") from None
            return body if isinstance(body, dict) else {}
        q = request.query_params
        out: dict[str, Any] = dict(q)
        if "stages" in q:
            out["stages"] = q.getlist("stages")
        return out

    def required(p: dict[str, Any], key: str) -> str:
        value = p.get(key)
        if value in (None, ""):
            raise invalid(f"Missing value for required parameter '{key}'.")
        return str(value)

    @app.api_route(f"{API}/registered-models/get", methods=["GET"])
    async def get_model(request: Request) -> dict[str, Any]:
        p = await params(request)
        return {"registered_model": model_json(store, store.model(required(p, "name")))}

    @app.api_route(f"{API}/registered-models/search", methods=["GET", "POST"])
    async def search_models(request: Request) -> dict[str, Any]:
        p = await params(request)
        clauses = parse_filter(p.get("filter"))
        found = [m for m in store.state["models"].values()
                 if all(_matches(_field(m, k, ("name",)), op, val) for k, op, val in clauses)]
        limit = int(p.get("max_results") or 100)
        return {"registered_models": [model_json(store, m) for m in sorted(found, key=lambda m: m["name"])][:limit]}

    @app.post(f"{API}/registered-models/create")
    async def create_model(request: Request) -> dict[str, Any]:
        p = await params(request)
        return {"registered_model": model_json(store, store.create_model(required(p, "name")))}

    @app.api_route(f"{API}/registered-models/delete", methods=["POST", "DELETE"])
    async def delete_model(request: Request) -> dict[str, Any]:
        p = await params(request)
        store.delete_model(required(p, "name"))
        return {}

    @app.post(f"{API}/model-versions/create")
    async def create_version(request: Request) -> dict[str, Any]:
        p = await params(request)
        tags = p.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, dict) and "key" in t for t in tags):
            raise invalid("tags must be a list of {key, value} objects")
        user = request.headers.get("x-user") or request.headers.get("x-mlflow-user") or "anonymous"
        v = store.create_version(required(p, "name"), required(p, "source"), str(p.get("run_id") or ""),
                                 {str(t["key"]): str(t.get("value", "")) for t in tags}, user)
        return {"model_version": version_json(v)}

    @app.api_route(f"{API}/model-versions/get", methods=["GET"])
    async def get_version(request: Request) -> dict[str, Any]:
        p = await params(request)
        return {"model_version": version_json(store.version(required(p, "name"), required(p, "version")))}

    @app.api_route(f"{API}/model-versions/search", methods=["GET", "POST"])
    async def search_versions(request: Request) -> dict[str, Any]:
        p = await params(request)
        clauses = parse_filter(p.get("filter"))
        keys = ("name", "version", "run_id", "current_stage", "source", "tags")
        found = [v for m in store.state["models"].values() for v in m["versions"].values()
                 if all(_matches(_field(v, k, keys), op, val) for k, op, val in clauses)]
        found.sort(key=lambda v: (v["name"], -int(v["version"])))
        limit = int(p.get("max_results") or 200)
        return {"model_versions": [version_json(v) for v in found][:limit]}

    @app.api_route(f"{API}/registered-models/get-latest-versions", methods=["GET", "POST"])
    async def latest(request: Request) -> dict[str, Any]:
        p = await params(request)
        stages = p.get("stages")
        if isinstance(stages, str):
            stages = [stages]
        return {"model_versions": [version_json(v) for v in store.latest_versions(required(p, "name"), stages)]}

    @app.post(f"{API}/model-versions/transition-stage")
    async def transition(request: Request) -> dict[str, Any]:
        p = await params(request)
        archive = p.get("archive_existing_versions", False)
        if isinstance(archive, str):
            archive = archive.strip().lower() == "true"
        user = request.headers.get("x-user") or request.headers.get("x-mlflow-user") or "anonymous"
        v = store.transition(required(p, "name"), required(p, "version"), required(p, "stage"), bool(archive), user)
        return {"model_version": version_json(v)}

    @app.get(f"{API}/model-versions/get-download-uri")
    async def download_uri(request: Request) -> dict[str, Any]:
        p = await params(request)
        return {"artifact_uri": store.download_uri(required(p, "name"), required(p, "version"))}

    @app.get("/audit")
    async def audit(name: str | None = None, limit: int = 100) -> dict[str, Any]:
        events = [e for e in store.state["audit"] if name is None or e["name"] == name]
        return {"events": events[-limit:]}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    appkit.set_app_name("model-registry")
    root = ensure_artifacts()
    state_env = os.environ.get("REGISTRY_STATE")
    store = RegistryStore.open(root, Path(state_env) if state_env else None)
    prod = store.latest_versions("fraud-model", ["Production"]) if "fraud-model" in store.state["models"] else []
    appkit.log("info", "registry started", release=appkit.release("1.2.0"), artifact_root=str(root),
               state=state_env or "memory", production=[v["version"] for v in prod])
    appkit.serve(create_app(store))


if __name__ == "__main__":
    main()
