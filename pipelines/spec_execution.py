"""The ``execution:`` section: which runner evaluates the work units (the runner table), the options of the
Ray and local runners, and the Beam runner's pipeline options (``execution.beam`` and flags after ``--``).

A runner is found through :data:`RUNNER_TABLE` (name -> the module and function that run a job's units), so
a new runner is one module in :mod:`pipelines.runners` plus one entry here.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import SpecError, UserError
from pipelines.spec_yaml import Section, check_range, describe, suggest


@dataclass(frozen=True)
class RunnerEntry:
    """Where a runner lives: ``function`` of ``module``, called as ``function(spec, units, on_result,
    on_started) -> ExecutionReport`` (see :func:`pipelines.runners.execute`). ``package``/``extra``: a
    package the runner imports that is optional, and the evalpipe extra that installs it."""

    module: str
    function: str
    package: str | None = None
    extra: str | None = None
    title: str = ""

    def load(self, name: str) -> Callable[..., Any]:
        """The runner's function; a missing optional package is a :class:`UserError` saying how to install it."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            if self.package is None or not (exc.name or "").startswith(self.package):
                raise
            raise UserError(
                f"execution.runner: {name} needs {self.title}, which is not installed here: "
                f"pip install 'evalpipe[{self.extra}]' (see the README for the versions that work together)."
            ) from None
        return getattr(module, self.function)


RUNNER_TABLE: dict[str, RunnerEntry] = {
    "ray": RunnerEntry("pipelines.runners.ray", "run_ray"),
    "local": RunnerEntry("pipelines.runners.local", "run_local"),
    "beam": RunnerEntry("pipelines.runners.beam", "run_beam", "apache_beam", "beam", "Apache Beam"),
}
"""Runner name (``execution.runner``, ``--runner``) -> where it lives; the first is the default."""
RUNNERS = tuple(RUNNER_TABLE)
BEAM_RUNNERS = ("DirectRunner", "PrismRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")
"""Apache Beam runners by name (``execution.beam.runner``); a dotted path names any other runner class."""
BEAM_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
BEAM_COMBINE = ("driver", "beam")
_BEAM_OPTION_KEYS: dict[str, type | tuple[type, ...]] = {
    "project": str,
    "region": str,
    "temp_location": str,
    "num_workers": int,
    "max_num_workers": int,
    "machine_type": str,
    "sdk_container_image": str,
    "direct_num_workers": int,
    "direct_running_mode": str,
}
"""Beam pipeline options with a key of their own under ``execution.beam``; any other goes under ``options``."""
_BEAM_OPTION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_ACTORS = 4096
"""Most Ray actors (and Beam workers) a job may ask for."""
MAX_CPUS = 1024
"""Most CPUs per actor (and DirectRunner workers)."""
MAX_GPUS = 64
"""Most GPUs per actor."""


@dataclass(frozen=True)
class BeamSpec:
    """``execution.beam``: how ``runner: beam`` runs its pipeline (see :mod:`pipelines.runners.beam`).

    ``options`` are Beam pipeline options from the YAML as ``(name, value)`` pairs, value a scalar or a
    tuple (a repeated flag); ``flags`` are Beam command-line flags given after ``--`` on the evalpipe
    command line, which win over the YAML. ``combine``: ``driver`` sends every unit's states back and
    merges them on the driver; ``beam`` merges them inside the pipeline with a ``CombineFn``.
    """

    runner: str = "DirectRunner"
    options: tuple[tuple[str, Any], ...] = ()
    flags: tuple[str, ...] = ()
    combine: str = "driver"

    def pipeline_args(self) -> list[str]:
        """The options as Beam flags: ``--runner=...``, then the YAML's options (``true``: the bare flag,
        ``false``: left out, a list: the flag once per item), then the command line's flags."""
        args = [f"--runner={self.runner}"]
        for name, value in self.options:
            for item in value if isinstance(value, tuple) else (value,):
                if item is True:
                    args.append(f"--{name}")
                elif item is not False:
                    args.append(f"--{name}={item}")
        return args + list(self.flags)

    def option(self, name: str) -> str | None:
        """The value an option ends up with (the last ``--name=value`` or ``--name value`` wins), as text."""
        args = self.pipeline_args()
        found = None
        for i, arg in enumerate(args):
            if arg.startswith(f"--{name}="):
                found = arg.split("=", 1)[1]
            elif arg == f"--{name}" and i + 1 < len(args) and not args[i + 1].startswith("--"):
                found = args[i + 1]
        return found


