"""A JSON Schema (draft 2020-12) of the job spec, derived from the spec reader itself: ``evalpipe schema``.

:mod:`pipelines.spec` reads every mapping of a job spec through one small vocabulary, and that vocabulary
is what this module reads, from the reader's source code (:data:`SPEC_MODULES`), starting at ``_parse``:

* ``sec.get("key", kind, default, required=..., choices=...)``: a key, its YAML type(s), default and choices;
* ``sec.section("key")`` and ``Section(source, ("key", i), value)``: a nested mapping, or a list of them;
* ``sec.allowed.append("key")`` / ``.extend([...])``: a key read by hand (any value);
* ``sec.finish()``: the mapping refuses unknown keys (``additionalProperties: false``);
* ``raw = sec.value.get("key")`` then ``if isinstance(raw, T)`` / ``if raw is None: raise``: the key also
  takes a ``T`` (``task: binary``), or is required.

Names bound from module constants (``for key, kind in _BEAM_OPTION_KEYS.items()``, comprehensions over
``DETECTION_ROLES``) are iterated; helpers that receive a section are followed into. So a key added to the
reader appears in the schema with no second list to keep in step. A helper imported from another module of
:data:`SPEC_MODULES` is followed into that module. The schema is a linting aid for editors
and CI: the reader stays the authority (it also checks values against each other, metric parameters against
the catalogue, ranges and placeholders), so a spec the schema accepts may still be refused, never the reverse
for the keys and types it describes. Metric entries take several forms and are left open.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines import spec_yaml

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}
_CONST_CALLS = {"tuple", "list", "sorted", "set", "dict", "items", "keys", "values"}
ITEM = "*"
"""Path segment of a list item."""
SPEC_MODULES = (
    "pipelines.spec",
    "pipelines.spec_execution",
    "pipelines.spec_metrics",
    "pipelines.spec_slices",
    "pipelines.spec_task",
)
"""The modules of the spec reader; the first holds ``_parse``."""


@dataclass(frozen=True)
class _Section:
    path: tuple[str, ...]


@dataclass(frozen=True)
class _Mapping:
    """``sec.value``: the raw mapping of a section."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class _Raw:
    """A raw value read by hand: ``sec.value.get("key")``."""

    path: tuple[str, ...]


@dataclass
class _Key:
    """What the reader accepts under one key: JSON types, choices, whether it is required, its default."""

    types: set[str] = field(default_factory=set)
    enum: list[Any] | None = None
    required: bool = False
    default: Any = None


