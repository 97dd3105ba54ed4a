"""A fault is one small reversible class: apply, verify that it took, revert.

Faults only change what a real incident would change (a Deployment edited, a
CronJob broken, a GPU lost) and leave no marker in objects the candidate can
read: no annotations, no tell-tale names. ``revert`` restores the baseline and
is idempotent, so ``reset`` can always run it again.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mlops_drill.errors import DrillError
from mlops_drill.injector.context import DrillContext

REGISTRY: dict[str, type["Fault"]] = {}


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fault(abc.ABC):
    """Subclasses set ``name`` and ``Params`` and implement the three verbs."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    description: ClassVar[str] = ""
    #: False where the fault changes what a seat of a shared cluster does not have a copy of its own
    #: (the GPU inventory and device-plugin state the shared node agent keeps).
    seat_ready: ClassVar[bool] = True
    #: False where the fault changes a node or takes its capacity (labels, spot shutdowns, GPUs held):
    #: seats of an existing cluster share its real nodes, so there it would reach every seat.
    shared_nodes_ready: ClassVar[bool] = True

    @classmethod
    def seat_ready_with(cls, params: dict[str, Any]) -> bool:
        """Whether a seat can take this fault with these params; most faults decide by class alone."""
        return cls.seat_ready

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        try:
            self.params = self.Params.model_validate(params or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            raise DrillError(f"fault {self.name}: params.{where}: {first['msg']}") from None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None) and getattr(cls, "name", None):
            taken = REGISTRY.get(cls.name)
            if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
                # A plugin must not silently replace a built-in (or another plugin's) fault.
                raise TypeError(f"fault name {cls.name!r} is taken by {taken.__module__}.{taken.__qualname__}")
            REGISTRY[cls.name] = cls

    @abc.abstractmethod
    def apply(self, ctx: DrillContext) -> None:
        """Break the platform."""

    @abc.abstractmethod
    def verify_applied(self, ctx: DrillContext) -> bool:
        """True once the fault's *symptom* can be observed (what the engine waits for)."""

    @abc.abstractmethod
    def revert(self, ctx: DrillContext) -> None:
        """Put back the baseline; safe to call any number of times, also when never applied."""

    def settle(self, ctx: DrillContext) -> None:
        """After ``reset`` has waited for the baseline's rollouts: what a revert can only check then.

        Why apart from ``revert``: waiting for a rollout inside a revert holds up
        everything the reset still has to put back; the engine waits once, for all.
        """


def seat_blockers(faults, shared_nodes: bool = False) -> list[str]:
    """Names of ``faults`` (a scenario's) that a seat of a shared cluster cannot take (``seat_ready``).

    ``shared_nodes``: the seats share the cluster's real nodes (an existing or kind cluster) instead of
    having nodes of their own, so a fault that acts on a node is refused too.
    """
    import mlops_drill.injector.faults  # noqa: F401  (the registry: a fresh drill server had none yet)

    def blocked(cls, params) -> bool:
        return not cls.seat_ready_with(params) or (shared_nodes and not cls.shared_nodes_ready)

    return [f.name for f in faults if f.name in REGISTRY and blocked(REGISTRY[f.name], f.params)]


def load_plugin_faults() -> None:
    """Import the faults other packages register under the ``mlops_drill.faults`` entry-point group.

    Why entry points: instructors add faults by installing a package (``pip install``),
    the way pytest and kopf find plugins, without editing this one. Each entry point is
    ``<fault name> = module:FaultSubclass``; the name must equal the class's ``name``.
    """
    from importlib.metadata import entry_points

    from mlops_drill.scenarios.schema import FAULT_ENTRY_POINTS

    for ep in entry_points(group=FAULT_ENTRY_POINTS):
        if ep.name in REGISTRY and REGISTRY[ep.name].__module__ == ep.module:
            continue
        dist = f" from {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
        where = f"fault plugin {ep.name!r} ({ep.value}{dist})"
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises, say which plugin in one line
            raise DrillError(f"{where}: cannot load: {type(exc).__name__}: {exc}".replace("\n", " ")) from None
        if not (isinstance(cls, type) and issubclass(cls, Fault)):
            raise DrillError(f"{where}: is not a subclass of mlops_drill.injector.fault.Fault")
        if getattr(cls, "name", None) != ep.name:
            raise DrillError(f"{where}: the class is named {getattr(cls, 'name', None)!r}; "
                             "the entry point's name must equal the Fault's `name`")
        REGISTRY[ep.name] = cls


def make(name: str, params: dict[str, Any] | None = None) -> Fault:
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)

    if name not in REGISTRY:
        raise DrillError(f"unknown fault {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name](params)