@dataclass(frozen=True)
class ExecutionSpec:
    """How to run: runner (``ray``, ``local`` or ``beam``), actors and their resources (Ray), Beam's
    pipeline options, work-unit size."""

    runner: str = "ray"
    actors: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    unit_rows: int = 1_000_000
    ray_address: str | None = None
    max_attempts: int = 3
    """Attempts per work unit when its worker dies (Ray runner); a unit is never retried for an error
    in its data or in user code, which would fail the same way again."""
    checkpoints: bool = True
    """Keep each finished unit's states next to the output (``{job}/_checkpoints/``) until the run
    commits, so that a rerun after a crash reuses them."""
    memory_budget_mb: float = 1024.0
    """Largest decoded size of one read: a row group above it is read in slices of rows that fit."""
    unit_timeout_s: float | None = None
    """Ray runner: a worker still on one unit after this many seconds is stopped and the unit retried
    (an attempt, as when a worker dies); None: no limit."""
    beam: BeamSpec = field(default_factory=BeamSpec)
    """Pipeline options of the Beam runner (``execution.beam``, and flags after ``--``)."""
    resource_wait_s: float = 600.0
    """Ray runner: how long an actor may wait for the cluster to add a node with the CPUs/GPUs it asks for
    (an autoscaling cluster); a cluster that can never provide them is refused at once."""


def _beam(sec: Section) -> BeamSpec:
    """``execution.beam``: the Beam runner, the common pipeline options by name, any other under ``options``."""
    runner = sec.get("runner", str, "DirectRunner")
    known = {name.lower(): name for name in BEAM_RUNNERS}
    canonical = known.get(runner.lower()) or known.get(f"{runner.lower()}runner")
    if canonical is None and "." not in runner:
        raise SpecError(
            f"{sec.where('runner')}: expected an Apache Beam runner, one of {', '.join(BEAM_RUNNERS)} (or the "
            f"dotted path of a runner class); got {runner!r}{suggest(runner, BEAM_RUNNERS)}."
        )
    runner = canonical or runner
    combine = sec.get("combine", str, "driver", choices=BEAM_COMBINE)
    options: dict[str, Any] = {}
    for key, kind in _BEAM_OPTION_KEYS.items():
        value = sec.get(key, kind, choices=BEAM_RUNNING_MODES if key == "direct_running_mode" else None)
        if isinstance(value, str) and not value.strip():
            raise SpecError(f"{sec.where(key)}: expected a non-empty string, got {value!r}.")
        if value is not None:
            options[key] = value
    extra = sec.get("options", dict, {})
    sec.finish()
    check_range(sec, "direct_num_workers", options.get("direct_num_workers"), MAX_CPUS, integer=True)
    check_range(sec, "num_workers", options.get("num_workers"), MAX_ACTORS, integer=True)
    check_range(sec, "max_num_workers", options.get("max_num_workers"), MAX_ACTORS, integer=True)
    direct = [k for k in ("direct_num_workers", "direct_running_mode") if k in options]
    if direct and runner != "DirectRunner":
        raise SpecError(
            f"{sec.where(direct[0])}: {direct[0]} applies to the DirectRunner only, and execution.beam.runner is "
            f"{runner}; leave it out (size a {runner} job with num_workers and max_num_workers)."
        )
    for name, value in extra.items():
        where = sec.source.where((*sec.path, "options", name))
        if not isinstance(name, str) or not _BEAM_OPTION_NAME.match(name):
            raise SpecError(
                f"{where}: expected the name of a Beam pipeline option, its flag without the dashes (e.g. "
                f"flink_master for --flink_master); got {name!r}."
            )
        if name in ("runner", "combine", *_BEAM_OPTION_KEYS):
            raise SpecError(
                f"{where}: {name} has a key of its own: set execution.beam.{name} instead of "
                f"execution.beam.options.{name}."
            )
        items = value if isinstance(value, list) else [value]
        scalar = (str, int, float) if isinstance(value, list) else (str, int, float, bool)
        if not items or not all(isinstance(v, scalar) for v in items):
            raise SpecError(
                f"{where}: expected a string, a number, true or false, or a non-empty list of strings and numbers "
                f"(the flag repeated), got {describe(value)}."
            )
        options[name] = tuple(value) if isinstance(value, list) else value
    return BeamSpec(runner, tuple(options.items()), (), combine)


