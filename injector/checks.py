"""Run a scenario's fix checks against the cluster, as the admin.

A check passes when its expectation holds at least once within its
``within_seconds`` (polling), because a fix takes effect through rollouts and
probes, not instantly.
"""
from __future__ import annotations

import fnmatch
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from mlops_drill.injector.context import DrillContext


@dataclass(frozen=True)
class CheckResult:
    id: str
    passed: bool
    detail: str


def dig(data: Any, path: str) -> Any:
    """Value at a dotted path (``a.b.0.c``); None when absent."""
    for part in path.split(".") if path else []:
        if isinstance(data, list):
            try:
                data = data[int(part)]
            except (ValueError, IndexError):
                return None
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def compare(actual: Any, op: str, expected: Any) -> bool:
    try:
        if op == "eq":
            return actual == expected or str(actual) == str(expected)
        if op == "ne":
            return not (actual == expected or str(actual) == str(expected))
        if op == "contains":
            return str(expected) in (json.dumps(actual) if not isinstance(actual, str) else actual)
        a, b = float(actual), float(expected)
        return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
    except (TypeError, ValueError, KeyError):
        return False


def _kubectl_once(ctx: DrillContext, check) -> tuple[bool, str]:
    result = ctx.kubectl(*check.args, check=False)
    exp = check.expect
    want_code = exp.exit_code if exp.exit_code is not None else 0
    if result.returncode != want_code:
        return False, f"exit {result.returncode}: {result.stderr.strip()[:200]}"
    text = result.stdout
    value: Any = text
    if exp.json_path is not None:
        try:
            value = dig(json.loads(text), exp.json_path)
        except json.JSONDecodeError:
            return False, "output is not JSON"
    shown = value if isinstance(value, str) else json.dumps(value)
    if exp.equals is not None and not compare(value, "eq", exp.equals):
        return False, f"{shown[:120]!s} != {exp.equals!r}"
    if exp.contains is not None and exp.contains not in shown:
        return False, f"{exp.contains!r} not in output"
    if exp.not_contains is not None and exp.not_contains in shown:
        return False, f"{exp.not_contains!r} still in output"
    if exp.regex is not None and not re.search(exp.regex, shown):
        return False, f"/{exp.regex}/ does not match"
    if exp.not_regex is not None and re.search(exp.not_regex, shown):
        return False, f"/{exp.not_regex}/ still matches"
    return True, "ok"


def _http_once(ctx: DrillContext, check) -> tuple[bool, str]:
    import httpx

    with ctx.service(check.namespace, check.service, check.port) as base:
        try:
            response = httpx.request(check.method, base + check.path, json=check.body, timeout=10)
        except httpx.HTTPError as exc:
            return False, f"{check.method} {check.path}: {exc.__class__.__name__}"
    if response.status_code != check.expect_status:
        return False, f"HTTP {response.status_code} (want {check.expect_status})"
    if check.expect_json:
        try:
            body = response.json()
        except ValueError:
            return False, "response is not JSON"
        for exp in check.expect_json:
            actual = dig(body, exp.path)
            if not compare(actual, exp.op, exp.value):
                return False, f"{exp.path}={actual!r} not {exp.op} {exp.value!r}"
    return True, "ok"


def _metric_once(ctx: DrillContext, check) -> tuple[bool, str]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    with ctx.service(check.namespace, check.service, check.port) as base:
        try:
            text = httpx.get(base + check.path, timeout=10).text
        except httpx.HTTPError as exc:
            return False, f"GET {check.path}: {exc.__class__.__name__}"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == check.name and all(fnmatch.fnmatch(sample.labels.get(k, ""), v)
                                                 for k, v in check.labels.items()):
                ok = compare(sample.value, check.op, check.value)
                return ok, f"{check.name}={sample.value:g}"
    return False, f"no sample {check.name}"


RUNNERS = {"kubectl": _kubectl_once, "http": _http_once, "metric": _metric_once}


def run_check(ctx: DrillContext, check, index: int) -> CheckResult:
    check_id = getattr(check, "id", None) or f"{check.kind}-{index}"
    deadline = time.monotonic() + check.within_seconds
    while True:
        try:
            ok, detail = RUNNERS[check.kind](ctx, check)
        except Exception as exc:  # a check that cannot run has not passed; say why
            ok, detail = False, f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if ok or time.monotonic() >= deadline:
            return CheckResult(check_id, ok, detail)
        time.sleep(0.5)


def run_checks(ctx: DrillContext, checks: list, timeout_scale: float = 1.0) -> list[CheckResult]:
    results = []
    for i, check in enumerate(checks):
        if timeout_scale != 1.0:
            check = check.model_copy(update={"within_seconds": check.within_seconds * timeout_scale})
        results.append(run_check(ctx, check, i))
    return results
