"""The scenario file format: plain data that the engine, injector and grader all read.

A scenario is authored by hand in YAML, so every model forbids unknown keys: a typo
such as ``reqired:`` must fail loudly at load time instead of silently turning a
required step optional. Cross references (``after``, ``reveals_step``,
``unless_after``) are checked here too, so the grader can trust every id it sees.

The grader imports :class:`Matcher` to map parsed command lines onto steps; it only
needs attribute access on the parsed command, so this module does not depend on the
parser being importable.
"""
from __future__ import annotations

import difflib
import functools
import fnmatch
import re
import shlex
import sys
from enum import StrEnum
from functools import cached_property
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StrictFloat, StrictInt, StrictStr,
                      WithJsonSchema, field_validator, model_validator)

if TYPE_CHECKING:  # the parser is another part; only its shape matters here
    from mlops_drill.grader.parse import ParsedCommand

Slug = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=63,
                            description="lower-case words joined by '-'")]
NonEmpty = Annotated[str, Field(min_length=1)]


class Topic(StrEnum):
    """Sections of the MLOps interview playbook a scenario exercises.

    The first six are "What Interviewers Are Really Testing"; then "What You Should
    Know By Topic"; then the "Must-Know Commands And Checks"; last the "High-Value
    Scenarios To Practice". Keeping them as one enum lets a test prove the catalogue
    covers the whole playbook.
    """

    REPRODUCIBILITY = "reproducibility"
    TRAINING_VS_INFERENCE = "training-vs-inference"
    DATA_FEATURE_DISCIPLINE = "data-feature-discipline"
    SAFE_MODEL_DELIVERY = "safe-model-delivery"
    PLATFORM_COST = "platform-cost"
    MONITORING_BEYOND_UPTIME = "monitoring-beyond-uptime"
    LIFECYCLE_ARTIFACTS = "lifecycle-artifacts"
    DATA_FEATURE_MANAGEMENT = "data-feature-management"
    PIPELINES = "pipelines"
    SERVING_PATTERNS = "serving-patterns"
    PLATFORM_INFRASTRUCTURE = "platform-infrastructure"
    OBSERVABILITY = "observability"
    SECURITY_GOVERNANCE = "security-governance"
    LLMOPS = "llmops"
    GPU_SCHEDULING = "gpu-scheduling"
    SERVING_VALIDATION = "serving-validation"
    WRONG_PREDICTIONS_200_OK = "wrong-predictions-200-ok"
    DATA_CONCEPT_DRIFT = "data-concept-drift"
    GPU_PODS_PENDING = "gpu-pods-pending"
    LATENCY_SPIKE_AFTER_RELEASE = "latency-spike-after-release"
    EXPENSIVE_TRAINING_JOBS = "expensive-training-jobs"


#: Topics every catalogue must cover: the six "really testing" areas and the five
#: "high-value scenarios" of the playbook.
CORE_TOPICS: frozenset[Topic] = frozenset({
    Topic.REPRODUCIBILITY, Topic.TRAINING_VS_INFERENCE, Topic.DATA_FEATURE_DISCIPLINE,
    Topic.SAFE_MODEL_DELIVERY, Topic.PLATFORM_COST, Topic.MONITORING_BEYOND_UPTIME,
    Topic.WRONG_PREDICTIONS_200_OK, Topic.DATA_CONCEPT_DRIFT, Topic.GPU_PODS_PENDING,
    Topic.LATENCY_SPIKE_AFTER_RELEASE, Topic.EXPENSIVE_TRAINING_JOBS,
})

#: The faults the injector ships. More come from installed packages that register a
#: :class:`~mlops_drill.injector.fault.Fault` subclass under the ``mlops_drill.faults``
#: entry-point group; any other name is a typo.
BUILTIN_FAULTS: tuple[str, ...] = (
    "remove-toleration", "occupy-gpus", "crash-device-plugin", "driver-library-mismatch",
    "break-feature-refresh", "skew-transform", "rename-upstream-field", "pin-archived-model",
    "shift-input-distribution", "release-large-model", "drop-gpu-request", "bad-canary",
    "disable-checkpointing", "leak-secret-in-env", "idle-gpu-shadow", "gpu-node-product",
    "warning-event", "unused-configmap", "restart-container-once", "release-batching-config",
    "uncached-remote-dataset", "moved-dataset-alias", "async-worker-release",
    "shift-fraud-pattern", "unpruned-sweep",
)
FAULT_ENTRY_POINTS = "mlops_drill.faults"


