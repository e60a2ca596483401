"""Safe YAML loading that remembers the line of every key, for error messages.

Only ``yaml.SafeLoader`` is used: tags such as ``!!python/object`` are
rejected with the line they are on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pipelines.errors import SpecError

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """``("metrics", 2, "average")`` -> ``metrics[2].average``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


@dataclass(frozen=True)
class YamlSource:
    """A parsed YAML document with the line number of each key path."""

    name: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def where(self, path: Path) -> str:
        """``"job.yaml: metrics[2].average (line 14)"``: the key path and its nearest known line."""
        probe = tuple(path)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        at = f" (line {line})" if line else ""
        return f"{self.name}: {format_path(path)}{at}"


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


class PlainLoader(yaml.SafeLoader):
    """The safe loader without implicit timestamps: ``2026-11-20`` stays the string it looks like
    (dates are template variables here, and records must stay JSON)."""


PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_scalar(text: str) -> Any:
    """One ``--set`` value parsed as a YAML scalar (numbers, booleans, lists), dates kept as strings."""
    return yaml.load(text, Loader=PlainLoader)  # PlainLoader is a SafeLoader: no Python objects


def load_yaml(text: str, name: str) -> YamlSource:
    """Parse ``text`` (the contents of file ``name``) with the safe loader.

    Raises:
        SpecError: syntax errors, unsafe tags, duplicate keys or a document
            that is not a mapping, with the line.
    """
    loader = PlainLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(
                f"{name}: the file is empty; expected a YAML mapping with at least `name`, `data`, `task`, `metrics`."
            )
        lines: dict[Path, int] = {}
        _walk(node, (), lines)
        _reject_duplicate_keys(node, name)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = exc.problem or str(exc)
        if exc.problem and "constructor" in exc.problem:
            problem = f"{exc.problem}; only plain YAML (mappings, lists, strings, numbers, booleans) is accepted"
        raise SpecError(f"{name}{line}: invalid YAML: {problem}.") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: invalid YAML: {exc}.") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError(f"{name}: expected a YAML mapping at the top level, got {type(data).__name__}.")
    return YamlSource(name, data, lines)


def _reject_duplicate_keys(node: yaml.Node, name: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = getattr(key_node, "value", None)
            if isinstance(key_node, yaml.ScalarNode) and key in seen:
                raise SpecError(
                    f"{name} (line {key_node.start_mark.line + 1}): key {key!r} appears twice in the same "
                    f"mapping (first on line {seen[key]})."
                )
            if isinstance(key_node, yaml.ScalarNode):
                seen[key] = key_node.start_mark.line + 1
            _reject_duplicate_keys(value_node, name)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, name)
