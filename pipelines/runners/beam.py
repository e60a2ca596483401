"""The Apache Beam runner: the same work units as a Beam pipeline (DirectRunner, Dataflow, Flink, Spark...).

The only module importing ``apache_beam`` (``pip install 'evalpipe[beam]'``).

* The pipeline is ``Create(work units) -> ParDo(EvaluateUnits)``. The DoFn's ``setup()`` builds the
  :class:`~pipelines.worker.UnitEvaluator` of its worker process once (compiled updates; a backbone is
  loaded on the first unit that needs it and then kept), as each Ray actor does; every DoFn instance of
  that process shares it, one unit at a time. ``process()`` evaluates one unit with the same code as the
  local and Ray runners.
* Each unit's :class:`~pipelines.unit_result.UnitResult` goes back to the driver as one file under a results
  directory: a local temporary directory for the DirectRunner, ``{temp_location}/evalpipe/...`` (which
  the workers and the driver both reach: ``gs://``, ``s3://``...) otherwise. The driver reads the files
  as they appear and hands each result to ``on_result``, which merges them in unit order
  (:class:`~pipelines.unit_result.OrderedMerger`), so records are bit-identical to the other runners.
* With ``execution.beam.combine: beam`` the states are merged inside the pipeline instead, by
  :class:`OrderedPartialCombineFn` (``CombineGlobally``), and only the merged states come back (the
  units' files then carry rows, scores and timings, no states). Its accumulator keeps the units' states
  as aligned blocks of a binary tree over unit indices, so the merge is the same floating-point
  computation as the driver's whatever order Beam combines in.
* An error in the data or in user code (:class:`~pipelines.errors.UserError`) is not retried: the DoFn
  reports it in the results directory, the driver raises it and the remaining units are skipped. Other
  errors fail the bundle, which Beam retries by its runner's policy (the DirectRunner does not retry).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import json
import pickle
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
)
from fsspec.core import url_to_fs

from pipelines.errors import JobFailed, UserError
from pipelines.job_statistics import job_statistics
from pipelines.planning import WorkUnit
from pipelines.runners import ExecutionReport, OnResult
from pipelines.spec import JobSpec
from pipelines.spec_execution import BEAM_RUNNERS
from pipelines.unit_result import Partial, UnitResult, fold_right, merge_partials
from pipelines.worker import UnitEvaluator

METRICS_NAMESPACE = "evalpipe"
ABORT = "abort"
MERGED = "merged.pkl"
LOCAL_RUNNERS = ("DirectRunner", "PrismRunner")
"""Runners whose workers run on this machine: the results directory may be a local temporary one."""
_Block = tuple[int, int]
"""``(level, k)``: units ``[k * 2**level, (k + 1) * 2**level)``."""


# --- merging inside Beam -----------------------------------------------------------------------


class OrderedPartialCombineFn(beam.CombineFn):
    """``(unit index, Partial)`` -> the merge of every unit's partial, equal bit for bit to
    :class:`~pipelines.unit_result.OrderedMerger` fed the same units.

    The driver merges units as a balanced binary tree over indices ``0 .. units - 1``. The accumulator
    here holds complete aligned blocks of that tree, ``{(level, k): merged partial of units
    [k * 2**level, (k + 1) * 2**level)}``; two sibling blocks are merged (left then right) as soon as
    both are present, which is exactly the merge the tree does there. So whatever Beam's order of
    ``add_input`` and ``merge_accumulators`` calls, the same merges happen on the same operands, and
    ``extract_output`` folds the remaining blocks as the driver does: a function of the set of inputs
    alone, associative and commutative. A unit seen twice (a retried bundle) is kept once.
    """

    def __init__(self, spec: JobSpec, units: int) -> None:
        self.spec = spec
        self.units = units
        self._accumulators: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "units": self.units, "_accumulators": None}

    def _accs(self) -> tuple[Any, Any]:
        if self._accumulators is None:
            statistics = job_statistics(self.spec)
            self._accumulators = (statistics.accumulator, statistics.replicates)
        return self._accumulators

    def _merge(self, left: Partial, right: Partial) -> Partial:
        return merge_partials(*self._accs(), left, right)

    def _insert(self, blocks: dict[_Block, Partial], level: int, k: int, partial: Partial) -> None:
        top = max(self.units - 1, 1).bit_length()
        if any((up, k >> (up - level)) in blocks for up in range(level, top + 1)):
            return  # already there, alone or inside a larger block
        while (level, k ^ 1) in blocks:
            sibling = blocks.pop((level, k ^ 1))
            partial = self._merge(sibling, partial) if k & 1 else self._merge(partial, sibling)
            level, k = level + 1, k >> 1
        blocks[(level, k)] = partial

    def create_accumulator(self) -> dict[_Block, Partial]:
        return {}

    def add_input(self, blocks: dict[_Block, Partial], element: tuple[int, Partial]) -> dict[_Block, Partial]:
        index, partial = element
        if not 0 <= index < self.units:
            raise ValueError(f"unit index {index} outside 0..{self.units - 1}")
        self._insert(blocks, 0, index, partial)
        return blocks

    def merge_accumulators(self, accumulators: Iterator[dict[_Block, Partial]]) -> dict[_Block, Partial]:
        merged: dict[_Block, Partial] = {}
        for blocks in accumulators:
            for (level, k), partial in blocks.items():
                self._insert(merged, level, k, partial)
        return merged

    def _node(self, blocks: dict[_Block, Partial], level: int, k: int) -> Partial:
        if (level, k) in blocks:
            return blocks[(level, k)]
        if level == 0:
            raise RuntimeError(f"work unit {k} is missing from the combined results")
        return self._merge(self._node(blocks, level - 1, 2 * k), self._node(blocks, level - 1, 2 * k + 1))

    def extract_output(self, blocks: dict[_Block, Partial]) -> Partial:
        # The driver's stack: blocks of the binary decomposition of ``units``, largest (leftmost) first,
        # then folded from the right.
        stack: list[Partial] = []
        start = 0
        for level in reversed(range(self.units.bit_length())):
            if self.units >> level & 1:
                stack.append(self._node(blocks, level, start >> level))
                start += 1 << level
        return fold_right(*self._accs(), stack)


# --- the workers' side ---------------------------------------------------------------------------


def unit_file(index: int) -> str:
    return f"unit-{index:08d}.pkl"


def _write(fs: Any, path: str, payload: bytes) -> None:
    """Whole or not at all: a local file is written aside and renamed; an object store's put is atomic."""
    if "file" in fs.protocol or "local" in fs.protocol:
        directory, name = path.rsplit("/", 1)
        scratch = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}"
        fs.pipe_file(scratch, payload)
        fs.mv(scratch, path)
    else:
        fs.pipe_file(path, payload)