def plugin_fault_names() -> frozenset[str]:
    """Fault names that installed packages offer: read from their metadata, nothing is imported."""
    return _plugin_fault_names(tuple(sys.path))


@functools.lru_cache(maxsize=4)
def _plugin_fault_names(path: tuple[str, ...]) -> frozenset[str]:
    # Keyed by sys.path: scanning every installed distribution costs milliseconds, and a
    # catalogue load asks once per fault.
    from importlib.metadata import entry_points

    return frozenset(ep.name for ep in entry_points(group=FAULT_ENTRY_POINTS))


def _known_fault(name: str) -> str:
    known = set(BUILTIN_FAULTS) | plugin_fault_names()
    if name not in known:
        raise ValueError(f"unknown fault {name!r}{_suggest(name, known)}; a fault from another package must be "
                         f"installed and registered under the {FAULT_ENTRY_POINTS!r} entry-point group")
    return name


FaultName = Annotated[str, AfterValidator(_known_fault), WithJsonSchema({
    "type": "string", "pattern": r"^[a-z0-9]+(-[a-z0-9]+)*$",
    "description": "a built-in fault, or one an installed package registers under the "
                   "'mlops_drill.faults' entry-point group",
    "examples": list(BUILTIN_FAULTS)})]


class _Strict(BaseModel):
    """Base of every scenario model: unknown keys are errors, so typos cannot hide."""

    model_config = ConfigDict(extra="forbid")


def _valid_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err}") from None
    return value


