"""No module of ``evaluators`` grows past 600 lines: a module that does several jobs is split along its seams
(as ``evaluators.detection`` into a package)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 600


def test_no_evaluators_module_is_over_600_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in (ROOT / "evaluators").rglob("*.py")}
    assert len(sizes) > 30
    assert {path: n for path, n in sizes.items() if n > LIMIT} == {}
