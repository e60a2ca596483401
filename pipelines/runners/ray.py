"""The Ray runner: long-lived actors, dynamic hand-out of work units, bounded retries.

* Connects to an existing cluster (``execution.ray_address``, ``RAY_ADDRESS``,
  or the cluster a ``ray job submit`` driver runs in); otherwise starts a
  local one bound to a loopback address and stops it at the end.
* Creates the actors once per job (each builds its
  :class:`~pipelines.worker.UnitEvaluator`: compiled updates, backbones) and
  keeps two units in flight per actor, handing the next unit to whichever
  actor finishes, so fast actors take more.
* An actor that dies (killed, out of memory, node lost) is replaced and its
  units go back in the queue; a unit is attempted at most
  ``execution.max_attempts`` times, then the job fails naming the unit's files.
* Storage errors that pass (connection resets, throttling) are retried inside
  the actor with back-off (:mod:`pipelines.worker`); if they persist, the unit
  goes back in the queue for another actor, counted as an attempt.
* Any other error raised in an actor, bad data, a user function or statistic
  that raises, stops the job at once: it is a function of the unit's rows and
  would fail the same way again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from pipelines.errors import JobFailed, UserError, is_transient_error
from pipelines.planning import WorkUnit
from pipelines.runners import ExecutionReport, OnResult
from pipelines.spec import JobSpec
from pipelines.worker import UnitEvaluator, UnitResult

IN_FLIGHT_PER_ACTOR = 2
LOCAL_NODE_IP_ENV = "EVALPIPE_RAY_NODE_IP"


def start_local_cluster(**kwargs: Any) -> None:
    """Start an in-process Ray cluster bound to loopback only.

    Ray rewrites 127.0.0.1 to the machine's outward address unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set, in which case every server
    binds to 127.0.0.1 (as on macOS). ``EVALPIPE_RAY_NODE_IP`` picks another
    address.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        # Ray reads the variable once, when it is first imported: make a late setting count too.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    node_ip = os.environ.get(LOCAL_NODE_IP_ENV, "127.0.0.1")
    ray.init(include_dashboard=False, _node_ip_address=node_ip, **kwargs)


def connect(address: str | None) -> bool:
    """Make sure Ray is initialised. Returns True when this call started a local cluster."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as exc:
            raise UserError(
                f"cannot connect to the Ray cluster at {address!r} (execution.ray_address or RAY_ADDRESS): {exc}"
            ) from None
        return False
    start_local_cluster(**quiet)
    return True


class EvalActor:
    """Actor body: one evaluator built at construction, then many units."""

    def __init__(self, spec: JobSpec) -> None:
        self.evaluator = UnitEvaluator(spec)

    def ready(self, warmup: WorkUnit | None = None) -> dict[str, Any]:
        return self.evaluator.ready(warmup)

    def process(self, unit: WorkUnit) -> UnitResult:
        return self.evaluator.process(unit)


def _actor_count(spec: JobSpec, units: int) -> int:
    ex = spec.execution
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if ex.num_gpus > gpus:
        raise UserError(
            f"execution.num_gpus: each actor asks for {ex.num_gpus:g} GPU but the Ray cluster has {gpus:g} GPUs in all."
        )
    if ex.num_cpus > cpus:
        raise UserError(
            f"execution.num_cpus: each actor asks for {ex.num_cpus:g} CPUs but the Ray cluster has {cpus:g} in all."
        )
    if ex.actors is not None:
        wanted = ex.actors
    elif ex.num_gpus > 0:
        wanted = int(gpus // ex.num_gpus)
    else:
        wanted = int(cpus // ex.num_cpus) if ex.num_cpus > 0 else int(cpus)
    return max(1, min(wanted, units))


def _keeping_sigterm_handler(fn: Callable[[], bool]) -> bool:
    """Call ``fn`` (which initialises Ray) and put back this process's Python SIGTERM handler, if it had
    one: Ray's core worker installs a native one that would end the driver without unwinding (so
    ``ray job stop`` could not leave a clean state)."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    handler = signal.getsignal(signal.SIGTERM)
    result = fn()
    if callable(handler):
        signal.signal(signal.SIGTERM, handler)
    return result


def _unwrap(exc: BaseException) -> BaseException:
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if cause is not None:
            return cause
    return exc


def run_ray(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None]
) -> ExecutionReport:
    t0 = time.perf_counter()
    started_here = _keeping_sigterm_handler(lambda: connect(spec.execution.ray_address))
    try:
        return _run(spec, units, on_result, on_started, t0)
    finally:
        if started_here:
            ray.shutdown()