class ReferenceProblem(ValueError):
    """A broken cross reference, carrying the location of the offending value.

    Pydantic reports errors raised by a model validator at the model's own location;
    the loader reads ``loc`` from this exception to point at the exact YAML line.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


# --------------------------------------------------------------------------- matchers

def _glob(pattern: str, value: Any) -> bool:
    return value is not None and fnmatch.fnmatchcase(str(value), pattern)


def _flag_names(flags: Any) -> set[str]:
    """Flag names without leading dashes, whatever spelling the parser keeps."""
    try:
        return {str(k).lstrip("-") for k in (flags or {})}
    except TypeError:
        return set()


OneOrMany = NonEmpty | list[NonEmpty] | None


def _about(text: str) -> Any:
    return Field(None, description=text)


class Matcher(_Strict):
    """A pattern over one parsed command line; every field given must match.

    Fields left out match anything. ``name``, ``selector``, ``url_path`` and ``output``
    are shell globs; ``verb``, ``subverb``, ``resource`` and ``output`` accept one value
    or a list of alternatives; ``namespace`` also matches a command run with ``-A``.
    """

    tool: NonEmpty | None = _about("program: kubectl, curl, nvidia-smi, mlops-drill")
    verb: OneOrMany = _about("kubectl verb (get, describe, logs, exec, rollout, set, ...) "
                             "or mlops-drill subcommand (hypothesize, diagnose)")
    subverb: OneOrMany = _about("second word: rollout undo/history/status, set env/image, create job")
    resource: OneOrMany = _about("canonical plural resource type: pods, deployments, nodes, events")
    name: NonEmpty | None = _about("glob over the object name (any of several names)")
    namespace: NonEmpty | None = _about("namespace the command targets; -A matches any")
    selector: NonEmpty | None = _about("glob over the label selector (-l)")
    url_path: NonEmpty | None = _about("glob over curl's URL path (no query string)")
    http_method: NonEmpty | None = _about("curl method; GET when the command gives none")
    exec: NonEmpty | None = _about("substring of the command run by kubectl exec")
    output: OneOrMany = _about("glob(s) over -o/--output")
    mutation: bool | None = _about("whether the command changes cluster or registry state")
    flag: NonEmpty | None = _about("a flag that must be present, long name without dashes: sort-by")
    raw_regex: NonEmpty | None = _about("last resort: regex searched in the raw command line")

    @model_validator(mode="after")
    def _not_empty(self) -> Matcher:
        if all(getattr(self, f) is None for f in type(self).model_fields):
            raise ValueError("a matcher needs at least one field, or it would match every command")
        return self

    @field_validator("raw_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        return _valid_regex(value)

    # Compiled once (cached_property keeps it in the instance dict, outside the fields):
    # the grader runs every matcher against every command of long transcripts.
    @cached_property
    def _tests(self) -> tuple[Callable[[Any], bool], ...]:
        return tuple(_compile(self))

    def matches(self, cmd: ParsedCommand) -> bool:
        """Whether ``cmd`` (anything shaped like the parser's ParsedCommand) fits."""
        for test in self._tests:
            if not test(cmd):
                return False
        return True


def _options(value: str | list[str]) -> frozenset[str]:
    return frozenset([value] if isinstance(value, str) else value)


def _compile(m: Matcher) -> Iterator[Callable[[Any], bool]]:
    """One cheap predicate per given field, most selective first; missing attributes never match."""
    get = getattr
    if m.tool is not None:
        tool = m.tool
        yield lambda c: get(c, "tool", None) == tool
    if m.verb is not None:
        verbs = _options(m.verb)
        yield lambda c: get(c, "verb", None) in verbs
    if m.subverb is not None:
        subverbs = _options(m.subverb)
        yield lambda c: get(c, "subverb", None) in subverbs
    if m.resource is not None:
        resources = _options(m.resource)
        # `get deploy,rs` names several types; any of them may satisfy the matcher.
        yield lambda c: any(r in resources
                            for r in (get(c, "resources", None) or (get(c, "resource", None),)))
    if m.namespace is not None:
        ns = m.namespace
        yield lambda c: bool(get(c, "all_namespaces", False)) or get(c, "namespace", None) == ns
    if m.name is not None:
        name = m.name
        yield lambda c: any(_glob(name, n) for n in (get(c, "names", None) or (get(c, "name", None),)))
    if m.selector is not None:
        selector = m.selector
        yield lambda c: _glob(selector, get(c, "selector", None))
    if m.url_path is not None:
        url_path = m.url_path
        yield lambda c: _glob(url_path, get(c, "url_path", None))
    if m.http_method is not None:
        method = m.http_method.upper()
        yield lambda c: (get(c, "url_path", None) is not None or get(c, "tool", None) == "curl") \
            and str(get(c, "http_method", None) or "GET").upper() == method
    if m.output is not None:
        outputs = sorted(_options(m.output))
        yield lambda c: any(_glob(o, get(c, "output", None)) for o in outputs)
    if m.exec is not None:
        needle = m.exec
        yield lambda c: needle in " ".join(map(str, get(c, "exec_command", None) or ()))
    if m.mutation is not None:
        mutation = m.mutation
        yield lambda c: bool(get(c, "is_mutation", False) or get(c, "http_mutation", False)) == mutation
    if m.flag is not None:
        flag = m.flag.lstrip("-")
        yield lambda c: flag in _flag_names(get(c, "flags", None))
    if m.raw_regex is not None:
        pattern = re.compile(m.raw_regex)
        yield lambda c: pattern.search(str(get(c, "raw", None) or "")) is not None


def matches_any(matchers: list[Matcher], cmd: ParsedCommand) -> bool:
    return any(m.matches(cmd) for m in matchers)


# --------------------------------------------------------------------------- expected reasoning

class Step(_Strict):
    """One diagnostic or remedial action a senior engineer takes, and why."""

    id: Slug
    title: NonEmpty
    reason: NonEmpty = Field(description="the playbook's reason for this step, quoted or paraphrased")
    required: bool = True
    match: list[Matcher] = Field(min_length=1,
                                 description="any-of: a command matching one of these performs the step")
    after: list[Slug] = Field(default_factory=list, description="steps that must come earlier")
    unordered: bool = Field(False, description="exempt from phase order; only `after` constrains it")
    evidence: bool | None = Field(
        None, description="whether doing this step is evidence of the cause (changes made before "
                          "any such step are blind); default: required diagnosis steps outside "
                          "the first phase that are not symptom checks")
    incident: Slug | None = Field(
        None, description="in a compound of several incidents, the one this step belongs to (set by "
                          "`extends`): a change for one incident needs evidence of that incident's cause")

    def matches(self, cmd: ParsedCommand) -> bool:
        return matches_any(self.match, cmd)


class Phase(_Strict):
    """A stage of the playbook's answer framework; phases are done in order."""

    id: Slug
    title: NonEmpty
    steps: list[Step] = Field(min_length=1)


class Expected(_Strict):
    phases: list[Phase] = Field(min_length=1)


class AntiPattern(_Strict):
    """A "Common Weak Signal" from the playbook, recognised from commands."""

    id: Slug
    signal: NonEmpty = Field(description="the playbook's Common Weak Signals wording")
    match: list[Matcher] = Field(min_length=1)
    unless_after: list[Slug] = Field(
        default_factory=list,
        description="the command is a weak signal only while one of these steps has not been done yet",
    )
    penalty: int = Field(ge=1, le=50, description="points taken off the score")

    def matches(self, cmd: ParsedCommand) -> bool:
        return matches_any(self.match, cmd)


# --------------------------------------------------------------------------- fix checks

class _CheckBase(_Strict):
    description: str | None = Field(None, description="what the check proves, shown in reports")
    within_seconds: float = Field(30.0, ge=0, le=600,
                                  description="how long the runner may poll until the check holds")


class KubectlExpect(_Strict):
    """Predicates on a kubectl command's stdout (or one value of its ``-o json``)."""

    json_path: str | None = Field(None, description="dotted path into the -o json output (a.b.0.c)")
    equals: Any = None
    contains: str | None = None
    not_contains: str | None = None
    regex: str | None = None
    not_regex: str | None = None
    exit_code: int | None = Field(None, description="expected exit status (default: 0)")

    @field_validator("regex", "not_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        return _valid_regex(value)

    @model_validator(mode="after")
    def _has_predicate(self) -> KubectlExpect:
        if all(getattr(self, f) is None for f in type(self).model_fields if f != "json_path"):
            raise ValueError("give at least one of equals, contains, not_contains, regex, not_regex, "
                             "exit_code")
        return self


class KubectlCheck(_CheckBase):
    kind: Literal["kubectl"]
    args: list[NonEmpty] = Field(min_length=1,
                                 description="kubectl arguments, run with the admin kubeconfig")
    expect: KubectlExpect


Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "contains"]


class JsonExpect(_Strict):
    path: NonEmpty = Field(description="dotted path into the response JSON (a.b.0.c)")
    op: Op
    value: Any


class HttpCheck(_CheckBase):
    kind: Literal["http"]
    service: Slug
    namespace: Slug
    port: int = Field(80, ge=1, le=65535)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(pattern=r"^/")
    body: Any = Field(None, description="JSON request body")
    expect_status: int = Field(200, ge=100, le=599)
    expect_json: list[JsonExpect] = Field(default_factory=list)


class MetricCheck(_CheckBase):
    kind: Literal["metric"]
    service: Slug
    namespace: Slug
    port: int = Field(80, ge=1, le=65535)
    path: str = Field("/metrics", pattern=r"^/")
    name: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", description="Prometheus sample name")
    labels: dict[str, str] = Field(default_factory=dict)
    op: Op
    value: float


Check = Annotated[Union[KubectlCheck, HttpCheck, MetricCheck], Field(discriminator="kind")]


class Fix(_Strict):
    checks: list[Check] = Field(min_length=1, description="all must hold for the fix to count")


# --------------------------------------------------------------------------- the parameter space

ParameterName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40,
                                     description="lower-case letters, digits and '_': used as {{ name }}")]
