"""``scripts/dev.py test``: which tests a default, ``--slow`` and ``--all`` run choose, and CI running the README's
test command as written plus the slow tests."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _dev():
    spec = importlib.util.spec_from_file_location("evalpipe_dev_script", ROOT / "scripts" / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_run_leaves_slow_tests_out_and_the_flags_choose_them() -> None:
    selection = _dev().selection
    assert selection([]) == (["-m", "not slow"], [])
    assert selection(["-k", "spec"]) == (["-m", "not slow"], ["-k", "spec"])
    assert selection(["--slow"]) == (["-m", "slow"], [])
    assert selection(["--all", "-x"]) == ([], ["-x"])
    # naming tests or a marker expression chooses them, slow or not
    assert selection(["tests/test_faults.py"]) == ([], ["tests/test_faults.py"])
    assert selection(["tests/test_faults.py::test_x", "-q"]) == ([], ["tests/test_faults.py::test_x", "-q"])
    assert selection(["-m", "ray"]) == ([], ["-m", "ray"])


def test_ci_runs_the_readme_test_command_verbatim_and_then_the_slow_tests() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^(python3 scripts/dev\.py test)\s+#", readme, re.M)
    assert command, "the README opens with no test command"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command.group(1) in ci
    assert ci.index("python3 scripts/dev.py test --slow") > ci.index(command.group(1))


def test_an_install_with_more_extras_serves_a_call_that_asks_for_fewer(tmp_path, monkeypatch) -> None:
    """`example` (no extras) after `test` (dev extras) reused nothing: each switch reinstalled. The stamp records the
    extras installed; a call asking for a subset reuses the install, one asking for more installs their union."""
    dev = _dev()
    venv_dir = tmp_path / "venv"
    python = dev._bin(venv_dir) / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    installs: list[str] = []
    monkeypatch.setattr(dev, "run", lambda *args, **kw: installs.append(str(args[-1])))
    for extras in ("dev", "", "dev", "beam-test", "", "dev"):
        assert dev.ensure_env(extras, venv_dir) == python
    assert installs == [".[dev]", ".[beam-test,dev]"]
    stamp = venv_dir / ".evalpipe-install"
    stamp.write_text("an older stamp: one digest")
    dev.ensure_env("", venv_dir)
    assert installs[-1] == "." and stamp.read_text().endswith("\n")