def _run(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None], t0: float
) -> ExecutionReport:
    ex = spec.execution
    remote_cls = ray.remote(num_cpus=ex.num_cpus, num_gpus=ex.num_gpus, max_restarts=0)(EvalActor)
    count = _actor_count(spec, len(units))
    spec_ref = ray.put(spec)
    prefix = f"evalpipe:{spec.name}:{uuid.uuid4().hex[:8]}"
    spawned = 0

    def spawn() -> Any:
        """A new actor, named ``evalpipe:<job>:<random>:<n>`` (so operators can find it in Ray's state API)."""
        nonlocal spawned
        spawned += 1
        return remote_cls.options(name=f"{prefix}:{spawned}").remote(spec_ref)

    actors = [spawn() for _ in range(count)]
    try:
        ray.get([a.ready.remote(units[0] if units else None) for a in actors])
    except RayTaskError as exc:
        raise _unwrap(exc) from None
    startup = time.perf_counter() - t0
    on_started()
    t1 = time.perf_counter()

    queue: deque[WorkUnit] = deque(units)
    attempts: dict[int, int] = {}
    retried: set[int] = set()
    in_flight: dict[Any, tuple[Any, WorkUnit]] = {}
    busy_since: dict[int, float] = {}  # id(actor) -> when its current unit started
    timed_out: set[int] = set()  # id(actor) of actors killed for a unit over execution.unit_timeout_s
    total_attempts = 0

    def submit(actor: Any) -> None:
        nonlocal total_attempts
        unit = queue.popleft()
        attempts[unit.index] = attempts.get(unit.index, 0) + 1
        total_attempts += 1
        if not any(a is actor for a, _ in in_flight.values()):
            busy_since[id(actor)] = time.monotonic()
        in_flight[actor.process.remote(unit)] = (actor, unit)

    def stop_overdue() -> None:
        """Kill each actor whose current unit has run longer than ``execution.unit_timeout_s``; its units
        come back as a dead actor's do."""
        now = time.monotonic()
        for actor in {id(a): a for a, _ in in_flight.values()}.values():
            if now - busy_since[id(actor)] > ex.unit_timeout_s and id(actor) not in timed_out:
                timed_out.add(id(actor))
                ray.kill(actor, no_restart=True)

    def requeue(unit: WorkUnit, why: str, front: bool) -> None:
        """Put a failed unit back in the queue, or give up after ``execution.max_attempts``."""
        if attempts[unit.index] >= ex.max_attempts:
            raise JobFailed(
                f"work unit {unit.index} ({unit.describe()}) failed {attempts[unit.index]} times "
                f"(execution.max_attempts); {why}. Nothing was committed."
            )
        retried.add(unit.index)
        if front:
            queue.appendleft(unit)
        else:
            queue.append(unit)

    for actor in actors:
        for _ in range(IN_FLIGHT_PER_ACTOR):
            if queue:
                submit(actor)

    done_units: set[int] = set()
    try:
        poll = None if ex.unit_timeout_s is None else min(1.0, ex.unit_timeout_s / 4)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=poll)
            if not ready:
                stop_overdue()
                continue
            ref = ready[0]
            actor, unit = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except RayActorError:
                # The actor died: requeue every unit it held, replace it.
                lost = [unit]
                for other, (holder, held) in list(in_flight.items()):
                    if holder is actor:
                        del in_flight[other]
                        lost.append(held)
                why = (
                    f"it did not finish within {ex.unit_timeout_s:g} s (execution.unit_timeout_s) each time"
                    if id(actor) in timed_out
                    else "its worker died each time (killed, out of memory or its node lost)"
                )
                for u in lost:
                    requeue(u, why, front=True)
                actors[actors.index(actor)] = actor = spawn()
            except RayTaskError as exc:
                cause = _unwrap(exc)
                if not is_transient_error(cause):
                    raise cause from None
                requeue(unit, f"storage kept failing; last error: {type(cause).__name__}: {cause}", front=False)
            else:
                busy_since[id(actor)] = time.monotonic()  # its next unit, if any, starts now
                if unit.index not in done_units:
                    done_units.add(unit.index)
                    on_result(result)
            while queue and sum(1 for a, _ in in_flight.values() if a is actor) < IN_FLIGHT_PER_ACTOR:
                submit(actor)
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
    resources = ray.cluster_resources()
    return ExecutionReport(
        runner="ray",
        workers=count,
        startup_seconds=startup,
        compute_seconds=time.perf_counter() - t1,
        attempts=total_attempts,
        retried_units=tuple(sorted(retried)),
        cluster={"CPU": resources.get("CPU", 0.0), "GPU": resources.get("GPU", 0.0), "nodes": len(ray.nodes())},
    )