#: A drawn value: text or a number (booleans are left out: YAML's yes/no would turn into them unasked).
Value = StrictStr | StrictInt | StrictFloat
#: A parameter's values are listed in full (a range is expanded), so the space must stay small.
MAX_VALUES = 1000
#: ``{{ name }}``: a parameter's name between double braces. Anything else between braces stays text: kubectl's
#: go-templates (``{{range .items}}{{.metadata.name}}{{- end}}``) must survive a render untouched.
PLACEHOLDER = re.compile(r"\{\{\s*([a-z][a-z0-9_]*)\s*\}\}")
#: The scenario fields whose strings may hold placeholders. Hints are left out on purpose: `mlops-drill hint`
#: runs in the candidate's shell, which must never learn the draw; id, title and topics name the scenario.
TEMPLATED_FIELDS = ("briefing", "faults", "expected", "anti_patterns", "accepted_diagnoses", "fix",
                    "reference_solution")


class IntRange(_Strict):
    """Whole numbers from ``min`` to ``max`` (inclusive) in steps of ``step``."""

    min: StrictInt
    max: StrictInt
    step: StrictInt = Field(1, ge=1)

    def values(self) -> tuple[int, ...]:
        return tuple(range(self.min, self.max + 1, self.step))


class FloatRange(_Strict):
    """Numbers from ``min`` to ``max`` (inclusive, within rounding) in steps of ``step``."""

    min: float
    max: float
    step: float = Field(gt=0)

    def values(self) -> tuple[float, ...]:
        # Counted, not accumulated: 0.1 added ten times is not 1.0, and the last value must not go missing.
        count = int((self.max - self.min) / self.step + 1e-9) + 1 if self.max >= self.min else 0
        return tuple(round(self.min + i * self.step, 9) for i in range(min(count, MAX_VALUES + 1)))