class _Reader:
    """Walks the reader's functions, recording what each mapping of the spec may hold."""

    def __init__(self, trees: Mapping[str, ast.Module], namespaces: Mapping[str, Mapping[str, Any]]) -> None:
        self.functions = {
            (module, f.name): f for module, tree in trees.items() for f in tree.body if isinstance(f, ast.FunctionDef)
        }
        self.namespaces = {module: dict(namespace) for module, namespace in namespaces.items()}
        self.module = SPEC_MODULES[0]
        """The module whose function is being walked: its names resolve in its own namespace."""
        self.keys: dict[tuple[str, ...], dict[str, _Key]] = {}
        self.origins: dict[tuple[str, ...], set[str]] = {}
        self.closed: set[tuple[str, ...]] = set()
        self.seen: set[tuple[tuple[str, str], tuple[tuple[str, Any], ...]]] = set()
        self.function = ""

    @property
    def namespace(self) -> dict[str, Any]:
        return self.namespaces[self.module]

    def resolve(self, name: str) -> tuple[str, str] | None:
        """The reader function a call of ``name`` in the current module runs: ``(module, function name)``,
        following an import from another reader module; None for any other callable."""
        if (self.module, name) in self.functions:
            return self.module, name
        target = self.namespace.get(name)
        found = (getattr(target, "__module__", None), getattr(target, "__name__", None))
        return found if found in self.functions else None  # type: ignore[return-value]

    # --- recording -------------------------------------------------------------------------------------

    def key(self, path: tuple[str, ...], name: str) -> _Key:
        self.keys.setdefault(path, {})
        return self.keys[path].setdefault(name, _Key())

    def section(self, path: tuple[str, ...]) -> None:
        """A mapping at ``path`` (a list item's when it ends in :data:`ITEM`): a key of its parent."""
        self.keys.setdefault(path, {})
        parent = path[:-2] if path[-1:] == (ITEM,) else path[:-1]
        name = path[-2] if path[-1:] == (ITEM,) else (path[-1] if path else None)
        if name is not None and name != ITEM:
            self.key(parent, name)

    # --- evaluation --------------------------------------------------------------------------------------

    def constant(self, node: ast.AST, env: Mapping[str, Any]) -> tuple[bool, Any]:
        """``(True, value)`` for an expression of literals, module constants and bound constants."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                func = sub.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name not in _CONST_CALLS:
                    return False, None
            elif isinstance(sub, ast.Lambda | ast.NamedExpr | ast.Await | ast.Yield):
                return False, None
        local = {k: v for k, v in env.items() if v is not None and not isinstance(v, _Section | _Mapping | _Raw)}
        if any(isinstance(n, ast.Name) and n.id in env and n.id not in local for n in ast.walk(node)):
            return False, None  # reads a section, or a name whose value is not known here
        try:
            # the expression is the spec module's own code, with no call but tuple/list/... and .items()
            return True, eval(compile(ast.Expression(node), "<spec>", "eval"), self.namespace, local)
        except Exception:
            return False, None

    def value(self, node: ast.AST | None, env: dict[str, Any], in_test: bool = False) -> Any:
        """The abstract value of ``node`` (a section, mapping, raw value, constant or None), recording as it goes."""
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return env.get(node.id, self.namespace.get(node.id))
        if isinstance(node, ast.Attribute) and node.attr == "value":
            base = self.value(node.value, env)
            if isinstance(base, _Section):
                return _Mapping(base.path)
        if isinstance(node, ast.Subscript):
            base = self.value(node.value, env)
            ok, key = self.constant(node.slice, env)
            if isinstance(base, _Mapping) and ok and isinstance(key, str):
                return _Raw((*base.path, key))
        if isinstance(node, ast.BoolOp):
            values = [self.value(v, env, in_test) for v in node.values]
            return values[0]
        if isinstance(node, ast.Call):
            return self.call(node, env, in_test)
        if isinstance(node, ast.DictComp | ast.ListComp | ast.SetComp | ast.GeneratorExp):
            ok, found = self.constant(node, env)
            if ok:
                return found
            self.comprehension(node, env)
            return None
        if isinstance(node, ast.UnaryOp | ast.Compare | ast.IfExp | ast.BinOp):
            for child in ast.iter_child_nodes(node):
                self.value(child, env, in_test and not isinstance(node, ast.IfExp))
            return None
        ok, found = self.constant(node, env)
        if ok:
            return found
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.value(child, env)
        return None

    def comprehension(self, node: ast.AST, env: dict[str, Any]) -> None:
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]  # type: ignore[attr-defined]
        for bound in self.bindings(node.generators, env):  # type: ignore[attr-defined]
            for part in parts:
                self.value(part, bound)

    def bindings(self, generators: list[ast.comprehension], env: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if not generators:
            yield env
            return
        first, rest = generators[0], generators[1:]
        for bound in self.loop(first.target, first.iter, env):
            yield from self.bindings(rest, bound)

    def loop(self, target: ast.AST, iterable: ast.AST, env: dict[str, Any]) -> Iterable[dict[str, Any]]:
        """One environment per item of a constant iterable; else one with the loop names unbound."""
        ok, items = self.constant(iterable, env)
        names = [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
        if not ok or not isinstance(items, Iterable) or isinstance(items, str):
            self.value(iterable, env)
            yield {**env, **dict.fromkeys(names)}
            return
        for item in items:
            bound = dict(env)
            if isinstance(target, ast.Name):
                bound[target.id] = item
            elif isinstance(target, ast.Tuple) and all(isinstance(e, ast.Name) for e in target.elts):
                bound.update(zip([e.id for e in target.elts], item, strict=False))  # type: ignore[attr-defined]
            yield bound

    def call(self, node: ast.Call, env: dict[str, Any], in_test: bool) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = self.value(func.value, env)
            if isinstance(owner, _Section):
                return self.section_method(owner, func.attr, node, env)
            if isinstance(owner, _Mapping) and func.attr == "get":
                ok, key = self.constant(node.args[0], env) if node.args else (False, None)
                if ok and isinstance(key, str):
                    return _Raw((*owner.path, key))
            if isinstance(func.value, ast.Attribute) and func.value.attr == "allowed":
                base = self.value(func.value.value, env)
                if isinstance(base, _Section) and func.attr in ("append", "extend") and node.args:
                    ok, names = self.constant(node.args[0], env)
                    for name in ([names] if func.attr == "append" else names) if ok else []:
                        self.key(base.path, name)
                    return None
        if isinstance(func, ast.Name) and func.id == "isinstance" and len(node.args) == 2:
            subject = self.value(node.args[0], env)
            ok, kinds = self.constant(node.args[1], env)
            if in_test and ok and isinstance(subject, _Raw):
                for kind in kinds if isinstance(kinds, tuple) else (kinds,):
                    if kind in _JSON_TYPES:
                        self.key(subject.path[:-1], subject.path[-1]).types.add(_JSON_TYPES[kind])
            return None
        if isinstance(func, ast.Name) and self.namespace.get(func.id) is spec_yaml.Section and len(node.args) >= 2:
            path = self.literal_path(node.args[1], env)
            for arg in node.args[2:]:
                self.value(arg, env)
            if path is not None:
                self.section(path)
                self.origins.setdefault(path, set()).add(self.function)
                return _Section(path)
            return None
        args = [self.value(a, env) for a in node.args]
        keywords = {k.arg: self.value(k.value, env) for k in node.keywords}  # ``**{...}`` under None
        target = self.resolve(func.id) if isinstance(func, ast.Name) else None
        if target is not None:
            self.follow(target, args, keywords)
        elif not isinstance(func, ast.Name):
            self.value(func, env)
        return None

    def literal_path(self, node: ast.AST, env: dict[str, Any]) -> tuple[str, ...] | None:
        if not isinstance(node, ast.Tuple):
            return None
        path: list[str] = []
        for element in node.elts:
            ok, found = self.constant(element, env)
            path.append(found if ok and isinstance(found, str) else ITEM)
        return tuple(path)

    def section_method(self, owner: _Section, method: str, node: ast.Call, env: dict[str, Any]) -> Any:
        """``sec.get(...)``, ``sec.section(...)`` or ``sec.finish()`` on the mapping at ``owner.path``."""
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        ok, name = self.constant(node.args[0], env) if node.args else (False, None)
        if method == "finish":
            self.closed.add(owner.path)
            return None
        if not (ok and isinstance(name, str)) or method not in ("get", "section"):
            return None
        required = self.constant(keywords["required"], env) if "required" in keywords else (True, False)
        if method == "section":
            child = (*owner.path, name)
            self.section(child)
            self.key(owner.path, name).required |= bool(required[0] and required[1])
            return _Section(child)
        entry = self.key(owner.path, name)
        entry.required |= bool(required[0] and required[1])
        ok, kind = self.constant(node.args[1], env) if len(node.args) > 1 else (False, None)
        for k in (kind if isinstance(kind, tuple) else (kind,)) if ok else ():
            if k in _JSON_TYPES:
                entry.types.add(_JSON_TYPES[k])
        default = node.args[2] if len(node.args) > 2 else keywords.get("default")
        ok, found = self.constant(default, env) if default is not None else (False, None)
        if ok and found is not None and isinstance(found, str | int | float | bool):
            entry.default = found
        ok, choices = self.constant(keywords["choices"], env) if "choices" in keywords else (False, None)
        if ok and choices is not None:
            entry.enum = list(choices)
        return None

    # --- statements --------------------------------------------------------------------------------------

    def follow(self, function: tuple[str, str], args: list[Any], keywords: dict[str, Any]) -> None:
        """Walk the reader function ``(module, name)`` when it receives a section (or a raw mapping) of the spec."""
        node = self.functions[function]
        name = function[1]
        params = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
        env = dict(zip(params, args, strict=False)) | {k: v for k, v in keywords.items() if k in params}
        tracked = tuple(sorted((k, v) for k, v in env.items() if isinstance(v, _Section | _Mapping | _Raw)))
        if not tracked and name != "_parse":
            return
        if (function, tracked) in self.seen:
            return
        self.seen.add((function, tracked))
        caller, self.function, module, self.module = self.function, name, self.module, function[0]
        self.block(node.body, env)
        self.function, self.module = caller, module

    def block(self, statements: list[ast.stmt], env: dict[str, Any]) -> None:
        for statement in statements:
            self.statement(statement, env)

    def statement(self, node: ast.stmt, env: dict[str, Any]) -> None:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            found = self.value(node.value, env)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in (n.id for n in ast.walk(target) if isinstance(n, ast.Name)):
                    env[name] = found if isinstance(target, ast.Name) else None
        elif isinstance(node, ast.If):
            self.required_when_none(node, env)
            self.value(node.test, env, in_test=True)
            self.block(node.body, env)
            self.block(node.orelse, env)
        elif isinstance(node, ast.For):
            for bound in self.loop(node.target, node.iter, env):
                self.block(node.body, bound)
            self.block(node.orelse, env)
        elif isinstance(node, ast.While):
            self.value(node.test, env)
            self.block(node.body, env)
        elif isinstance(node, ast.With):
            self.block(node.body, env)
        elif isinstance(node, ast.Try):
            self.block(node.body, env)
            for handler in node.handlers:
                self.block(handler.body, env)
            self.block(node.orelse, env)
            self.block(node.finalbody, env)
        elif isinstance(node, ast.Expr | ast.Return | ast.AugAssign) and node.value is not None:
            self.value(node.value, env)

    def required_when_none(self, node: ast.If, env: dict[str, Any]) -> None:
        """``if raw is None: raise ...``: the hand-read key is required."""
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.ops[0], ast.Is)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value is None
            and len(node.body) == 1
            and isinstance(node.body[0], ast.Raise)
        ):
            subject = self.value(test.left, env)
            if isinstance(subject, _Raw):
                self.key(subject.path[:-1], subject.path[-1]).required = True

    # --- output ------------------------------------------------------------------------------------------

    def schema(self, path: tuple[str, ...]) -> dict[str, Any]:
        """The object schema of the mapping at ``path``."""
        properties = {name: self.property((*path, name), entry) for name, entry in self.keys.get(path, {}).items()}
        out: dict[str, Any] = {"type": "object", "properties": properties}
        required = [name for name, entry in self.keys.get(path, {}).items() if entry.required]
        if required:
            out["required"] = required
        if path in self.closed:
            out["additionalProperties"] = False
        return out

    def open_or(self, path: tuple[str, ...]) -> dict[str, Any]:
        """A nested mapping's schema; a mapping read in several shapes (by several helpers) is left open."""
        return {} if len(self.origins.get(path, ())) > 1 else self.schema(path)

    def property(self, path: tuple[str, ...], entry: _Key) -> dict[str, Any]:
        """A key's schema: its mapping, list of mappings, choices or types (null allowed unless required);
        a key read by hand with no type test takes any value."""
        is_map, is_list = path in self.keys, (*path, ITEM) in self.keys
        shapes: list[dict[str, Any]] = []
        if is_map:
            shapes.append(self.open_or(path))
        if is_list:
            shapes.append({"type": "array", "items": self.open_or((*path, ITEM))})
        if entry.enum is not None:
            shapes.append({"enum": entry.enum})
        else:
            types = sorted(entry.types - ({"object"} if is_map else set()) - ({"array"} if is_list else set()))
            if types:
                shapes.append({"type": types[0] if len(types) == 1 else types})
        if not shapes or {} in shapes:
            out: dict[str, Any] = {}
        else:
            out = _nullable(shapes) if not entry.required else shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
        if entry.default is not None:
            out = {**out, "default": entry.default}
        return out