def _beam_flags(sec: Section, beam: BeamSpec, runner: str, checkpoints: bool, flags: Sequence[str]) -> BeamSpec:
    """``beam`` with the Beam flags given after ``--`` on the command line, checked against the runner."""
    flags = tuple(flags)
    if flags and runner != "beam":
        raise SpecError(
            f"arguments after `--` ({' '.join(flags)}) are Apache Beam pipeline options: they need "
            f"execution.runner: beam (or --runner beam), and this job's runner is {runner!r}."
        )
    if flags and not flags[0].startswith("--"):
        raise SpecError(
            "arguments after `--`: expected Beam pipeline flags such as --runner=DataflowRunner "
            f"--project=my-project; got {flags[0]!r}."
        )
    if runner == "beam" and beam.combine == "beam" and checkpoints:
        raise SpecError(
            f"{sec.source.where((*sec.path, 'beam', 'combine'))}: combine: beam merges the units' states inside "
            "the pipeline, so the driver never holds one unit's states to keep as a checkpoint; set "
            "execution.checkpoints: false as well, or use combine: driver (the default)."
        )
    return BeamSpec(beam.runner, beam.options, flags, beam.combine)


def read_execution(root: Section, overrides: Mapping[str, Any]) -> ExecutionSpec:
    """The ``execution:`` section of ``root``, with the command line's ``runner`` and ``beam_args`` overrides."""
    sec = root.section("execution")
    runner = sec.get("runner", str, "ray", choices=RUNNERS)
    actors = sec.get("actors", (int, str))
    if isinstance(actors, str):
        if actors != "auto":
            raise SpecError(f"{sec.where('actors')}: expected a positive integer or 'auto', got {actors!r}.")
        actors = None
    num_cpus = sec.get("num_cpus", float, 1.0)
    num_gpus = sec.get("num_gpus", float, 0.0)
    unit_rows = sec.get("unit_rows", int, 1_000_000)
    address = sec.get("ray_address", str)
    max_attempts = sec.get("max_attempts", int, 3)
    checkpoints = sec.get("checkpoints", bool, True)
    memory_budget_mb = sec.get("memory_budget_mb", float, 1024.0)
    unit_timeout_s = sec.get("unit_timeout_s", float)
    resource_wait_s = sec.get("resource_wait_s", float, 600.0)
    beam = _beam(sec.section("beam"))
    sec.finish()
    check_range(sec, "actors", actors, MAX_ACTORS, integer=True)
    check_range(sec, "num_cpus", num_cpus, MAX_CPUS, allow_zero=True)
    check_range(sec, "num_gpus", num_gpus, MAX_GPUS, allow_zero=True)
    check_range(sec, "unit_rows", unit_rows, 10**10, integer=True)
    check_range(sec, "max_attempts", max_attempts, 20, integer=True)
    check_range(sec, "memory_budget_mb", memory_budget_mb, 10**7)
    check_range(sec, "unit_timeout_s", unit_timeout_s, 7 * 86400)
    check_range(sec, "resource_wait_s", resource_wait_s, 7 * 86400)
    runner = overrides.get("runner") or runner
    if runner not in RUNNERS:
        raise SpecError(f"--runner: expected one of {', '.join(RUNNERS)}; got {runner!r}.")
    beam = _beam_flags(sec, beam, runner, checkpoints, overrides.get("beam_args") or ())
    return ExecutionSpec(
        runner,
        actors,
        num_cpus,
        num_gpus,
        unit_rows,
        address,
        max_attempts,
        checkpoints,
        memory_budget_mb,
        unit_timeout_s=unit_timeout_s,
        beam=beam,
        resource_wait_s=resource_wait_s,
    )
