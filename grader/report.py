"""The graded transcript: what the grader returns and every renderer reads.

Why a pydantic model and not a dict: the JSON output is a contract for
dashboards and instructors' scripts (``score`` top level, per-dimension scores),
and the renderers must not disagree about field meaning. Times are seconds from
the session start; ``seq`` points back at the transcript line.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

CommandStatus = Literal["step", "repeat", "redundant", "failed", "unmatched", "other", "diagnosis",
                        "hypothesis", "hint", "verification", "ruled-out"]


class DimensionScore(BaseModel):
    name: str
    score: float = Field(description="0-100")
    weight: float = Field(description="share of the weighted total; 0 when not applicable")
    contribution: float = Field(description="points this dimension adds to the total")
    detail: str


class Deduction(BaseModel):
    """Points taken straight off the total (anti-patterns, hints), with the command that cost them."""

    kind: Literal["anti-pattern", "blind-change", "weak-signal", "hint", "red-herring"]
    id: str
    points: float
    seq: int
    why: str


class AnnotatedCommand(BaseModel):
    index: int = Field(description="position among graded actions, from 1")
    seq: int
    t: float = Field(description="seconds since the session start")
    line: str
    tool: str | None
    exit_code: int | None
    status: CommandStatus
    step: str | None = None
    step_title: str | None = None
    phase: str | None = None
    reason: str | None = Field(None, description="the playbook's reason for the matched step")
    mutation: bool = False
    notes: list[str] = Field(default_factory=list)


class StepResult(BaseModel):
    id: str
    title: str
    phase: str
    required: bool
    done: bool
    first_index: int | None = None
    in_order: bool | None = None
    times: int = 0
    reason: str
    reference: str | None = Field(None, description="the reference solution's command for it")


class NextStep(BaseModel):
    step: str
    title: str
    reason: str
    command: str | None


class HypothesisResult(BaseModel):
    seq: int
    t: float
    text: str
    correct: bool
    fixes_before: int = Field(description="mutations attempted before this hypothesis")


class HintUse(BaseModel):
    seq: int
    t: float
    index: int
    text: str
    reveals_step: str | None
    cost: float


class RedHerringResult(BaseModel):
    """How the candidate treated one red herring: ruled out with evidence, left alone, or 'fixed'."""

    id: str
    signal: str = Field(description="what the candidate could see")
    reason: str = Field(description="why it is harmless")
    treatment: Literal["ruled-out", "ignored", "touched"]
    ruled_out_at: int | None = Field(None, description="index of the first command that examined it")
    touched_at: int | None = Field(None, description="index of the first change aimed at it")


class Times(BaseModel):
    """AIOpsLab-style milestones, seconds from the start (None: never reached)."""

    to_first_evidence: float | None = None
    to_localisation: float | None = None
    to_root_cause: float | None = None
    to_mitigation: float | None = None
    to_first_correct_hypothesis: float | None = None
    fixes_before_correct_hypothesis: int = 0
    elapsed: float = 0.0


class DiagnosisResult(BaseModel):
    text: str | None
    accepted: bool
    seq: int | None = None


class GradedTranscript(BaseModel):
    scenario: str
    title: str
    score: float = Field(description="0-100, weighted dimensions minus deductions")
    dimensions: list[DimensionScore]
    deductions: list[Deduction]
    commands: list[AnnotatedCommand]
    steps: list[StepResult]
    missed: list[NextStep] = Field(description="required steps never done")
    strong_next: list[str] = Field(description="what a strong answer would have done next")
    diagnosis: DiagnosisResult
    hypotheses: list[HypothesisResult]
    hints: list[HintUse]
    times: Times
    verification: dict[str, bool] | None = None
    tamper: str | None = Field(None, description="first broken link of the hash chain, if any")
    timing_synthetic: bool = False
    outcome: Literal["resolved", "fixed-unchecked", "open", "claimed-healthy"] = Field(
        "open", description="resolved: fixed and re-checked (recorded checks, or offline the "
                            "scenario's remediation steps); open and claimed-healthy cap the score")
    offline: bool = Field(False, description="no fix verification recorded: the end state is not "
                                             "verifiable and its weight is spread over the rest")
    seed: int | None = Field(None, description="the seed of a parameterised scenario's variant "
                                               "(`grade-transcript --seed` replays it)")
    values: dict[str, Any] | None = Field(None, description="the values that seed drew")
    red_herrings: list[RedHerringResult] = Field(default_factory=list,
                                                 description="the scenario's harmless facts and how each was treated")

    def variant_text(self) -> str:
        """``seed 42: node=gpu-node-0, ...`` for a variant, else empty."""
        if self.seed is None:
            return ""
        return f"seed {self.seed}: " + ", ".join(f"{k}={v}" for k, v in (self.values or {}).items())

    def dimension(self, name: str) -> DimensionScore:
        return next(d for d in self.dimensions if d.name == name)