class Parameter(_Strict):
    """One dimension of the variant space: a list of ``choices`` or a numeric ``range``."""

    description: str | None = Field(None, description="what varies, for authors and reviewers")
    choices: list[Value] | None = Field(None, min_length=1, max_length=MAX_VALUES,
                                        description="the values to draw from, each distinct")
    range: Annotated[Union[IntRange, FloatRange], Field(union_mode="left_to_right")] | None = Field(
        None, description="min, max and step: whole numbers when all three are, else decimals")

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        if (self.choices is None) == (self.range is None):
            raise ValueError("give either `choices` or `range`")
        if self.choices is not None:
            seen: set[Any] = set()
            for value in self.choices:
                key = (type(value), value)
                if key in seen:
                    raise ValueError(f"choice {value!r} is listed twice")
                seen.add(key)
        else:
            count = len(self.values())
            if count == 0:
                raise ValueError("range is empty: min is above max")
            if count > MAX_VALUES:
                raise ValueError(f"range has more than {MAX_VALUES} values: raise the step")
        return self

    def values(self) -> tuple[Any, ...]:
        """Every value a draw can give, in a fixed order (the order draws index into)."""
        return tuple(self.choices) if self.choices is not None else self.range.values()  # type: ignore[union-attr]


def placeholder_names(text: str) -> list[str]:
    """The parameter names ``{{ name }}`` placeholders in ``text`` use, in order."""
    return PLACEHOLDER.findall(text)


def _walk_strings(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_strings(item, loc + (key,))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk_strings(item, loc + (i,))


def _check_placeholders(sc: Scenario) -> None:
    """Every ``{{ name }}`` names a declared parameter in a templated field, and every parameter
    changes a fault: a value that changed only the briefing would be a new story, not a new incident."""
    declared = sc.parameters
    if not declared:  # without a parameter space nothing is templated: the file means what it says, as always
        return
    used_by_faults: set[str] = set()
    for loc, text in _walk_strings(sc.model_dump(exclude_unset=True, exclude={"parameters"}), ()):
        for name in placeholder_names(text):
            if loc[0] not in TEMPLATED_FIELDS:
                raise ReferenceProblem(loc, f"{{{{ {name} }}}}: {loc[0]} is not templated (only "
                                            f"{', '.join(TEMPLATED_FIELDS)} are)")
            if name not in declared:
                raise ReferenceProblem(loc, f"unknown parameter {name!r} in {{{{ {name} }}}}"
                                            f"{_suggest(name, declared)} (declared: {', '.join(declared)})")
            if loc[0] == "faults":
                used_by_faults.add(name)
    for name in declared:
        if name not in used_by_faults:
            raise ReferenceProblem(("parameters", name),
                                   f"parameter {name!r} is used in no fault's params: every drawn value must "
                                   "change what is broken on the cluster")


# --------------------------------------------------------------------------- the scenario

class RedHerring(_Strict):
    """What makes a fault a red herring: a true, visible, harmless fact beside the real cause.

    Why it is graded: real incidents come with noise (a warning event, a pod that
    restarted once, an old ConfigMap), and a senior engineer rules it out with
    evidence instead of "fixing" it. The grader credits a ``rule_out`` command and
    takes ``penalty`` points for a change that matches ``touch``.
    """

    id: Slug
    signal: NonEmpty = Field(description="what the candidate sees, e.g. 'model-registry shows 1 restart'")
    reason: NonEmpty = Field(description="why it is harmless: the graded transcript's explanation")
    rule_out: list[Matcher] = Field(min_length=1, description="commands that look at it closely enough to "
                                                              "rule it out (only commands that change nothing count)")
    touch: list[Matcher] = Field(min_length=1, description="changes that 'fix' it (only changes that took "
                                                           "effect count)")
    penalty: int = Field(10, ge=1, le=50, description="points taken off for touching it")


class Fault(_Strict):
    name: FaultName
    params: dict[str, Any] = Field(default_factory=dict)
    red_herring: RedHerring | None = Field(
        None, description="marks this fault as a red herring: harmless, to be ruled out rather than fixed")


class Hint(_Strict):
    text: NonEmpty
    reveals_step: Slug


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace("-", " ").replace("_", " ").split())


def keyword_set_matches(keywords: list[str], diagnosis: str) -> bool:
    """All keywords present; each keyword is ``a|b|c`` alternatives (case-insensitive)."""
    said = _normalise(diagnosis)
    return all(any(_normalise(alt) in said for alt in kw.split("|") if alt.strip()) for kw in keywords)