class _Worker:
    """One process's evaluator for one job, shared by the DoFn instances of that process (a runner may run
    several bundles at once, each with its own DoFn instance): built once, like a Ray actor's, and used by
    one unit at a time."""

    def __init__(self, spec: JobSpec) -> None:
        self.lock = threading.Lock()
        self.counted = False
        self.evaluator: UnitEvaluator | None = None
        self.error: UserError | None = None
        try:
            self.evaluator = UnitEvaluator(spec)
            self.evaluator.ready()
        except UserError as exc:  # e.g. a user function that cannot be imported: reported, not retried
            self.error = exc


_WORKERS: dict[str, _Worker] = {}
_WORKERS_LOCK = threading.Lock()


def _worker(job: str, spec: JobSpec) -> _Worker:
    """This process's :class:`_Worker` for the job run ``job`` (built by the first DoFn that asks)."""
    with _WORKERS_LOCK:
        if job not in _WORKERS:
            _WORKERS[job] = _Worker(spec)
        return _WORKERS[job]


class EvaluateUnits(beam.DoFn):
    """Evaluates one work unit per ``process`` call with this process's :class:`UnitEvaluator` (built in
    ``setup``, once per process) and writes the result to the results directory."""

    def __init__(self, spec: JobSpec, job: str, results: str, storage_options: dict[str, Any], combine: bool) -> None:
        self.spec = spec
        self.job = job
        self.results = results
        self.storage_options = storage_options
        self.combine = combine
        self.evaluators = Metrics.counter(METRICS_NAMESPACE, "evaluators")
        self.evaluated = Metrics.counter(METRICS_NAMESPACE, "units")

    def setup(self) -> None:
        self.fs, self.root = url_to_fs(self.results, **self.storage_options)
        self.worker = _worker(self.job, self.spec)

    def _report(self, unit: WorkUnit, exc: UserError) -> None:
        cls = type(exc)
        record = {"module": cls.__module__, "type": cls.__qualname__, "message": str(exc), "unit": unit.index}
        _write(self.fs, f"{self.root}/error-{unit.index:08d}.json", json.dumps(record).encode())
        _write(self.fs, f"{self.root}/{ABORT}", b"")

    def process(self, unit: WorkUnit) -> list[tuple[int, Partial]]:
        """Evaluate ``unit`` and write its result; with ``combine``, also emit ``(index, states)``."""
        if self.fs.exists(f"{self.root}/{ABORT}"):
            return []  # the job already failed: skip the remaining units
        worker = self.worker
        if worker.error is not None or worker.evaluator is None:
            self._report(unit, worker.error or UserError("the evaluator could not be built"))
            return []
        with worker.lock:
            if not worker.counted:  # counted on its first unit (Beam counters need a bundle)
                self.evaluators.inc()
                worker.counted = True
            try:
                result = worker.evaluator.process(unit)
            except UserError as exc:
                self._report(unit, exc)
                return []
        self.evaluated.inc()
        out = []
        if self.combine:
            out.append((unit.index, result.partial))
            result = replace(result, partial=Partial())
        _write(self.fs, f"{self.root}/{unit_file(unit.index)}", pickle.dumps(result, protocol=5))
        return out