def _nullable(shapes: list[dict[str, Any]]) -> dict[str, Any]:
    """``shapes`` or null (an absent or null key takes its default): ``{"type": [t, "null"]}``,
    ``{"enum": [..., None]}``, or ``anyOf`` with null."""
    if len(shapes) == 1 and set(shapes[0]) == {"type"}:
        kinds = shapes[0]["type"]
        return {"type": [*(kinds if isinstance(kinds, list) else [kinds]), "null"]}
    if len(shapes) == 1 and set(shapes[0]) == {"enum"}:
        return {"enum": [*shapes[0]["enum"], None]}
    return {"anyOf": [*shapes, {"type": "null"}]}


def job_schema(sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a job spec, read from the spec reader's source (:data:`SPEC_MODULES`;
    ``sources``: module name -> source text read instead of that installed module's, whose names still
    resolve in the installed module)."""
    modules = {name: importlib.import_module(name) for name in SPEC_MODULES}
    sources = dict(sources or {})
    trees = {name: ast.parse(sources.get(name) or inspect.getsource(module)) for name, module in modules.items()}
    reader = _Reader(trees, {name: vars(module) for name, module in modules.items()})
    reader.follow((SPEC_MODULES[0], "_parse"), [], {})
    return {
        "$schema": DRAFT,
        "title": "evalpipe job spec",
        "description": "A YAML job spec of evalpipe (see the README's 'A job spec'); generated from the spec reader.",
        **reader.schema(()),
    }