# Causes offered as alternatives: only separators between them ("BATCH_SIZE, MODEL_URL or QUEUE_NAME",
# "v1/v2"), and at least one "or" or "/" among them, or a list opened by "either" / "one of".
_LIST_GAP = re.compile(r"(?:\s|,|/|\||\band/or\b|\bor\b)*")
_DISJUNCTIVE = re.compile(r"/|\||\bor\b")
_LIST_OPENER = re.compile(r"(?:\beither|\bone of|\bany of|\bwhether|\bmaybe|\bpossibly|\bcould be)\s*$")


def _mentions(alternatives: Sequence[str], text: str, which: str) -> list[tuple[int, int, str, str]]:
    found = []
    for alt in alternatives:
        wanted = _normalise(alt)
        if wanted:
            found += [(m.start(), m.end(), which, alt)
                      for m in re.finditer(rf"(?<![a-z0-9]){re.escape(wanted)}(?![a-z0-9])", text)]
    return found


def listed_as_alternatives(own: Sequence[str], rivals: Sequence[str], diagnosis: str) -> list[str]:
    """The ``rivals`` that ``diagnosis`` offers side by side with one of ``own`` as possible causes.

    Why a list and not any mention: an engineer names what they ruled out ("MODEL_URL and QUEUE_NAME are
    unchanged") or what is simply there ("the registry archived v1 and v2"), and that is not hedging;
    "BATCH_SIZE, MODEL_URL or QUEUE_NAME" holds the right answer whichever it is, and is.
    """
    text = _normalise(diagnosis)  # punctuation stays: the gaps between causes are read
    kept: list[tuple[int, int, str, str]] = []
    for mention in sorted(_mentions(own, text, "own") + _mentions(rivals, text, "rival"),
                          key=lambda m: (m[0], -m[1])):
        if not kept or mention[0] >= kept[-1][1]:  # the longer of two overlapping mentions
            kept.append(mention)
    named: list[str] = []
    group: list[tuple[int, int, str, str]] = []
    disjunctive = False
    for mention in kept + [None]:  # type: ignore[list-item]
        gap = text[group[-1][1]:mention[0]] if group and mention is not None else None
        if gap is not None and _LIST_GAP.fullmatch(gap):
            group.append(mention)
            disjunctive |= bool(_DISJUNCTIVE.search(gap))
            continue
        if {m[2] for m in group} == {"own", "rival"} and (disjunctive or _LIST_OPENER.search(text[:group[0][0]])):
            named += [m[3] for m in group if m[2] == "rival" and m[3] not in named]
        group, disjunctive = ([mention] if mention is not None else []), False
    return named