class _WriteMerged(beam.DoFn):
    def __init__(self, results: str, storage_options: dict[str, Any]) -> None:
        self.results = results
        self.storage_options = storage_options

    def process(self, merged: Partial) -> list[None]:
        fs, root = url_to_fs(self.results, **self.storage_options)
        _write(fs, f"{root}/{MERGED}", pickle.dumps(merged, protocol=5))
        return []


# --- options ---------------------------------------------------------------------------------------


class _OptionParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UserError(f"Beam pipeline options: {message}.")


def pipeline_options(spec: JobSpec) -> PipelineOptions:
    """The spec's Beam options (``execution.beam`` then the flags after ``--``), every flag checked
    against the options Beam knows: a misspelt one is an error, not silently dropped."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    args = spec.execution.beam.pipeline_args()

    class Parser(_OptionParser, _BeamArgumentParser):
        pass

    parser = Parser(allow_abbrev=False, add_help=False)
    seen: set[str] = set()
    for cls in PipelineOptions.__subclasses__():
        if str(cls) not in seen:
            seen.add(str(cls))
            cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(args)
    flags = [a for a in unknown if a.startswith("--")]
    if flags:
        name = flags[0].split("=", 1)[0]
        known = [f for action in parser._actions for f in action.option_strings]
        match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {match[0]}?)" if match else ""
        origin = (
            "a flag after `--`"
            if any(f.startswith(name) for f in spec.execution.beam.flags)
            else f"execution.beam.options.{name[2:]}"
        )
        raise UserError(f"{origin}: {name} is not an Apache Beam pipeline option{hint}.")
    return PipelineOptions(args)


_LOCAL_SERVER_MODULES = (
    "apache_beam.runners.portability.fn_api_runner.worker_handlers",
    "apache_beam.runners.portability.local_job_service",
    "apache_beam.runners.worker.worker_pool_main",
)
"""Where the DirectRunner starts the gRPC servers its local workers connect to (control, data, state,
logging, worker pool)."""


def _loopback_local_workers() -> None:
    """The DirectRunner's local workers (``multi_threading``, ``multi_processing``) talk to it over gRPC
    servers that Beam binds on every interface (``[::]``); bind them to the loopback interface instead
    (the workers connect to ``localhost``)."""
    for name in _LOCAL_SERVER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        grpc = getattr(module, "grpc", None)
        if grpc is not None and not isinstance(grpc, _LoopbackGrpc):
            module.grpc = _LoopbackGrpc(grpc)


class _LoopbackServer:
    def __init__(self, server: Any) -> None:
        self._server = server

    def add_insecure_port(self, address: str) -> int:
        if address.startswith("[::]:"):
            address = "localhost:" + address.removeprefix("[::]:")
        return self._server.add_insecure_port(address)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _LoopbackGrpc:
    def __init__(self, module: Any) -> None:
        self._module = module

    def server(self, *args: Any, **kwargs: Any) -> _LoopbackServer:
        return _LoopbackServer(self._module.server(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _results_location(spec: JobSpec, options: PipelineOptions, runner: str) -> tuple[str, dict[str, Any], bool]:
    """``(url, storage options, made here)`` of the directory the units' results come back through."""
    temp = options.view_as(GoogleCloudOptions).temp_location
    if temp:
        url = f"{temp.rstrip('/')}/evalpipe/{spec.name}-{uuid.uuid4().hex[:12]}"
        same_store = url.split("://", 1)[0] == spec.output.uri.split("://", 1)[0] and "://" in url
        return url, dict(spec.output.storage_options) if same_store else {}, False
    if runner not in LOCAL_RUNNERS:
        raise UserError(
            f"execution.beam.temp_location: the {runner} runs its workers on other machines, and they send "
            "each unit's results back through files that this machine reads; set a temp_location both reach "
            "(gs://bucket/tmp, s3://bucket/tmp), in the spec or as --temp_location after `--`."
        )
    return tempfile.mkdtemp(prefix="evalpipe-beam-"), {}, True


