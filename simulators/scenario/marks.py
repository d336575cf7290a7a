"""YAML that remembers where each value was: plain data plus the line of every key and item.

PyYAML's composer keeps a start mark on every node; walking the node tree (instead of ``safe_load``) gives
the same data as the safe loader for the subset scenarios use (mappings, sequences, strings, numbers,
booleans, null) and a table from each value's path (``("inject", 2, "at")``) to its line, so that a
problem found later (by validation, or when a target cannot be found in the world) is reported at its line.
Duplicate keys are errors (the safe loader keeps the last one silently); ``12:30`` stays the text of a time
of day (YAML 1.1 would read it as the base-60 integer 750) and dates stay text.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from eldercare.simulators.errors import ScenarioError

PathKey = tuple[str | int, ...]


class Marked:
    def __init__(self, data: object, lines: dict[PathKey, tuple[int, int]], source: Path | str) -> None:
        self.data = data
        self.lines = lines
        self.source = source

    def line(self, path: PathKey) -> int | None:
        """The line of ``path`` or, if it has none (a missing key), of its nearest parent."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found[0]
        return None

    def error(self, path: PathKey, reason: str) -> ScenarioError:
        where = ".".join(str(p) for p in path)
        return ScenarioError(self.source, self.line(path), f"{where}: {reason}" if where else reason)


def load(text: str, source: Path | str) -> Marked:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise ScenarioError(source, line, f"not valid YAML: {exc.problem or exc}", column=column) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(source, None, f"not valid YAML: {exc}") from None
    if node is None:
        raise ScenarioError(source, 1, "the file is empty")
    lines: dict[PathKey, tuple[int, int]] = {}
    return Marked(_value(node, (), lines, source), lines, source)


def _value(node: yaml.Node, path: PathKey, lines: dict[PathKey, tuple[int, int]], source: Path | str) -> object:
    lines.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ScenarioError(source, key_node.start_mark.line + 1, "keys must be plain words")
            key = key_node.value
            if key in out:
                raise ScenarioError(source, key_node.start_mark.line + 1, f"{key!r} is given twice")
            lines[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _value(value_node, (*path, key), lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_value(item, (*path, i), lines, source) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if node.tag.endswith(":int") and ":" in node.value:
        return node.value  # 12:30 is a time of day here, not YAML 1.1's base-60 integer 750
    if node.tag.endswith(":timestamp"):
        return node.value  # dates and instants are read by the scenario's own rules
    loader = yaml.SafeLoader("")
    try:
        value: object = loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise ScenarioError(source, node.start_mark.line + 1, f"cannot read this value: {exc.problem}") from None
    finally:
        loader.dispose()
    return value
