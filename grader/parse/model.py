"""The one value the command-line model produces: :class:`ParsedCommand`.

Grading matches scenario steps against these fields, never against raw text,
so two spellings of one command (``kubectl -n serving get po`` and
``k get pods --namespace=serving``) grade the same. The result is immutable
and hashable so graders can deduplicate or cache commands freely.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

V = TypeVar("V")


class FrozenMap(Mapping[str, V]):
    """A read-only, hashable mapping: a frozen dataclass field must not be mutable."""

    __slots__ = ("_d", "_h")

    def __init__(self, data: Mapping[str, V] | None = None) -> None:
        self._d: dict[str, V] = dict(data or {})
        self._h: int | None = None

    def __getitem__(self, key: str) -> V:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(frozenset(self._d.items()))
        return self._h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._d == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"


EMPTY_MAP: FrozenMap = FrozenMap()


@dataclass(frozen=True)
class ParsedCommand:
    """One command as the grader understands it (see docs in ``grader/parse/__init__.py``).

    Fields after ``error`` (``args``, ``resources``, ``subshells``) are additions
    to the agreed API; nothing earlier changes meaning.
    """

    raw: str
    tool: str
    verb: str | None = None
    subverb: str | None = None
    resource: str | None = None
    name: str | None = None
    names: tuple[str, ...] = ()
    namespace: str | None = None
    all_namespaces: bool = False
    output: str | None = None
    selector: str | None = None
    field_selector: str | None = None
    sort_by: str | None = None
    container: str | None = None
    exec_command: tuple[str, ...] = ()
    is_mutation: bool = False
    flags: Mapping[str, str | bool] = field(default=EMPTY_MAP)
    url: str | None = None
    http_method: str | None = None
    url_path: str | None = None
    url_host: str | None = None
    port: int | None = None
    headers: tuple[str, ...] = ()
    payload: str | None = None
    http_mutation: bool = False
    pipeline: tuple[str, ...] = ()
    env_prefix: Mapping[str, str] = field(default=EMPTY_MAP)
    error: str | None = None
    # Additions: positional words after verb/subverb that are not resource
    # names (label specs, ports, the can-i verb, explain's field path...);
    # every resource type when several are named (`get po,svc`, `get pod/a svc/b`).
    args: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
