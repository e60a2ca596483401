"""The README's runnable shell and Python blocks, run as written from a checkout.

A block is runnable when the line before its opening fence is ``<!-- runnable -->``. Each shell block runs with
``bash -euo pipefail``, and each Python block after them with ``.venv/bin/python``, in a fresh directory laid out
like a checkout (``configs/``, ``scripts/`` and ``pipelines/`` of this one, and ``.venv`` pointing at the
environment running the tests), so that ``.venv/bin/evalpipe`` and ``.venv/bin/python`` lines work verbatim and
whatever they write stays out of the checkout. The example config headers' command lines marked ``Runnable:`` run
the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- runnable -->"
TIMEOUT_S = 900


def runnable_blocks(text: str, language: str = "sh") -> list[str]:
    """The bodies of the ```sh (or ``language``) blocks whose fence follows a ``<!-- runnable -->`` line."""
    pattern = rf"^<!-- runnable -->\n```{language}\n(.*?)^```$"
    return [m.group(1) for m in re.finditer(pattern, text, re.M | re.S)]


def header_commands(text: str) -> str:
    """The commands after a ``# Runnable:`` paragraph of a YAML header: its first run of ``#   `` lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Runnable:"))
    start = next(i for i in range(start, len(lines)) if lines[i].startswith("#   "))
    body = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        body.append(line[4:])
    return "\n".join(body) + "\n"


def _checkout(tmp_path: Path) -> Path:
    for name in ("configs", "scripts", "pipelines", "evaluators", "pyproject.toml"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def test_the_readme_marks_runnable_blocks() -> None:
    blocks = runnable_blocks((ROOT / "README.md").read_text())
    assert blocks, f"no block follows {MARKER!r} in README.md"
    assert all(".venv/bin/" in b for b in blocks)


@pytest.mark.slow
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the tests to run in a virtual environment")
def test_readme_runnable_blocks_work_verbatim(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    for block in runnable_blocks((ROOT / "README.md").read_text()):
        result = _run(block, checkout)
        assert result.returncode == 0, (
            f"README block failed:\n{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    # what the block promises: a committed run, a report, its version
    (run,) = [d for d in (checkout / "example-output" / "churn-binary").iterdir() if (d / "_COMMITTED").exists()]
    assert (checkout / "example-output" / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert f'"run_id": "{run.name}"' in result.stdout and '"metric": "roc_auc"' in result.stdout
    assert " metrics compared, 0 regressed" in result.stdout
    from pipelines import __version__

    assert f"evalpipe {__version__}" in result.stdout
    python_blocks = runnable_blocks((ROOT / "README.md").read_text(), "python")
    assert python_blocks
    for block in python_blocks:  # (after the shell blocks: they read the run those wrote)
        result = _run(f".venv/bin/python - <<'EOF'\n{block}EOF\n", checkout)
        assert result.returncode == 0, (
            f"README block failed:\n{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    assert (checkout / "example-output" / "roc.png").read_bytes().startswith(b"\x89PNG")  # (the plots block's figure)


@pytest.mark.slow
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the tests to run in a virtual environment")
def test_nightly_config_header_commands_work_verbatim(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    script = header_commands((ROOT / "configs" / "nightly.yaml").read_text())
    assert ".venv/bin/evalpipe run configs/nightly.yaml" in script
    result = _run(script, checkout)
    assert result.returncode == 0, f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert '"status": "committed"' in result.stdout.splitlines()[-1]
