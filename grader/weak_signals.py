"""The playbook's "Common Weak Signals", recognised in what a candidate says.

Why a small rule set and not the accepted-diagnosis keywords alone: a
diagnosis can be wrong in two very different ways. "The taint is wrong" names
the wrong cause; "200 OK, the model is fine" declares a broken system healthy,
which the playbook calls out as the weak signal of MLOps ("saying the model is
fine because the endpoint returned 200"). An expert ranks the second below any
honest search, so the grader must tell them apart. The rules read the words a
person uses for "nothing is wrong" and for "just retrain", with the negations
that turn them around ("not healthy", "isn't fine").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

HEALTHY = "healthy"
BLIND_RETRAIN = "blind-retrain"

# "Nothing is wrong": phrases that claim there is no incident at all.
_NO_PROBLEM = re.compile(
    r"\b(?:no|not\s+an?|without\s+any)\s+(?:real\s+|actual\s+)?"
    r"(?:issues?|problems?|incidents?|faults?|errors?|outage|impact|action(?:\s+needed)?)\b"
    r"|\bnothing\s+(?:is\s+|was\s+|seems\s+|looks\s+)?(?:wrong|broken|off|to\s+fix|amiss)\b"
    r"|\bfalse\s+(?:alarm|positive)\b|\bwork(?:s|ing)?\s+as\s+(?:expected|intended|designed)\b"
    r"|\ball\s+(?:good|green|fine|ok|okay)\b|\b(?:lgtm|wontfix|won't\s+fix)\b",
    re.IGNORECASE)
# Words that call the system healthy, and words that name something broken.
_HEALTHY_WORD = re.compile(
    r"\b(?:healthy|fine|ok|okay|normal|nominal|working|green|200"
    # "stable" as in "the stable release 1.4.0" names a release, not the system's health
    r"|stable(?!\s+(?:v?\d|release\w*|version\w*|build\w*|image\w*|tag\w*|track|channel|deploy\w*|pods?\b|replica\w*)))\b",
    re.IGNORECASE)
_PROBLEM_WORD = re.compile(
    r"\b(?:wrong|broken|bad|fail\w*|missing|miss|stale|old|outdated|drift\w*|skew\w*|pending"
    r"|crash\w*|error\w*|regress\w*|mismatch\w*|lost|loses|leak\w*|unhealthy|degraded|slow\w*"
    r"|latency\s+spike|spike|timeout|timed\s+out|oom\w*|evict\w*|taint\w*|toleration\w*"
    r"|insufficient|exhaust\w*|cold[- ]start|fallback|downgrad\w*|rollback|rolled\s+back"
    r"|revert\w*|incorrect|invalid|corrupt\w*|expired|exposed|secret|null|nan|shift\w*"
    r"|unschedulable|cordon\w*|preempt\w*|checkpoint\w*|bug\w*|5\d\d|5xx"
    r"|not\s+(?:ready|running|serving|scheduled|updated|refreshed))\b",
    re.IGNORECASE)
_NEGATED_HEALTHY = re.compile(
    r"\b(?:not|isn't|isnt|aren't|arent|wasn't|never|no\s+longer)\s+(?:\w+\s+)?"
    r"(?:healthy|fine|ok|okay|normal|working|good)\b", re.IGNORECASE)
_RETRAIN = re.compile(r"\bre-?train\w*\b", re.IGNORECASE)
_RETRAIN_GATED = re.compile(
    r"\b(?:trigger\w*|gate\w*|validat\w*|threshold\w*|rule\w*|criteri\w*|holdout|backtest\w*"
    r"|evaluat\w*|canary|shadow|labels?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class WeakSignal:
    id: str
    why: str


def weak_signals(text: str) -> list[WeakSignal]:
    """Weak signals in one hypothesis or diagnosis (empty for an honest, specific claim)."""
    found: list[WeakSignal] = []
    if claims_healthy(text):
        found.append(WeakSignal(HEALTHY, "calls the system healthy while the incident is open "
                                         "(the '200 OK, so the model is fine' weak signal)"))
    if _RETRAIN.search(text) and not _RETRAIN_GATED.search(text):
        found.append(WeakSignal(BLIND_RETRAIN, "recommends retraining without a trigger or a "
                                               "validation gate"))
    return found


def claims_healthy(text: str) -> bool:
    """"Nothing is wrong", or health words, with nothing else named as broken.

    The "nothing wrong" phrases are taken out before looking for a named problem,
    so "no errors in the logs, but the features are stale" is an honest claim.
    """
    rest = _NO_PROBLEM.sub(" ", text)
    if _PROBLEM_WORD.search(rest) or _NEGATED_HEALTHY.search(rest):
        return False
    return rest != text or bool(_HEALTHY_WORD.search(text))
