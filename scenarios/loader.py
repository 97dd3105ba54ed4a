"""Loads scenario YAML files and turns every problem into one line: ``path:line:col: field: problem``.

Scenario authors edit YAML by hand, so an error must point at the line to fix.
PyYAML's composer keeps a mark (line, column) on every node; the loader keeps that
node tree beside the plain data and walks it along pydantic's error location to find
the offending key or value. Duplicate keys, which YAML silently collapses to the
last one, are reported too, because they hide edits.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlops_drill.errors import DrillError
from mlops_drill.scenarios import schema
from mlops_drill.scenarios.schema import ReferenceProblem, Scenario

Loc = tuple[str | int, ...]


def catalogue_dir() -> Path:
    """The built-in catalogue shipped inside the package."""
    return Path(__file__).resolve().parent / "catalogue"


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate one scenario file; any problem is a one-line :class:`DrillError`."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise DrillError(_one_line(f"{path}: cannot read scenario file: {err.strerror or err}")) from None
    except UnicodeDecodeError as err:
        raise DrillError(_one_line(f"{path}:1:1: <file>: not UTF-8 text (byte {err.start})")) from None
    root, data = _parse_yaml(path, text)
    place = None
    if isinstance(data, dict) and "extends" in data:  # a compound incident: its bases merged in first
        from mlops_drill.scenarios.compound import resolve

        data = resolve(path, data, _read_data)
        place = _compound_place(path, root)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise DrillError(_describe(path, root, err, place)) from None
    _check_variants(path, root, scenario)
    return scenario


def _read_data(path: Path) -> Any:
    """The plain data of another scenario file (a compound's base), with the same one-line errors."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DrillError(_one_line(f"{path}: cannot read scenario file: {err}")) from None
    data = _parse_yaml(path, text)[1]
    if not isinstance(data, dict):
        raise DrillError(f"{path}:1:1: <document>: expected a scenario mapping")
    return data


def _check_variants(path: Path, root: Node | None, scenario: Scenario) -> None:
    """Render the draws that use every choice and both ends of every range: a value that makes the
    file invalid (a diagnosis the accepted keywords miss, a fault param of the wrong type) is
    reported at the template's line, with the value that broke it."""
    from mlops_drill.scenarios.variants import probe_values, render

    for values in probe_values(scenario) if scenario.parameters else ():
        try:
            render(scenario, values)
        except ValidationError as err:
            drawn = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise DrillError(f"{_describe(path, root, err)} (in the variant {drawn})") from None


def load_catalogue(dir: str | Path | None = None) -> dict[str, Scenario]:
    """Every ``<id>.yaml`` in ``dir``, keyed by id; without ``dir``: the built-in catalogue and every
    scenario pack folder (``--scenarios`` / ``MLOPS_DRILL_SCENARIOS``, see :mod:`.packs`)."""
    if dir is None:
        from mlops_drill.scenarios.packs import scenario_files

        files = list(scenario_files().values())
    else:
        folder = Path(dir)
        if not folder.is_dir():
            raise DrillError(f"{folder}: scenario catalogue folder does not exist")
        files = sorted(folder.glob("*.yaml"))
    result: dict[str, Scenario] = {}
    for file in files:
        result[file.stem] = load_scenario_file(file)
    return result


def load_scenario_file(file: str | Path) -> Scenario:
    """:func:`load_scenario`, plus the catalogue's rule that the id is the file name."""
    file = Path(file)
    scenario = load_scenario(file)
    if scenario.id != file.stem:
        line, col = _id_mark(file)
        raise DrillError(_one_line(
            f"{file}:{line}:{col}: id: {scenario.id!r} does not match the file name "
            f"(rename the file to {scenario.id}.yaml or change the id)"))
    return scenario


def located(path: str | Path, loc: Loc, problem: str) -> str:
    """``path:line:col: field: problem`` for a problem found after loading (a fault's params):
    the same one-line shape as every load error."""
    path = Path(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, yaml.YAMLError):
        root = None
    node, shown = _locate(root, loc)
    mark = node.start_mark if node is not None else None
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    field = ".".join(str(p) for p in (shown if len(shown) >= len(loc) else loc)) or "<document>"
    return _one_line(f"{path}:{line}:{col}: {field}: {problem}")


# --------------------------------------------------------------------------- YAML with marks

# libyaml keeps the same marks and is several times faster; fall back to pure Python.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Remembers the node being constructed: PyYAML's constructors can fail with plain
    exceptions (``IndexError`` on some int-looking scalars, ``ValueError`` on impossible
    dates) that carry no position, and the user still deserves a line number."""

    current_node: Node | None = None

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        self.current_node = node
        return super().construct_object(node, deep=deep)


def _parse_yaml(path: Path, text: str) -> tuple[Node | None, Any]:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _reject_duplicate_keys(path, root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (err.context, err.problem) if p) or "malformed YAML"
        raise DrillError(_one_line(f"{path}:{line}:{col}: <yaml>: {problem}")) from None
    except yaml.YAMLError as err:  # reader errors (control characters) carry a position only
        pos = getattr(err, "position", None)
        line, col = _line_col(text, pos) if isinstance(pos, int) else (1, 1)
        raise DrillError(_one_line(f"{path}:{line}:{col}: <yaml>: {err}")) from None
    except RecursionError:
        raise DrillError(f"{path}:1:1: <yaml>: document nested too deeply") from None
    except DrillError:
        raise
    except Exception as err:  # noqa: BLE001 - a constructor bug must still become one line
        node = loader.current_node
        mark = node.start_mark if node is not None else None
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        value = repr(node.value)[:60] if isinstance(node, ScalarNode) else "value"
        raise DrillError(_one_line(f"{path}:{line}:{col}: <yaml>: cannot read {value}: "
                                   f"{type(err).__name__}: {err}")) from None
    finally:
        loader.dispose()
    if data is None:
        raise DrillError(f"{path}:1:1: <document>: file is empty; expected a scenario mapping")
    return root, data


def _reject_duplicate_keys(path: Path, root: Node) -> None:
    stack = [root]
    seen_nodes: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # aliases share nodes
            continue
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    if key.value in keys and key.value != "<<":
                        m = key.start_mark
                        raise DrillError(_one_line(
                            f"{path}:{m.line + 1}:{m.column + 1}: {key.value}: duplicate key "
                            "(YAML would silently keep only the last one)"))
                    keys.add(key.value)
                stack.extend((key, value))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    before = text[:pos]
    return before.count("\n") + 1, pos - (before.rfind("\n") + 1) + 1


def _id_mark(file: Path) -> tuple[int, int]:
    try:
        root = yaml.compose(file.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, yaml.YAMLError):
        return 1, 1
    node, _ = _locate(root, ("id",))
    return node.start_mark.line + 1, node.start_mark.column + 1


# --------------------------------------------------------------------------- errors -> one line

def _locate(root: Node | None, loc: Loc, missing: bool = False) -> tuple[Node | None, list[str | int]]:
    """The node ``loc`` points at (or its nearest existing ancestor) and the path to show.

    Pydantic inserts union member tags into locations (``'kubectl'`` for a
    discriminated check, ``'str'`` for ``str | list[str]``); parts that do not
    exist in the document are skipped, except the final key of a ``missing`` error.
    """
    node, shown = root, []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, MappingNode):
            hit = next(((k, v) for k, v in node.value
                        if isinstance(k, ScalarNode) and k.value == str(part)), None)
            if hit is not None:
                shown.append(part)
                # The line to edit is the key's: for an unknown key, or a block value below it.
                node = hit[0] if last else hit[1]
                continue
            if last and missing:
                shown.append(part)
            continue
        if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            shown.append(part)
            node = node.value[part]
    return node, shown


def _error_loc(error: dict[str, Any]) -> Loc:
    exc = (error.get("ctx") or {}).get("error")
    if isinstance(exc, ReferenceProblem):
        return tuple(error["loc"]) + exc.loc
    return tuple(error["loc"])


Place = Callable[[Loc], tuple[Path, "Node | None", Loc]]


def _compound_place(path: Path, root: Node | None) -> Place:
    """Where a problem in a compound's merged data was written: a fault sits at another index of the
    file, or in a base's file; everything else is the file's own or the merge's."""
    from mlops_drill.scenarios.compound import fault_origin

    def place(loc: Loc) -> tuple[Path, Node | None, Loc]:
        if len(loc) > 1 and loc[0] == "faults" and isinstance(loc[1], int):
            where, at = fault_origin(path, loc[1], _read_data)
            if where != path:
                try:
                    return where, yaml.compose(where.read_text(encoding="utf-8"), Loader=_Loader), ("faults", at, *loc[2:])
                except (OSError, yaml.YAMLError):
                    return where, None, ("faults", at, *loc[2:])
            return path, root, ("faults", at, *loc[2:])
        return path, root, loc

    return place


def _describe(path: Path, root: Node | None, err: ValidationError, place: Place | None = None) -> str:
    # A misspelt key yields "unknown key" and "required field is missing" together: the
    # unknown key, with its "did you mean", is the line to fix, so it is told first.
    errors = sorted(err.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    located = []
    for error in errors:
        loc = _error_loc(error)
        where, where_root = path, root
        if place is not None:
            where, where_root, loc = place(loc)
        node, shown = _locate(where_root, loc, missing=error["type"] == "missing")
        located.append((error, loc, node, tuple(shown), where))
    first, loc, node, shown, path = located[0]
    # A value that fits no member of a union yields one error per member: say them together.
    same = [e for e in located if e[3] == shown and e[4] == path]
    problems = [_problem(e[0], e[1]) for e in same]
    messages = list(dict.fromkeys(p[0] for p in problems))
    got = next((p[1] for p in problems if p[1]), "")
    mark = node.start_mark if node is not None else None
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    field = ".".join(str(p) for p in shown) or "<document>"
    more = len(located) - len(same)
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    found = f" ({got})" if got else ""
    return _one_line(f"{path}:{line}:{col}: {field}: {'; or '.join(messages)}{found}{suffix}")


def _problem(error: dict[str, Any], loc: Loc) -> tuple[str, str]:
    """The problem in words, and what was found instead (empty when not worth showing)."""
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        close = difflib.get_close_matches(key, sorted(_known_keys()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {key!r}{hint}", ""
    if kind == "missing":
        return "required field is missing", ""
    exc = (error.get("ctx") or {}).get("error")
    message = str(exc) if isinstance(exc, ValueError) else error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if isinstance(exc, ReferenceProblem):
        return message, ""
    value = error.get("input")
    if isinstance(value, (str, int, float, bool)):
        shown = repr(value)
        return message, f"got {shown if len(shown) <= 60 else shown[:57] + '...'}"
    if isinstance(value, dict):
        quote = "; quote text that contains ': '" if kind == "string_type" else ""
        return message, f"got a mapping{quote}"
    if isinstance(value, list):
        return message, "got a list"
    return message, ""


def _known_keys() -> set[str]:
    """Every field name of every scenario model: candidates for "did you mean"."""
    keys: set[str] = set()
    for obj in vars(schema).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == schema.__name__:
            keys |= set(obj.model_fields)
    return keys


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).replace("\r", " ")