def _runner_name(options: PipelineOptions) -> str:
    """The Beam runner's class name (``dataflow`` -> ``DataflowRunner``), as Beam resolves it."""
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if not isinstance(runner, str):
        return type(runner).__name__
    name = runner.rsplit(".", 1)[-1]
    known = {r.lower(): r for r in BEAM_RUNNERS}
    return known.get(name.lower()) or known.get(f"{name.lower()}runner") or name


def _user_error(record: dict[str, Any]) -> UserError:
    """The error a worker reported, as its own class when that is a :class:`UserError`."""
    try:
        cls = getattr(importlib.import_module(record["module"]), record["type"])
    except (ImportError, AttributeError):
        cls = UserError
    if not (isinstance(cls, type) and issubclass(cls, UserError)):
        cls = UserError
    try:
        return cls(record["message"])
    except TypeError:
        return UserError(record["message"])


# --- the driver's side -------------------------------------------------------------------------------


def run_beam(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None]
) -> ExecutionReport:
    t0 = time.perf_counter()
    options = pipeline_options(spec)
    runner = _runner_name(options)
    combine = spec.execution.beam.combine == "beam"
    results, storage_options, local = _results_location(spec, options, runner)
    fs, root = url_to_fs(results, **storage_options)
    fs.makedirs(root, exist_ok=True)
    if runner == "DirectRunner":
        _loopback_local_workers()

    count = max(u.index for u in units) + 1 if units else 0
    job = f"{spec.name}:{uuid.uuid4().hex}"
    try:
        pipeline = beam.Pipeline(options=options)  # creates the runner and validates the options for it
    except (ValueError, ImportError) as exc:
        with contextlib.suppress(OSError):
            fs.rm(root, recursive=True)
        raise UserError(f"Beam pipeline options for the {runner}: {exc}") from None
    evaluated = (
        pipeline
        | "Units" >> beam.Create(list(units))
        | "Evaluate" >> beam.ParDo(EvaluateUnits(spec, job, results, storage_options, combine))
    )
    if combine:
        _ = (
            evaluated
            | "Combine" >> beam.CombineGlobally(OrderedPartialCombineFn(spec, count))
            | "Deliver" >> beam.ParDo(_WriteMerged(results, storage_options))
        )

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = result = pipeline.run()
            result.wait_until_finish()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"beam:{spec.name}", daemon=True)
    startup = time.perf_counter() - t0
    t1 = time.perf_counter()
    thread.start()
    on_started()
    delivered: set[int] = set()
    workers: set[str] = set()
    poll = 0.1 if local else 1.0

    def sweep() -> None:
        fs.invalidate_cache(root)
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
        for name in names:
            if name.startswith("error-") and name.endswith(".json"):
                raise _user_error(json.loads(fs.cat_file(f"{root}/{name}")))
        for name in names:
            if not (name.startswith("unit-") and name.endswith(".pkl")):
                continue
            index = int(name[5:-4])
            if index in delivered:
                continue
            result: UnitResult = pickle.loads(fs.cat_file(f"{root}/{name}"))
            delivered.add(index)
            workers.add(result.worker)
            on_result(result)
            with contextlib.suppress(OSError):  # delivered: a rewrite by a retried bundle is ignored
                fs.rm_file(f"{root}/{name}")

    try:
        while thread.is_alive():
            thread.join(poll)
            sweep()
        sweep()  # the last units (and an error a worker reported) before the pipeline's own error
        if "error" in outcome:
            raise outcome["error"]
        missing = sorted({u.index for u in units} - delivered)
        if missing:
            raise JobFailed(
                f"the Beam pipeline ({runner}) finished without the results of {len(missing)} work units "
                f"(first: unit {missing[0]}). Nothing was committed."
            )
        merged = pickle.loads(fs.cat_file(f"{root}/{MERGED}")) if combine else None
        counters = _counters(outcome.get("result"))
    except BaseException:
        _abort(fs, root, outcome, thread)
        raise
    finally:
        _WORKERS.pop(job, None)  # this process's evaluator, if the pipeline ran its workers in here
        if not thread.is_alive():
            with contextlib.suppress(OSError):
                fs.rm(root, recursive=True)
    cluster: dict[str, Any] = {"beam_runner": runner}
    if runner == "DirectRunner":
        direct = options.view_as(DirectOptions)
        cluster.update(
            direct_running_mode=direct.direct_running_mode, direct_num_workers=direct.direct_num_workers or 1
        )
    if "evaluators" in counters:
        cluster["evaluators"] = counters["evaluators"]
    return ExecutionReport(
        runner="beam",
        workers=len(workers),
        startup_seconds=startup,
        compute_seconds=time.perf_counter() - t1,
        attempts=counters.get("units", len(units)),
        cluster=cluster,
        merged=merged,
    )


def _abort(fs: Any, root: str, outcome: dict[str, Any], thread: threading.Thread) -> None:
    """Tell the workers to skip their remaining units, cancel the pipeline if it can be, and wait a little."""
    with contextlib.suppress(OSError):
        _write(fs, f"{root}/{ABORT}", b"")
    result = outcome.get("result")
    if result is not None:
        with contextlib.suppress(Exception):  # not every runner cancels (the DirectRunner's run is over)
            result.cancel()
    thread.join(60)


def _counters(result: Any) -> dict[str, int]:
    """The job's Beam counters (attempted values: every unit evaluated, retries included), where the
    runner reports them."""
    if result is None:
        return {}
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    except Exception:  # a runner without metrics
        return {}
    out: dict[str, int] = {}
    for counter in found:
        value = counter.attempted if counter.attempted is not None else counter.committed
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + int(value or 0)
    return out