class Scenario(_Strict):
    """One troubleshooting drill: the symptoms, the faults, and how a senior engineer works it.

    With ``parameters`` the file is a template: each draw (:mod:`.variants`) fills its
    ``{{ name }}`` placeholders and is validated again as a scenario without parameters.
    """

    id: Slug
    title: NonEmpty
    topics: list[Topic] = Field(min_length=1)
    difficulty: Literal["easy", "medium", "hard"]
    time_limit_minutes: int = Field(ge=1, le=240)
    briefing: NonEmpty = Field(description="what the pager or user says: symptoms only, never the cause")
    faults: list[Fault] = Field(min_length=1)
    root_cause: Slug = Field(description="label of the root cause")
    accepted_diagnoses: list[list[NonEmpty]] = Field(
        min_length=1,
        description="keyword sets; a stated diagnosis counts when it contains every keyword of one set "
                    "(a keyword may list alternatives as a|b)",
    )
    expected: Expected
    anti_patterns: list[AntiPattern] = Field(default_factory=list)
    fix: Fix
    hints: list[Hint] = Field(default_factory=list, description="progressive: earlier hints are vaguer")
    reference_solution: list[NonEmpty] = Field(min_length=1,
                                               description="command lines a senior engineer would type")
    parameters: dict[ParameterName, Parameter] = Field(
        default_factory=dict,
        description="the variant space: each drill draws one value per parameter from a seed; "
                    "`{{ name }}` in the briefing, faults, expected, anti_patterns, accepted_diagnoses, fix "
                    "and reference_solution is replaced by the drawn value")

    #: What was drawn, on a rendered variant (None on the template and on scenarios without parameters).
    _variant: Any = PrivateAttr(default=None)
    #: On a rendered variant, per accepted keyword that the draw fills in: the alternatives only this variant
    #: has, and those only its siblings have (the other values of the parameters in it).
    _rival_diagnoses: list[tuple[tuple[str, ...], tuple[str, ...]]] = PrivateAttr(default_factory=list)
    #: On a rendered variant: the accepted keyword sets no draw fills in (the same in every sibling).
    _undrawn_sets: tuple[int, ...] = PrivateAttr(default=())

    @property
    def variant(self) -> Any:
        """The :class:`~.variants.Variant` this scenario was rendered from, or None."""
        return self._variant

    @field_validator("accepted_diagnoses")
    @classmethod
    def _keyword_sets_not_empty(cls, value: list[list[str]]) -> list[list[str]]:
        for i, keywords in enumerate(value):
            if not keywords:
                raise ValueError(f"keyword set {i} is empty and would accept any diagnosis")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Scenario:
        _check_ids(self)
        _check_precedence(self)
        _check_placeholders(self)
        if not self.parameters:  # a template's diagnosis is checked in every rendered variant instead
            _check_reference_solution(self)
        return self

    # -- queries the engine and grader use -------------------------------------------

    # Derived views are cached_property values: the grader asks for them per command of
    # long transcripts, and a scenario is treated as immutable once validated.
    @cached_property
    def steps(self) -> dict[str, Step]:
        """Every step by id, in phase order (first occurrence wins; ids are unique once valid)."""
        result: dict[str, Step] = {}
        for phase in self.expected.phases:
            for step in phase.steps:
                result.setdefault(step.id, step)
        return result

    @cached_property
    def phase_of(self) -> dict[str, int]:
        """Index of the phase each step belongs to."""
        result: dict[str, int] = {}
        for i, phase in enumerate(self.expected.phases):
            for step in phase.steps:
                result.setdefault(step.id, i)
        return result

    @cached_property
    def _precedence(self) -> dict[str, frozenset[str]]:
        return _predecessor_map(self)

    def required_steps(self) -> list[Step]:
        return [s for s in self.steps.values() if s.required]

    def predecessors(self, step_id: str) -> frozenset[str]:
        """Steps that must come before ``step_id``: its ``after`` list plus phase order."""
        return self._precedence[step_id]

    @cached_property
    def red_herrings(self) -> list[RedHerring]:
        """The red herrings of this scenario's faults, in fault order."""
        return [f.red_herring for f in self.faults if f.red_herring is not None]

    def accepts_diagnosis(self, text: str) -> bool:
        return any(keyword_set_matches(kws, text) for kws in self.accepted_diagnoses)

    def accepts_as_diagnosis(self, text: str) -> bool:
        """Accepted, and not a list of every possible cause (what the grader credits a diagnosis for)."""
        return self.accepts_diagnosis(text) and not self.rival_causes_named(text)

    def rival_causes_named(self, text: str) -> list[str]:
        """The causes of sibling variants that ``text`` offers as alternatives beside this variant's own.

        Why: a variant draws one cause of several (the worker's BATCH_SIZE, MODEL_URL or QUEUE_NAME), and a
        diagnosis that lists them all would contain the right keywords whichever was drawn. Naming every
        possibility is not finding the cause.
        """
        if any(keyword_set_matches(self.accepted_diagnoses[i], text) for i in self._undrawn_sets):
            return []  # accepted by a set every sibling shares: which value it names does not decide
        named: list[str] = []
        for own, rivals in self._rival_diagnoses:
            named += [r for r in listed_as_alternatives(own, rivals, text) if r not in named]
        return named


def _predecessor_map(sc: Scenario) -> dict[str, frozenset[str]]:
    """Direct precedence edges: explicit ``after`` and every ordered step of earlier phases."""
    result: dict[str, frozenset[str]] = {}
    earlier: set[str] = set()
    for phase in sc.expected.phases:
        for step in phase.steps:
            preds = set(step.after)
            if not step.unordered:
                preds |= earlier
            result[step.id] = frozenset(preds)
        earlier |= {s.id for s in phase.steps if not s.unordered}
    return result


def _step_locs(sc: Scenario) -> dict[str, tuple[str | int, ...]]:
    return {s.id: ("expected", "phases", pi, "steps", si)
            for pi, p in enumerate(sc.expected.phases) for si, s in enumerate(p.steps)}


