"""No module of ``evaluators`` or ``pipelines`` grows past 600 lines: a module that does several jobs is split
along its seams (as ``evaluators.detection`` into a package, the job spec's YAML toolkit, ``execution:`` and
metric sections out of ``pipelines.spec``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 600


def _sizes(package: str) -> dict[str, int]:
    return {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in (ROOT / package).rglob("*.py")}


def test_no_evaluators_module_is_over_600_lines():
    sizes = _sizes("evaluators")
    assert len(sizes) > 30
    assert {path: n for path, n in sizes.items() if n > LIMIT} == {}


def test_no_pipelines_module_is_over_600_lines():
    sizes = _sizes("pipelines")
    assert len(sizes) > 40
    assert {path: n for path, n in sizes.items() if n > LIMIT} == {}
