"""Safe YAML loading that remembers the line of every key, for error messages.

Only ``yaml.SafeLoader`` is used: tags such as ``!!python/object`` are
rejected with the line they are on.

Before anything is built, one pass over the parser's events (no node is
composed, no alias expanded) bounds what a document can cost: its size in
bytes, how deep mappings and lists nest, how many aliases it uses and how many
values it stands for once every alias is expanded (:class:`YamlLimits`). A
"billion laughs" document of a few hundred bytes is refused there, in
milliseconds, instead of being expanded by the line-number walk, the
constructor, the template renderer or the recorded spec.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    assigned: dict[Path, str] = field(default_factory=dict)
    """Key paths set on the command line (``--set execution.actors=0``) -> that assignment, named instead of the
    line of the value it replaced."""

    def where(self, path: Path) -> str:
        """``"job.yaml: metrics[2].average (line 14)"``: the key path and its nearest known line, or the ``--set``
        that gave it its value."""
        probe = tuple(path)
        if probe not in self.lines:  # a key that a --set made, on the way to the path it assigns
            made = next((text for key, text in self.assigned.items() if key[: len(probe)] == probe), None)
            if made is not None:
                return f"{self.name}: {format_path(path)} (--set {made})"
        while probe and probe not in self.lines and probe not in self.assigned:
            probe = probe[:-1]
        if probe in self.assigned:
            return f"{self.name}: {format_path(path)} (--set {self.assigned[probe]})"
        line = self.lines.get(probe)
        at = f" (line {line})" if line else ""
        return f"{self.name}: {format_path(path)}{at}"


@dataclass(frozen=True)
class YamlLimits:
    """What one YAML document may cost. A job spec is a page of YAML: a few hundred values, a few levels
    deep, rarely an alias; these limits are orders of magnitude above that and far below what would hurt."""

    bytes: int = 1_000_000
    """UTF-8 size of the document."""
    depth: int = 64
    """Mappings and lists nested inside each other."""
    aliases: int = 1_000
    """``*name`` references."""
    nodes: int = 100_000
    """Values (scalars, mappings, lists) the document stands for with every alias expanded."""


LIMITS = YamlLimits()

_PARSERS: tuple[Any, ...] = (*((yaml.CSafeLoader,) if hasattr(yaml, "CSafeLoader") else ()), yaml.SafeLoader)
"""libyaml's parser first when PyYAML was built with it (a millisecond per 10 kB); PyYAML's own when
libyaml stops on something (it has its own, larger, nesting limit), so that the limits here decide."""


def _events(text: str, parser_class: Any) -> Iterator[yaml.Event]:
    parser = parser_class(text)
    try:
        while parser.check_event():
            yield parser.get_event()
    finally:
        parser.dispose()


def check_limits(text: str, name: str, limits: YamlLimits = LIMITS) -> None:
    """Refuse ``text`` when it exceeds ``limits``, from the parser's events alone (aliases are counted by
    the size of what they name, never expanded). A syntax error ends the pass: the loader reports it.

    Raises:
        SpecError: one sentence naming the file, the line and the limit.
    """
    size = len(text) if len(text) * 4 <= limits.bytes else len(text.encode("utf-8", "surrogatepass"))
    if size > limits.bytes:
        raise SpecError(
            f"{name}: the job spec is {size:,} bytes, more than the {limits.bytes:,} bytes a spec may have; "
            "expected a short YAML file (put data in Parquet files, not in the spec)."
        )
    for parser_class in _PARSERS:
        try:
            _check_events(_events(text, parser_class), name, limits)
            return
        except yaml.MarkedYAMLError as exc:
            if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit (1000), met while scanning
                mark = exc.problem_mark
                raise _too_deep(name, f" (line {mark.line + 1})" if mark else "", limits) from None
        except yaml.YAMLError:
            continue


def _too_deep(name: str, line: str, limits: YamlLimits) -> SpecError:
    return SpecError(
        f"{name}{line}: mappings and lists nest more than {limits.depth} levels deep; a job spec needs a few."
    )


def _check_events(events: Iterator[yaml.Event], name: str, limits: YamlLimits) -> None:
    sizes: dict[str, int] = {}  # anchor -> values it stands for, once its node is complete
    stack: list[tuple[int, str | None]] = []  # open collections: (values counted before it, anchor)
    expanded = aliases = 0
    for event in events:
        line = f" (line {event.start_mark.line + 1})" if event.start_mark else ""
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.aliases:
                raise SpecError(
                    f"{name}{line}: the YAML uses more than {limits.aliases:,} aliases (*name); a job spec needs "
                    "few if any: write the values out."
                )
            if event.anchor not in sizes and any(anchor == event.anchor for _, anchor in stack):
                raise SpecError(
                    f"{name}{line}: alias *{event.anchor} refers to the mapping or list it is inside (a recursive "
                    "structure); expected plain values."
                )
            expanded += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            expanded += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append((expanded, event.anchor))
            expanded += 1
            if len(stack) > limits.depth:
                raise _too_deep(name, line, limits)
        elif isinstance(event, yaml.CollectionEndEvent):
            opened, anchor = stack.pop()
            if anchor is not None:
                sizes[anchor] = expanded - opened
        if expanded > limits.nodes:
            raise SpecError(
                f"{name}{line}: the YAML stands for more than {limits.nodes:,} values once its aliases are "
                "expanded (each *name repeats the whole value it names); a job spec needs far fewer."
            )


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
    check_limits(text, "--set")
    return yaml.load(text, Loader=PlainLoader)  # PlainLoader is a SafeLoader: no Python objects


def load_yaml(text: str, name: str) -> YamlSource:
    """Parse ``text`` (the contents of file ``name``) with the safe loader.

    Raises:
        SpecError: syntax errors, unsafe tags, duplicate keys, a document
            that is not a mapping, with the line; a document over :data:`LIMITS`.
    """
    try:
        loader = PlainLoader(text)  # (it reads the whole text: a character YAML does not allow fails here)
    except yaml.reader.ReaderError as exc:
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise SpecError(
            f"{name}: invalid YAML: character {char} at position {exc.position} is not allowed ({exc.reason}); a job "
            "spec is printable UTF-8 text."
        ) from None
    try:
        check_limits(text, name)
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
