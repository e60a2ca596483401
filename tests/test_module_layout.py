"""Where modules may import from: the unit result types live apart from the worker, so storage, results, the
driver and the scripts never load the execution engine; only the runners (which run workers) import it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = "pipelines.worker"


def module_name(path: Path) -> str:
    """``pipelines/runners/ray.py`` -> ``pipelines.runners.ray``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an ``import`` or ``from ... import`` line of ``source`` (the text of ``module``) names, also
    inside functions and ``TYPE_CHECKING`` blocks, relative imports resolved; ``from a import b`` counts as
    both ``a`` and ``a.b`` (``b`` may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_imported_modules_reads_every_import_form():
    source = (
        "from . import local\n"
        "from ..worker import UnitEvaluator\n"
        "from pipelines import worker\n"
        "def f():\n"
        "    import pipelines.worker as w\n"
    )
    found = imported_modules(source, "pipelines.runners.probe")
    assert found == {
        "pipelines.runners",
        "pipelines.runners.local",
        "pipelines.worker",
        "pipelines.worker.UnitEvaluator",
        "pipelines",
    }
    assert imported_modules("from .local import run_local\n", "pipelines.runners", is_package=True) == {
        "pipelines.runners.local",
        "pipelines.runners.local.run_local",
    }


def test_only_the_runners_import_the_worker():
    sources = [p for folder in ("pipelines", "evaluators", "scripts") for p in (ROOT / folder).rglob("*.py")]
    assert len(sources) > 100
    importers = {
        str(p.relative_to(ROOT))
        for p in sources
        if any(
            m == WORKER or m.startswith(WORKER + ".")
            for m in imported_modules(p.read_text(), module_name(p), p.name == "__init__.py")
        )
    }
    assert importers, "the runners import the worker"
    assert {p for p in importers if not p.startswith("pipelines/runners/")} == set()