def _check_ids(sc: Scenario) -> None:
    seen: set[str] = set()
    for pi, phase in enumerate(sc.expected.phases):
        if phase.id in seen:
            raise ReferenceProblem(("expected", "phases", pi, "id"), f"phase id {phase.id!r} is used twice")
        seen.add(phase.id)
    seen_steps: set[str] = set()
    for pi, phase in enumerate(sc.expected.phases):
        for si, step in enumerate(phase.steps):
            if step.id in seen_steps:
                raise ReferenceProblem(("expected", "phases", pi, "steps", si, "id"),
                                       f"step id {step.id!r} is used twice")
            seen_steps.add(step.id)
            for ai, ref in enumerate(step.after):
                if ref == step.id:
                    raise ReferenceProblem(("expected", "phases", pi, "steps", si, "after", ai),
                                           f"step {step.id!r} cannot come after itself")
                if ref not in sc.steps:
                    raise ReferenceProblem(("expected", "phases", pi, "steps", si, "after", ai),
                                           f"unknown step {ref!r}{_suggest(ref, sc.steps)}")
    if all(f.red_herring is not None for f in sc.faults):
        raise ReferenceProblem(("faults",), "every fault is a red herring: a scenario needs a real fault too")
    seen_herrings: set[str] = set()
    for fi, fault in enumerate(sc.faults):
        if fault.red_herring is None:
            continue
        if fault.red_herring.id in seen_herrings or fault.red_herring.id in sc.steps:
            raise ReferenceProblem(("faults", fi, "red_herring", "id"),
                                   f"red herring id {fault.red_herring.id!r} is used twice (step ids count)")
        seen_herrings.add(fault.red_herring.id)
    seen_ap: set[str] = set()
    for ai, ap in enumerate(sc.anti_patterns):
        if ap.id in seen_ap:
            raise ReferenceProblem(("anti_patterns", ai, "id"), f"anti-pattern id {ap.id!r} is used twice")
        seen_ap.add(ap.id)
        for ui, ref in enumerate(ap.unless_after):
            if ref not in sc.steps:
                raise ReferenceProblem(("anti_patterns", ai, "unless_after", ui),
                                       f"unknown step {ref!r}{_suggest(ref, sc.steps)}")
    for hi, hint in enumerate(sc.hints):
        if hint.reveals_step not in sc.steps:
            ref = hint.reveals_step
            raise ReferenceProblem(("hints", hi, "reveals_step"), f"unknown step {ref!r}{_suggest(ref, sc.steps)}")


def _suggest(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_precedence(sc: Scenario) -> None:
    """Reject cycles, e.g. a phase-1 step declared ``after`` a phase-2 step."""
    preds = sc._precedence
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    locs = _step_locs(sc)
    phases = sc.expected.phases
    for sid, step in sc.steps.items():  # the common mistake, named plainly
        for ai, ref in enumerate(step.after):
            other = sc.steps[ref]
            if not step.unordered and not other.unordered and sc.phase_of[ref] > sc.phase_of[sid]:
                raise ReferenceProblem(
                    locs[sid] + ("after", ai),
                    f"step {sid!r} (phase {phases[sc.phase_of[sid]].id!r}) cannot come after {ref!r} "
                    f"of the later phase {phases[sc.phase_of[ref]].id!r}; move it or mark one `unordered`")

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(preds[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [node] if nxt in path else [nxt, node]
                step = sc.steps[node]
                loc = locs[node] + (("after", step.after.index(nxt)) if nxt in step.after else ("after",))
                raise ReferenceProblem(loc, "precedence cycle (each after the next): " + " -> ".join([*cycle, nxt])
                                       + " (phase order counts; `unordered` exempts a step)")
            if state.get(nxt) is None:
                visit(nxt, path + [node])
        state[node] = 2

    for sid in sc.steps:
        if sid not in state:
            visit(sid, [])


def _check_reference_solution(sc: Scenario) -> None:
    """The reference solution must state a diagnosis that the scenario itself accepts."""
    diagnosed = False
    for i, line in enumerate(sc.reference_solution):
        try:
            words = shlex.split(line)
        except ValueError as err:
            raise ReferenceProblem(("reference_solution", i), f"not a valid shell line: {err}") from None
        if words[:2] == ["mlops-drill", "diagnose"]:
            text = " ".join(words[2:])
            if not sc.accepts_diagnosis(text):
                raise ReferenceProblem(("reference_solution", i),
                                       "this diagnosis is not accepted by accepted_diagnoses")
            diagnosed = True
    if not diagnosed:
        raise ReferenceProblem(("reference_solution",), 'needs a `mlops-drill diagnose "..."` line')
