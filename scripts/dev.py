"""Bootstrap and everyday commands, needing nothing but python3 (>= 3.11).

    python3 scripts/dev.py example   # make .venv, install evalpipe, generate data, run a job on local Ray
    python3 scripts/dev.py test      # make .venv, install evalpipe[dev], run the test suite in parallel
                                     # (pytest-xdist, one process per core; the Ray tests of a process share
                                     # its local cluster) but for the tests marked ``slow``; then the Beam runner's
                                     # tests in .venv-beam (Beam pins an older pyarrow). As root on
                                     # Debian/Ubuntu it also apt-installs chromium for the HTML report test
                                     # (EVALPIPE_NO_APT=1: skip it, the test skips)
    python3 scripts/dev.py test --slow   # only the tests marked ``slow`` (minutes of work each; CI runs them)
    python3 scripts/dev.py test --all    # both
    python3 scripts/dev.py lint      # ruff

The virtual environment lives in ``.venv`` (or ``$EVALPIPE_VENV``) and is
reinstalled when ``pyproject.toml`` changes. Extra arguments after ``test``
go to pytest; naming test files or ``-m`` chooses the tests (no ``slow`` filter then).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("EVALPIPE_VENV", ROOT / ".venv"))
BEAM_VENV = ROOT / ".venv-beam"
"""Apache Beam pins pyarrow (and protobuf, pillow, numpy) below the core install's versions: the Beam runner's
tests run in an environment of their own."""


def _bin(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts" if os.name == "nt" else "bin")


BIN = _bin(VENV)
PYTHON = BIN / "python"


def say(text: str) -> None:
    print(f"[dev] {text}", flush=True)


def run(*args: str | Path, **kw) -> None:
    result = subprocess.run([str(a) for a in args], cwd=ROOT, **kw)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_env(extras: str, venv_dir: Path = VENV) -> Path:
    """Create the venv and install ``.[extras]`` unless already installed for this pyproject; its python."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs under any python3
        sys.exit(f"evalpipe needs Python >= 3.11; this is {sys.version.split()[0]}")
    python = _bin(venv_dir) / "python"
    if not python.exists():
        say(f"creating virtual environment in {venv_dir}")
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    # the stamp: this pyproject's digest and the extras installed with it (an install of more extras serves a
    # call that asks for fewer: `example` after `test` reuses the dev install)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = venv_dir / ".evalpipe-install"
    recorded = stamp.read_text().split("\n") if stamp.exists() else []
    installed = set(recorded[1].split(",")) - {""} if len(recorded) == 2 and recorded[0] == digest else None
    wanted = set(extras.split(",")) - {""}
    if installed is not None and wanted <= installed:
        return python
    extras = ",".join(sorted(wanted | (installed or set())))
    target = f".[{extras}]" if extras else "."
    say(f"installing evalpipe{'[' + extras + ']' if extras else ''} in {venv_dir.name} (first run takes a few minutes)")
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", target)
    stamp.write_text(f"{digest}\n{extras}")
    return python


def example() -> None:
    ensure_env("")
    data = ROOT / "example-data" / "binary"
    if not data.exists():
        run(PYTHON, "scripts/make_data.py", "binary", str(data), "--rows", "200000", "--shards", "12")
    say("running configs/binary.yaml on a local Ray cluster (2 actors)")
    run(PYTHON, "-m", "pipelines", "run", "configs/binary.yaml")


def ensure_chromium() -> None:
    """Best effort: the report test renders HTML in headless Chromium (Debian's ``chromium`` package)."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if os.environ.get("EVALPIPE_NO_APT") == "1":
        say("EVALPIPE_NO_APT=1: chromium not installed; the HTML rendering test will be skipped")
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        say("chromium not found and cannot be installed here: the HTML rendering test will be skipped")
        return
    say("installing Debian's chromium with apt-get for the HTML report test (EVALPIPE_NO_APT=1 skips this)")
    quiet = {"stdout": subprocess.DEVNULL, "env": dict(os.environ, DEBIAN_FRONTEND="noninteractive")}
    subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, **quiet)


def parallel(extra: list[str]) -> list[str]:
    """pytest-xdist options: one worker per core (at most 4); none when the arguments choose already."""
    if any(a == "-n" or a.startswith(("-n", "--numprocesses", "-p")) for a in extra):
        return []
    return ["-n", str(max(1, min(4, os.cpu_count() or 1)))]


def selection(extra: list[str]) -> tuple[list[str], list[str]]:
    """``(marker options, pytest arguments)``: ``--slow`` runs only the tests marked ``slow``, ``--all`` every
    test; by default the ``slow`` ones are left out, unless the arguments choose tests themselves (``-m``, a
    test file or node id)."""
    rest = [a for a in extra if a not in ("--slow", "--all")]
    if "--all" in extra:
        return [], rest
    if "--slow" in extra:
        return ["-m", "slow"], rest
    chosen = any(a.startswith("-m") or ".py" in a for a in rest)
    return ([] if chosen else ["-m", "not slow"]), rest


def test(extra: list[str]) -> None:
    """The suite in ``.venv``; then (for a default run) the Beam runner's tests in ``.venv-beam``, where
    apache-beam is installed (in ``.venv`` they skip). ``EVALPIPE_SKIP_BEAM=1`` leaves the latter out."""
    ensure_env("dev")
    ensure_chromium()
    markers, args = selection(extra)
    run(PYTHON, "-m", "pytest", *parallel(args), *markers, *args)
    if extra or os.environ.get("EVALPIPE_SKIP_BEAM") == "1":
        return
    beam_python = ensure_env("beam-test", BEAM_VENV)
    say("running the Beam runner's tests with apache-beam installed (.venv-beam)")
    run(beam_python, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_beam_runner.py")


def lint() -> None:
    ensure_env("dev")
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    if command == "example":
        example()
    elif command == "test":
        test(sys.argv[2:])
    elif command == "lint":
        lint()
    else:
        print(__doc__)
        sys.exit(0 if command in ("help", "-h", "--help") else 2)


if __name__ == "__main__":
    main()
